"""How long `edgepack --help` takes (target ≤0.3 s): best and median of 10 runs, JSON to stdout and results/."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    exe = Path(sys.executable).parent / "edgepack"
    runs = []
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--help"], capture_output=True, check=True, cwd=ROOT)
        runs.append(time.perf_counter() - t0)
    doc = {
        "benchmark": "startup",
        "command": "edgepack --help",
        "best_s": round(min(runs), 4),
        "median_s": round(statistics.median(runs), 4),
        "target_s": 0.3,
        "met": statistics.median(runs) <= 0.3,
    }
    out = ROOT / "benchmarks" / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
