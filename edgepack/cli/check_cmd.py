"""edgepack check --target NAME [--report DIR] [--json]"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    c = sub.add_parser("check", help="measure accuracy and latency of the installed bundle on the device")
    c.add_argument("--target", required=True)
    c.add_argument("--report", help="folder for index.html and plots")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_run)


def render_check(doc: dict[str, Any]) -> None:
    from rich.table import Table

    from edgepack.cli.render import console

    c = console()
    m = doc.get("metrics", {})
    c.print(
        f"[bold]{doc.get('target')}[/bold] ({doc.get('arch')}) · bundle {str(doc.get('bundle_id'))[:16]} · "
        f"{doc.get('samples')} samples · host {doc.get('host_kind')}"
    )
    t = Table("metric", "on the device")
    for k in ("cosine_mean", "cosine_min", "top1_agreement", "max_abs_error", "peak_rss_mb"):
        if k in m:
            t.add_row(k, f"{m[k]:.5g}")
    lat = m.get("latency_ms", {})
    for k in ("p50", "p90", "p99"):
        if k in lat:
            t.add_row(f"latency {k}", f"{lat[k]:.2f} ms")
    c.print(t)
    g = Table("gate", "threshold", "value", "verdict")
    for gate in doc.get("gates", []):
        g.add_row(
            gate["name"],
            f"{gate['threshold']:g}",
            f"{gate['value']:.5g}",
            "[green]pass[/green]" if gate["passed"] else "[red]FAIL[/red]",
        )
    c.print(g)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgepack.checks.device import check_target
    from edgepack.cli.render import print_json

    doc, manifest = check_target(args.target)
    if args.report:
        from edgepack.checks.report import write_report

        index = write_report(Path(args.report), doc, manifest)
        if not args.json:
            print(f"report: {index}")
    if args.json:
        print_json(doc)
    else:
        render_check(doc)
    failed = [g for g in doc.get("gates", []) if not g["passed"]]
    for g in failed:
        op = "≥" if g["name"].endswith("_min") else "≤"
        print(
            f"edgepack: gate failed: {g['name']}: {g['value']:.5g} (needs {op} {g['threshold']:g}) on {args.target}",
            file=sys.stderr,
        )
    return 1 if failed else 0
