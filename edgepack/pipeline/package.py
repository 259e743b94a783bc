"""edgepack package: chain the passes the profile asks for, measure the result, write the bundle."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from edgepack import __version__
from edgepack.bundle import Member, write_bundle
from edgepack.checks.metrics import accuracy, apply_gates, percentile
from edgepack.errors import BudgetExceeded, BundleError, ConfigError, GateFailed, SourceError
from edgepack.passes.base import ModelArtifact, Pass, PassContext, PassRecord, ProgressFn
from edgepack.paths import cache_dir, project_root
from edgepack.profiles import Profile, load

TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentence_bert_config.json",
    "modules.json",
    "config.json",
    "1_Pooling/config.json",
]
QUANT_MODES = ("none", "int8-dynamic", "int8-static", "int4")
# Size of the quantized model relative to FP32, measured on MiniLM (NOTES.md); used only to suggest a --quant.
QUANT_SIZE_RATIO = {"none": 1.0, "int8-static": 0.35, "int8-dynamic": 0.26, "int4": 0.17}


@dataclass(frozen=True)
class PackageRequest:
    source: Path
    profile: str
    output: Path
    quant: str = "auto"
    calibration: Path | None = None
    task: str | None = None
    runtime: str | None = None


@dataclass
class PackageResult:
    manifest: dict[str, Any]
    output: Path


def _check_inputs(req: PackageRequest) -> None:
    from edgepack.passes.export import is_model_folder

    src = req.source
    if not src.exists():
        raise SourceError(f"model source {src} does not exist", "give a model folder or an .onnx file")
    if src.is_dir() and not is_model_folder(src):
        raise SourceError(
            f"{src} is not a model folder (no config.json with weights)",
            "give a Hugging Face / Sentence-Transformers folder or an .onnx file",
        )
    if src.is_file() and src.suffix != ".onnx":
        raise SourceError(f"{src} is not an .onnx file", "give a model folder or an .onnx file")
    if req.calibration is not None and not req.calibration.exists():
        raise SourceError(f"--calibration {req.calibration} does not exist", "check the path")
    out_dir = req.output.resolve().parent
    if not out_dir.is_dir():
        raise BundleError(f"output folder {out_dir} does not exist", "create it or choose another -o path")
    if not os.access(out_dir, os.W_OK):
        raise BundleError(f"output folder {out_dir} is not writable", "choose a writable -o path")
    if req.output.is_dir():
        raise BundleError(f"-o {req.output} is a folder", "give a file name, e.g. model.edgepack")
    if req.quant != "auto" and req.quant not in QUANT_MODES:
        raise ConfigError(f"unknown --quant {req.quant}", f"use one of auto, {', '.join(QUANT_MODES)}")


def _host_exe() -> Path:
    exe = project_root() / "build" / "host" / "edgepack-host.exe"
    if exe.is_file():
        return exe
    raise ConfigError("the C# device host is not built", "run 'make host'")


def _install_script() -> bytes:
    script = Path(__file__).resolve().parent.parent / "deploy" / "install.sh"
    if script.is_file():
        return script.read_bytes()
    return b"#!/bin/sh\necho 'install.sh: this edgepack version cannot install bundles on devices yet' >&2\nexit 1\n"


def _quant_pass(mode: str, profile: Profile) -> Pass[Any]:
    from edgepack.passes.quantize import QuantizeConfig, QuantizePass

    return QuantizePass(QuantizeConfig.from_profile(profile, mode))


class _Timings:
    """Measured times recorded once per bundle content, so that packaging the same inputs again gives the same
    bytes (timings are measurements, not inputs; ``EDGEPACK_REMEASURE=1`` refreshes them)."""

    def __init__(self, key: str) -> None:
        self.path = cache_dir() / "measurements" / f"{key}.json"

    def recall_or_store(self, measured: dict[str, Any]) -> dict[str, Any]:
        if self.path.is_file() and not os.environ.get("EDGEPACK_REMEASURE"):
            stored: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
            return stored
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".partial")
        tmp.write_text(json.dumps(measured, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)
        return measured


# Below this many FP32 bytes quantizing gains under ~3 MB and ORT's int8 kernels do not speed up the small convs
# and recurrent cells such models are made of (silero-vad: 2.3 MB), while it costs accuracy: auto keeps them float.
SMALL_MODEL_BYTES = 4_000_000


def resolve_quant(requested: str, profile: Profile, fp32_bytes: int) -> tuple[str, str]:
    """The quantization mode to use and why."""
    if requested != "auto":
        return requested, "--quant"
    if fp32_bytes < SMALL_MODEL_BYTES and profile.quantization.default != "none":
        return "none", f"auto: model under {SMALL_MODEL_BYTES // 1_000_000} MB gains nothing from quantization"
    return profile.quantization.default, f"auto: profile {profile.name} default"


def _is_timing(key: str) -> bool:
    return key == "seconds" or key.endswith("_seconds")


def without_timings(doc: Any) -> Any:
    """``doc`` with every measured duration (keys ``seconds`` / ``*_seconds``, at any depth) left out."""
    if isinstance(doc, dict):
        return {k: without_timings(v) for k, v in doc.items() if not _is_timing(str(k))}
    if isinstance(doc, list):
        return [without_timings(v) for v in doc]
    return doc


def _suggest_quant(fp32_bytes: int, budget_mb: float) -> str:
    for mode in ("int8-dynamic", "int4"):
        if fp32_bytes * QUANT_SIZE_RATIO[mode] <= budget_mb * 1e6:
            return f"try --quant {mode} (≈{fp32_bytes * QUANT_SIZE_RATIO[mode] / 1e6:.0f} MB)"
    return "no --quant mode fits; choose a smaller model or a profile with a larger budget"


def _scratch_root(source: Path) -> str | None:
    """Where the passes write their intermediate models: /dev/shm when it has ample room (8× the weights), else the
    default temp folder. Each pass writes a model-sized file (90 MB for MiniLM) that lives for seconds; on a disk
    file system allocating it costs several times what it costs in memory. An explicit TMPDIR wins."""
    shm = Path("/dev/shm")
    if os.environ.get("TMPDIR") or not shm.is_dir() or not os.access(shm, os.W_OK):
        return None
    weights = [source] if source.is_file() else [f for f in source.iterdir() if f.suffix in (".safetensors", ".bin")]
    need = 8 * sum(f.stat().st_size for f in weights if f.is_file()) + (256 << 20)
    try:
        free = shutil.disk_usage(shm).free
    except OSError:  # not mounted as we expect: the default temp folder is always fine
        return None
    return str(shm) if free >= need else None


@contextmanager
def _collections_skip_what_exists() -> Iterator[Callable[[], None]]:
    """Yields a function that moves every object alive now out of the cyclic GC's reach until the block ends.

    After the export, the process holds the many objects torch, transformers and optimum create on import;
    each full collection walks all of them (~0.25 s on MiniLM's run) to find the few cycles the passes leave. The
    objects return to the collector when the block ends; a process that froze objects itself is left alone.
    """
    import gc

    froze = False

    def freeze() -> None:
        nonlocal froze
        if not froze and gc.get_freeze_count() == 0:
            gc.freeze()
            froze = True

    try:
        yield freeze
    finally:
        if froze:
            gc.unfreeze()


def package(req: PackageRequest, progress: ProgressFn | None = None) -> PackageResult:
    import onnxruntime

    _check_inputs(req)
    profile = load(req.profile)
    runtime_source = req.runtime or profile.runtime.source
    from edgepack.pipeline.reference_build import TEXT_TASKS, build_reference, detect_task
    from edgepack.runtime.session import make_session

    task = req.task or detect_task(req.source)
    with (
        tempfile.TemporaryDirectory(prefix="edgepack-package-", dir=_scratch_root(req.source)) as tmp,
        _collections_skip_what_exists() as skip_existing,
    ):
        ctx = PassContext(profile=profile, work_dir=Path(tmp), progress=progress)
        records: list[PassRecord] = []

        def step(p: Pass[Any], art: ModelArtifact) -> ModelArtifact:
            ctx.report(p.name, 0, None)
            out, rec = p.execute(art, ctx)
            records.append(rec)
            return out

        from edgepack.passes.export import ExportConfig, ExportPass
        from edgepack.passes.optimize import TASK_PINNED_INPUTS, OptimizeConfig, OptimizePass
        from edgepack.passes.prune import PruneConfig, PrunePass
        from edgepack.passes.runtime import RuntimeConfig, RuntimePass

        export_task = "feature-extraction" if task == "sentence-similarity" else task
        art = ModelArtifact(onnx_path=req.source, task=task)
        art = step(ExportPass(ExportConfig(opset=profile.runtime.opset, task=export_task)), art)
        skip_existing()  # torch, transformers and optimum are loaded now
        reference_model = art.onnx_path
        mode, mode_reason = resolve_quant(req.quant, profile, reference_model.stat().st_size)
        tokenizer_dir = art.source_dir if task in TEXT_TASKS else None
        ctx.report("reference", 0, None)
        # The FP32 reference runs (onnxruntime, GIL released) overlap the optimize pass (Python graph work):
        # the machine's second core would otherwise sit idle for both.
        with ThreadPoolExecutor(max_workers=1) as pool:
            fp32_session = pool.submit(make_session, reference_model, 1)  # runs the reference, later timed
            pending = pool.submit(
                lambda: build_reference(task, reference_model, tokenizer_dir, req.calibration, fp32_session.result())
            )
            art = step(
                OptimizePass(
                    OptimizeConfig(pinned_inputs=TASK_PINNED_INPUTS.get(task, {}), fuse_embed_layer_norm=mode != "int4")
                ),
                art,
            )
            reference, calibration = pending.result()
        ctx.reference, ctx.calibration = reference, calibration
        if mode != "none":
            art = step(_quant_pass(mode, profile), art)
        platform: Literal["arm", "amd64"] = "amd64" if profile.device.arch == "x86_64" else "arm"
        art = step(PrunePass(PruneConfig(target_platform=platform)), art)
        art = step(
            RuntimePass(
                RuntimeConfig(
                    source=cast(Literal["wheel", "minimal-build", "path", "none"], runtime_source),
                    onnxruntime=profile.runtime.onnxruntime,
                    arch=profile.device.arch,
                )
            ),
            art,
        )
        assert art.ort_path is not None and art.operators_config is not None

        shipped = art.ort_path if runtime_source == "minimal-build" else art.onnx_path
        shipped_member = "model/model.ort" if shipped == art.ort_path else "model/model.onnx"
        fp32_size = reference_model.stat().st_size
        size = shipped.stat().st_size
        budget = profile.budgets.max_model_mb
        if budget is not None and size > budget * 1e6:
            raise BudgetExceeded(
                f"the {mode} model is {size / 1e6:.1f} MB, over {profile.name}'s max_model_mb {budget:g} by "
                f"{size / 1e6 - budget:.1f} MB",
                _suggest_quant(fp32_size, budget),
            )

        ctx.report("measure", 0, None)
        evaluated = art.notes.get("evaluated")
        known = (
            evaluated["metrics"]
            if evaluated and evaluated["model"] == str(shipped) and evaluated["samples"] == len(reference.samples)
            else None
        )
        host_metrics, latency = _measure(reference, fp32_session.result(), shipped, known)
        gates = apply_gates(profile.gates.model_dump(), host_metrics)
        failed = [g for g in gates if not g["passed"]]
        if failed:
            g = failed[0]
            raise GateFailed(
                f"{g['name']}: {g['value']:.4f} misses the profile's {g['threshold']} "
                f"(quant {mode}, profile {profile.name})",
                "try another --quant (e.g. int8-dynamic) or loosen the gate in your own profile",
            )

        members: list[Member] = [
            Member(shipped_member, source=shipped),
            Member("model/required_operators.config", source=art.operators_config),
        ]
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                f = tokenizer_dir / name
                if f.is_file():
                    members.append(Member(f"model/{name}", source=f))
        for lib in art.runtime_files:
            members.append(Member(f"runtime/{lib.name}", source=lib))
        if profile.host.kind == "dotnet-iot":
            members.append(Member("host/edgepack-host.exe", source=_host_exe()))
        else:
            py_host = project_root() / "firmware_hosts" / "python" / "edgepack_host.py"
            members.append(Member("host/edgepack_host.py", source=py_host, executable=True))
        input_names = [i.name for i in _model_inputs(shipped)]
        for path, data in reference.files(input_names, shipped_member, profile.runtime.threads).items():
            members.append(Member(path, data=data))
        members.append(Member("install.sh", data=_install_script(), executable=True))

        from edgepack.checks.inputs import model_io

        ins, outs = model_io(art.onnx_path)
        manifest: dict[str, Any] = {
            "created_by": f"edgepack {__version__}",
            "profile": profile.model_dump(mode="json"),
            "model": {
                "source": req.source.name,
                "name": model_name(req.source),
                "task": task,
                "quantization": mode,
                "quantization_reason": mode_reason,
                "opset": _opset(art.onnx_path),
                "ir_version": _ir_version(art.onnx_path),
                "member": shipped_member,
                "inputs": [i.as_dict() for i in ins],
                "outputs": [o.as_dict() for o in outs],
                "pinned_inputs": art.notes.get("pinned_inputs", {}),
            },
            "runtime": {
                "onnxruntime": art.runtime_version,
                "arch": profile.device.arch,
                "source": runtime_source,
                "library": f"runtime/{art.runtime_files[0].name}" if art.runtime_files else None,
                "required_operators": "model/required_operators.config",
                "packaged_with": onnxruntime.__version__,
            },
            "passes": [r.as_dict() for r in records],
            "metrics": {
                "host": {
                    "size_bytes": size,
                    "reference_size_bytes": fp32_size,
                    **{k: v for k, v in host_metrics.items() if k != "per_sample_cosine"},
                }
            },
            "gates": gates,
        }
        # Timings are the only thing that differs between two runs on the same inputs: key them by the rest.
        key_doc = json.dumps(
            {**without_timings(manifest), "files": sorted((m.path, m.sha256()) for m in members)},
            sort_keys=True,
            default=str,
        )
        timings = _Timings(hashlib.sha256(key_doc.encode()).hexdigest()).recall_or_store(
            {"latency": latency, "passes": manifest["passes"]}
        )
        manifest["metrics"]["host"].update(timings["latency"])
        manifest["passes"] = timings["passes"]
        ctx.report("bundle", 0, None)
        final = write_bundle(req.output, manifest, members)
        return PackageResult(manifest=final, output=req.output)


def model_name(source: Path) -> str:
    """A readable name: the model card's title for a folder, else the file or folder name."""
    readme = source / "README.md" if source.is_dir() else None
    if readme is not None and readme.is_file():
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("# ") and len(line) < 100:
                return line[2:].strip()
    return source.stem if source.is_file() else source.name


def _model_inputs(path: Path) -> list[Any]:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    return list(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs())


def _opset(path: Path) -> int:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((int(i.version) for i in m.opset_import if i.domain in ("", "ai.onnx")), 0)


def _ir_version(path: Path) -> int:
    import onnx

    return int(onnx.load(str(path), load_external_data=False).ir_version)


def _measure(
    reference: Any, ref_sess: Any, shipped: Path, known: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, float]]:
    """Accuracy of the shipped model on the reference set (``known`` when a pass measured this very file) and
    p50 latency of it and of the FP32 reference (on ``ref_sess``, the session the reference set was made with),
    interleaved, 1 thread."""
    from edgepack.runtime.session import interleaved_latency, make_session, run_all

    new_sess = make_session(shipped, threads=1)
    feeds = [s.feeds for s in reference.samples]
    if known is None:
        outputs = run_all(new_sess, feeds, [reference.compare_output])
        metrics = accuracy(reference.references(), reference.compare_values(outputs), reference.metric_kinds)
    else:
        metrics = dict(known)
    times = interleaved_latency([ref_sess, new_sess], feeds, repeats=40)
    latency = {
        "reference_latency_ms_p50": round(percentile(times[0], 50), 4),
        "latency_ms_p50": round(percentile(times[1], 50), 4),
    }
    return metrics, latency
