"""edgepack package SOURCE --profile NAME -o BUNDLE"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("package", help="turn a model into a verifiable bundle for a device profile")
    p.add_argument("source", help="HF / Sentence-Transformers folder or .onnx file")
    p.add_argument("--profile", required=True)
    p.add_argument("-o", "--output", required=True, help="bundle file to write (*.edgepack)")
    p.add_argument("--quant", default="auto", choices=["auto", "none", "int8-dynamic", "int8-static", "int4"])
    p.add_argument("--calibration", help="texts file (one a line) or folder of .npy/.npz samples")
    p.add_argument("--task", help="e.g. feature-extraction, text-classification, audio-vad (default: detected)")
    p.add_argument(
        "--runtime", choices=["wheel", "minimal-build", "none"], help="default: the profile's runtime.source"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import atexit
    import gc
    from pathlib import Path

    # Exiting, the interpreter's last full collection walks every object torch/transformers created (~1.3 s of the
    # command's wall time for MiniLM); frozen, they are skipped and the OS takes the memory back as for any exit.
    atexit.register(gc.freeze)

    from edgepack.cli.render import print_json, progress
    from edgepack.pipeline import PackageRequest, package

    req = PackageRequest(
        source=Path(args.source),
        profile=args.profile,
        output=Path(args.output),
        quant=args.quant,
        calibration=Path(args.calibration) if args.calibration else None,
        task=args.task,
        runtime=args.runtime,
    )
    with progress(not args.json) as prog:
        result = package(req, progress=prog)
    if args.json:
        print_json(result.manifest)
        return 0
    from edgepack.cli.bundle_cmd import render_summary

    render_summary(result.manifest, Path(args.output))
    return 0
