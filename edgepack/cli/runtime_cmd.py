"""edgepack runtime build --profile NAME --model MODEL_OR_BUNDLE [-o DIR]  (owned by the minimal-ORT work)"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("runtime", help="build a reduced-operator minimal ONNX Runtime for a profile")
    ps = p.add_subparsers(dest="runtime_command", metavar="ACTION")
    ps.required = True
    b = ps.add_parser("build", help="build a minimal ORT for the model's operators")
    b.add_argument("--profile", required=True)
    b.add_argument("--model", required=True, help=".onnx model or .edgepack bundle")
    b.add_argument("-o", "--output", help="folder to copy the library into")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from edgepack.errors import ConfigError

    raise ConfigError("'runtime build' is not available in this version", "use --runtime wheel")
