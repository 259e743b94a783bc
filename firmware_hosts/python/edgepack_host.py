#!/usr/bin/env python3
"""edgepack's Python device host, for profiles with ``host.kind: python`` (devices that have Python,
numpy and onnxruntime but no .NET). Same commands and documents as the C# host, for the ones it supports:

    python3 host/edgepack_host.py info [--json]
    python3 host/edgepack_host.py check --bundle-dir DIR [--json]

Standalone on purpose: the device has no edgepack installed. Metrics follow docs/bundle-internals.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

VERSION = "0.1.0"


def _fail(msg: str, code: int = 2) -> None:
    print(f"edgepack-host: error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def _imports():  # type: ignore[no-untyped-def]
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        _fail(f"{e.name} is not installed on this device — pip install numpy onnxruntime, or use host.kind dotnet-iot")
    return np, ort


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(1, math.ceil(q / 100.0 * len(s))) - 1]


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _postprocess(np, value, feeds, spec):  # type: ignore[no-untyped-def]
    if spec.get("kind", "none") == "none":
        return np.asarray(value, dtype=np.float64).ravel()
    mask = feeds[spec.get("mask_input", "attention_mask")].astype(np.float64)[..., None]
    pooled = (value * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    if spec.get("normalize"):
        pooled = pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
    return pooled.ravel()


def _gates(gates: dict, metrics: dict) -> list[dict]:  # type: ignore[type-arg]
    table = {"cosine_mean_min": ("cosine_mean", 1), "cosine_min_min": ("cosine_min", 1),
             "top1_agreement_min": ("top1_agreement", 1), "max_abs_error_max": ("max_abs_error", -1),
             "latency_ms_p90_max": ("latency_ms.p90", -1), "peak_rss_mb_max": ("peak_rss_mb", -1)}
    out = []
    for name, threshold in gates.items():
        if threshold is None or name not in table:
            continue
        key, sign = table[name]
        value = metrics
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        passed = value >= threshold if sign > 0 else value <= threshold
        out.append({"name": name, "threshold": threshold, "value": value, "passed": bool(passed)})
    return out


def check(bundle_dir: str) -> dict:  # type: ignore[type-arg]
    np, ort = _imports()
    try:
        with open(os.path.join(bundle_dir, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        ref_dir = os.path.join(bundle_dir, "reference")
        with open(os.path.join(ref_dir, "index.json"), encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        _fail(f"{bundle_dir} is not an installed edgepack bundle ({e}) — deploy one first")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(index.get("threads", 1))
    sess = ort.InferenceSession(os.path.join(bundle_dir, index["model_member"]), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    out_name = index["compare_output"]
    kinds = index.get("metrics", ["max_abs_error"])
    cos, top1, worst, per, feeds_all = [], [], 0.0, [], []
    for s in index["samples"]:
        feeds = {k: np.load(os.path.join(ref_dir, v)) for k, v in s["inputs"].items() if k in names}
        feeds_all.append(feeds)
        ref = np.load(os.path.join(ref_dir, s["outputs"][out_name]))
        got = sess.run([out_name], feeds)[0]
        a = _postprocess(np, ref, feeds, index.get("postprocess", {}))
        b = _postprocess(np, got, feeds, index.get("postprocess", {}))
        entry = {"id": s["id"], "max_abs_error": float(np.max(np.abs(a - b)))}
        worst = max(worst, entry["max_abs_error"])
        if "cosine" in kinds:
            na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
            entry["cosine"] = 1.0 if na == nb == 0 else (0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb)))
            cos.append(entry["cosine"])
        if "top1" in kinds:
            top1.append(bool(np.argmax(ref, axis=-1).tolist() == np.argmax(got, axis=-1).tolist()))
        if "text" in s:
            entry["text"] = s["text"]
        per.append(entry)
    times = []
    for r in range(int(index.get("latency_repeats", 20))):
        t0 = time.perf_counter()
        sess.run(None, feeds_all[r % len(feeds_all)])
        times.append((time.perf_counter() - t0) * 1000.0)
    metrics: dict = {}  # type: ignore[type-arg]
    if cos:
        metrics["cosine_mean"], metrics["cosine_min"] = sum(cos) / len(cos), min(cos)
    if top1:
        metrics["top1_agreement"] = sum(top1) / len(top1)
    metrics["max_abs_error"] = worst
    metrics["latency_ms"] = {q: _percentile(times, float(q[1:])) for q in ("p50", "p90", "p99")}
    metrics["peak_rss_mb"] = _peak_rss_mb()
    gates = _gates(manifest.get("profile", {}).get("gates", {}), metrics)
    return {"target": None, "bundle_id": manifest.get("id"), "host_kind": "python", "arch": platform.machine(),
            "samples": len(per), "metrics": metrics, "gates": gates, "passed": all(g["passed"] for g in gates),
            "onnxruntime": ort.__version__, "details": {"per_sample": per, "latency_ms_samples": times}}


def main() -> int:
    p = argparse.ArgumentParser(prog="edgepack_host.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info")
    i.add_argument("--json", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("--bundle-dir", required=True)
    c.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.cmd == "info":
        _, ort = _imports()
        doc = {"host": f"edgepack-host-python {VERSION}", "onnxruntime": ort.__version__, "arch": platform.machine(),
               "execution_providers": ort.get_available_providers()}
        print(json.dumps(doc) if a.json else "\n".join(f"{k}: {v}" for k, v in doc.items()))
        return 0
    doc = check(a.bundle_dir)
    print(json.dumps(doc, indent=None if a.json else 2))
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
