"""edgepack inspect BUNDLE / edgepack verify BUNDLE"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("inspect", help="show a bundle's manifest")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print manifest.json as is")
    p.set_defaults(func=_inspect)
    v = sub.add_parser("verify", help="check every member's hash")
    v.add_argument("bundle")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_verify)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def render_summary(manifest: dict[str, Any], path: Path | None = None) -> None:
    from rich.table import Table

    from edgepack.cli.render import console

    c = console()
    if path is not None:
        c.print(f"[bold]{path}[/bold]  id {manifest['id'][:16]}")
    m = manifest["model"]
    c.print(
        f"profile {manifest['profile']['name']} · task {m.get('task')} · opset {m.get('opset')} · "
        f"runtime {manifest['runtime'].get('onnxruntime')} {manifest['runtime'].get('arch')}"
    )
    host = manifest.get("metrics", {}).get("host", {})
    if host:
        t = Table("", "reference (FP32)", "bundle")
        if "reference_size_bytes" in host:
            t.add_row("model size", _mb(host["reference_size_bytes"]), _mb(host["size_bytes"]))
        if "reference_latency_ms_p50" in host:
            t.add_row("latency p50", f"{host['reference_latency_ms_p50']:.2f} ms", f"{host['latency_ms_p50']:.2f} ms")
        for k in ("cosine_mean", "cosine_min", "top1_agreement", "max_abs_error"):
            if k in host:
                t.add_row(k, "1" if k != "max_abs_error" else "0", f"{host[k]:.5g}")
        c.print(t)
    passes = Table("pass", "seconds", "size after", "params")
    for p in manifest.get("passes", []):
        params = ", ".join(f"{k}={v}" for k, v in p.get("params", {}).items() if not isinstance(v, (list, dict)))
        passes.add_row(p["name"], f"{p['seconds']:.1f}", _mb(p["size_bytes_after"]), params[:70])
    c.print(passes)


def _inspect(args: argparse.Namespace) -> int:
    from edgepack.bundle import read_manifest
    from edgepack.cli.render import print_json

    manifest = read_manifest(Path(args.bundle))
    if args.json:
        print_json(manifest)
    else:
        render_summary(manifest, Path(args.bundle))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edgepack.bundle import verify
    from edgepack.cli.render import print_json

    report = verify(Path(args.bundle))
    if args.json:
        print_json(report.as_dict())
    elif report.ok:
        print(f"{args.bundle}: ok, {report.checked} members verified, id {report.bundle_id}")
    else:
        import sys

        for line in report.problems:
            print(f"edgepack: verify: {line}", file=sys.stderr)
    return 0 if report.ok else 1
