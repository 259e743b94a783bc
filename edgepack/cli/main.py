"""Entry point. Only argparse is imported here so that ``edgepack --help`` starts fast;
each command module imports the core (and the core imports heavy libraries) only when run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from edgepack.cli import board_cmd, bundle_cmd, check_cmd, deploy_cmd, package_cmd, profiles_cmd, runtime_cmd

COMMAND_MODULES = (profiles_cmd, package_cmd, runtime_cmd, bundle_cmd, board_cmd, deploy_cmd, check_cmd)


def build_parser() -> argparse.ArgumentParser:
    from edgepack import __version__

    parser = argparse.ArgumentParser(
        prog="edgepack",
        description="Package Hugging Face / ONNX models for edge devices, deploy them, and check them on the device.",
    )
    parser.add_argument("--version", action="version", version=f"edgepack {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug or os.environ.get("EDGEPACK_DEBUG"))
    from edgepack.errors import EdgepackError

    try:
        code: int = args.func(args)
        return code
    except EdgepackError as e:
        if debug:
            raise
        print(f"edgepack: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("edgepack: interrupted", file=sys.stderr)
        return 130
