"""runtime: the ONNX Runtime library the bundle ships for the profile's arch (PyPI wheel or minimal build)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from edgepack.errors import ConfigError
from edgepack.passes.base import ModelArtifact, Pass, PassConfig, PassContext


class RuntimeConfig(PassConfig):
    source: Literal["wheel", "minimal-build", "path", "none"] = "wheel"
    onnxruntime: str = "1.32.0"
    arch: str = "aarch64"


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def _reference_inputs(ctx: PassContext, artifact: ModelArtifact, dest: Path) -> list[dict[str, Path]] | None:
    """The bundle's reference inputs as .npy files (input name → file), for verifying a minimal build with.

    None when the pipeline made no reference set (the build then verifies on synthesized inputs).
    """
    if ctx.reference is None:
        return None
    import numpy as np

    from edgepack.checks.inputs import model_io

    names = {i.name for i in model_io(artifact.onnx_path)[0]}
    dest.mkdir(parents=True, exist_ok=True)
    samples: list[dict[str, Path]] = []
    for k, sample in enumerate(ctx.reference.samples):
        files: dict[str, Path] = {}
        for j, (name, value) in enumerate(sorted(sample.feeds.items())):
            if name in names:  # feeds the optimized model no longer takes (folded inputs) stay out
                files[name] = dest / f"s{k:03d}.{j}.npy"
                np.save(files[name], value)
        samples.append(files)
    return samples


class RuntimePass(Pass[RuntimeConfig]):
    name: ClassVar[str] = "runtime"
    Config: ClassVar[type[PassConfig]] = RuntimeConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        cfg: RuntimeConfig = self.config
        files = []
        version: str | None = cfg.onnxruntime
        verification: dict[str, Any] | None = None
        if cfg.source == "wheel":
            from edgepack.runtime.wheel import WHEEL_PLATFORM, fetch_library

            if cfg.arch in WHEEL_PLATFORM:
                need = WHEEL_PLATFORM[cfg.arch][1]
                if _version_tuple(ctx.profile.device.glibc) < _version_tuple(need):
                    raise ConfigError(
                        f"profile {ctx.profile.name} has glibc {ctx.profile.device.glibc}, but the onnxruntime "
                        f"{cfg.onnxruntime} {cfg.arch} wheel needs glibc {need}",
                        "use --runtime minimal-build, or runtime.source: path with the device's own ORT",
                    )
            ctx.report("runtime", 0, 1)
            files.append(fetch_library(cfg.onnxruntime, cfg.arch))
            ctx.report("runtime", 1, 1)
        elif cfg.source == "minimal-build":
            try:
                from edgepack.runtime import minimal
            except ImportError as e:
                raise ConfigError(
                    "minimal ONNX Runtime builds are not available in this version", "use --runtime wheel"
                ) from e
            work = ctx.work_dir / "minimal"
            built = minimal.provide(
                ctx.profile,
                artifact.onnx_path,
                work,
                progress=ctx.progress,
                inputs=_reference_inputs(ctx, artifact, work / "reference-inputs"),
            )
            files.extend([built.library, *built.extra_libraries])
            version = built.ort_version
            artifact.ort_path = built.ort_model
            artifact.operators_config = built.operators_config
            verification = built.verification.as_dict()
        else:
            version = cfg.onnxruntime if cfg.source == "path" else None
        sizes = sum(f.stat().st_size for f in files)
        budget = ctx.profile.budgets.max_runtime_mb
        self.extra_params = {"library_bytes": sizes, "files": [f.name for f in files]}
        if verification is not None:
            # What the built library was checked against, in the pass log. Peak RSS stays out: it varies run to
            # run, and the manifest must not (bundles are byte-identical for identical inputs).
            keep = ("max_abs_diff", "samples", "tolerance", "reference")
            self.extra_params["verification"] = {k: verification[k] for k in keep}
        if budget is not None and sizes > budget * 1e6:
            raise ConfigError(
                f"the {cfg.source} runtime is {sizes / 1e6:.1f} MB, over the profile's max_runtime_mb "
                f"{budget:g} by {sizes / 1e6 - budget:.1f} MB",
                "use --runtime minimal-build",
            )
        artifact.runtime_files = files
        artifact.runtime_version = version
        return artifact
