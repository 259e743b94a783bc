"""A reduced-operator, minimal ONNX Runtime built from source for one model and one arch (issue 8).

``provide()`` is the one entry point: it makes the ``.ort`` model and its operator config with ORT 1.21's own
tooling, finds or builds the matching library (native x86_64 or cross aarch64, in a cached trixie chroot),
verifies it against full ORT 1.21 on reference inputs, and returns where everything is. Builds are cached by
(ORT version, source, arch, operator config hash, build flags); a cache entry appears only after verification.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import BuildError, ConfigError, SourceError
from edgepack.profiles.model import Profile

Progress = Callable[[str, float, "float | None"], None]

ORT_VERSION = "1.21.0"


@dataclass(frozen=True)
class MinimalRuntime:
    """A verified minimal ORT for one model and arch, plus the model files made by the same ORT version."""

    library: Path  # libonnxruntime.so.<ort_version> in the cache
    extra_libs: list[Path]  # libraries it needs beside it at run time (none from the Debian route: all linked in)
    ort_model: Path  # the model as .ort, made by ORT <ort_version>'s converter (in work_dir)
    required_operators: Path  # the operator config the library was built from (in work_dir)
    ort_version: str
    arch: str
    key: str  # cache key
    cached: bool  # True when the library came from the cache
    verification: Any  # edgepack.runtime.minimal.verify.Verification
    timings: dict[str, float] = field(default_factory=dict)  # seconds: environment, sources, convert, build, verify
    needs: dict[str, Any] = field(default_factory=dict)  # needed libs, runpath, newest glibc/libstdc++ versions

    @property
    def extra_libraries(self) -> list[Path]:
        """Alias of ``extra_libs`` (the name the runtime pass uses)."""
        return self.extra_libs

    @property
    def operators_config(self) -> Path:
        """Alias of ``required_operators``."""
        return self.required_operators

    @property
    def size_bytes(self) -> int:
        """The library plus what it needs shipped beside it."""
        return sum(p.stat().st_size for p in [self.library, *self.extra_libs])

    def as_dict(self) -> dict[str, Any]:
        return {
            "library": str(self.library),
            "extra_libs": [str(p) for p in self.extra_libs],
            "ort_model": str(self.ort_model),
            "required_operators": str(self.required_operators),
            "onnxruntime": self.ort_version,
            "arch": self.arch,
            "key": self.key,
            "cached": self.cached,
            "library_bytes": self.library.stat().st_size,
            "size_bytes": self.size_bytes,
            "needs": self.needs,
            "verification": self.verification.as_dict(),
            "timings": self.timings,
        }


def convert_model(env: Any, model_onnx: Path, arch: str, out_dir: Path) -> tuple[Path, Path]:
    """``model.ort`` and ``required_operators.config`` for ``model_onnx``, made by ORT 1.21's converter.

    The converter must be the library's own version: 1.32's writes fused ops 1.21 does not have (Gelu for
    BiasGelu) and a newer .ort schema.
    """
    from edgepack.runtime.minimal.build import TARGET_PLATFORM

    if not model_onnx.is_file():
        raise SourceError(f"model {model_onnx} does not exist", "check the path")
    shutil.rmtree(out_dir, ignore_errors=True)
    src = out_dir / "in"
    src.mkdir(parents=True)
    shutil.copyfile(model_onnx, src / "model.onnx")
    for sib in model_onnx.parent.iterdir():  # external-data files the .onnx refers to by relative name
        if sib.is_file() and sib != model_onnx and sib.name.startswith(model_onnx.stem) and sib.suffix != ".onnx":
            shutil.copyfile(sib, src / sib.name)
    env.run(
        "python3 -m onnxruntime.tools.convert_onnx_models_to_ort --optimization_style Fixed "
        f"--target_platform {TARGET_PLATFORM[arch]} --enable_type_reduction --output_dir /ort/conv/out "
        "/ort/conv/in/model.onnx",
        binds={"/ort/conv": out_dir},
        timeout=1200,
    )
    ort = out_dir / "out" / "model.ort"
    cfgs = list((out_dir / "out").glob("*.config"))
    if not ort.is_file() or not cfgs:
        raise BuildError(
            f"ORT {ORT_VERSION}'s converter made no .ort/config for {model_onnx}",
            "see the converter's output; the model may use an op ORT 1.21 lacks",
        )
    final_ort, final_cfg = out_dir / "model.ort", out_dir / "required_operators.config"
    ort.rename(final_ort)
    cfgs[0].rename(final_cfg)
    shutil.rmtree(src)
    shutil.rmtree(out_dir / "out")
    return final_ort, final_cfg


def provide(
    profile: Profile,
    model_onnx: Path,
    work_dir: Path,
    progress: Progress | None = None,
    *,
    inputs: Sequence[Mapping[str, Path]] | None = None,
    ort_source: Path | None = None,
    rebuild: bool = False,
    reuse: Path | None = None,
) -> MinimalRuntime:
    """A verified minimal ORT for ``profile``'s arch that runs ``model_onnx`` (built, or taken from the cache).

    ``inputs``: reference samples (input name → .npy); synthesized from the model's input specs when None.
    ``ort_source``: an ORT checkout to build instead of Debian's 1.21 sources. ``rebuild``: drop the cache entry
    first. ``reuse``: a folder from ``runtime build -o`` whose library must cover the model (no build).
    Raises ConfigError (arch without a toolchain), SourceError, BuildError (build or verification failed).
    """
    from edgepack.runtime.minimal import buildenv, cache, opconfig, sources, verify
    from edgepack.runtime.minimal.build import check_arch, compile_library, key_flags, locked

    arch = profile.device.arch
    check_arch(arch)
    timings: dict[str, float] = {}
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    tree = sources.user_tree(ort_source) if ort_source else sources.prepared_debian_tree(progress)
    if tree.version != ORT_VERSION:
        raise ConfigError(
            f"the ORT sources in {tree.root} are version {tree.version}; this build environment makes and checks "
            f".ort models with ORT {ORT_VERSION}",
            f"pass an ORT {ORT_VERSION} checkout, or build {tree.version} with its own tools/ci_build/build.py "
            f"--minimal_build and onnxruntime=={tree.version}'s converter",
        )
    timings["sources"] = time.monotonic() - t
    # Sources before the environment: a missing source file is reported in seconds, not after a chroot build.
    t = time.monotonic()
    env = buildenv.ensure(progress)
    timings["environment"] = time.monotonic() - t

    t = time.monotonic()
    if progress:
        progress(f"convert to .ort with ORT {ORT_VERSION}", 0, None)
    ort_model, config = convert_model(env, Path(model_onnx), arch, work_dir / f"ort-{ORT_VERSION}-{arch}")
    timings["convert"] = time.monotonic() - t

    source_id = f"debian-{sources.PREP_REVISION}" if ort_source is None else f"user:{tree.root}"
    key = cache.build_key(
        ort_version=tree.version,
        source_id=source_id,
        arch=arch,
        config_sha256=cache.config_hash(config),
        flags=key_flags(arch),
    )
    samples: list[Mapping[str, Path]] = (
        list(inputs) if inputs else verify.synthetic_inputs(Path(model_onnx), work_dir / "synthetic-inputs")
    )
    qemu_cpu = profile.device.cpu if arch != "x86_64" else None

    def verified(lib_dir: Path, lib_name: str, verify_dir: Path) -> verify.Verification:
        """Run the reference inputs through this library and full ORT; a mismatch raises (nothing is cached)."""
        t = time.monotonic()
        result = verify.verify(
            env, tree, arch, lib_dir, lib_name, ort_model, samples, verify_dir, qemu_cpu=qemu_cpu, progress=progress
        )
        timings["verify"] = time.monotonic() - t
        _raise_if_mismatch(result)
        return result

    if reuse is not None:
        return _reuse(reuse, env, tree, arch, config, ort_model, samples, work_dir, qemu_cpu, timings, progress)

    if rebuild:
        cache.remove(key)
    entry = cache.lookup(key)
    cached = entry is not None
    ver: verify.Verification | None = None
    if entry is None:
        with locked(key) as work:
            entry = cache.lookup(key)  # another process may have finished it while we waited for the lock
            cached = entry is not None
            if entry is None:
                t = time.monotonic()
                compiled = compile_library(env, tree, arch, config, work, progress=progress)
                timings["build"] = time.monotonic() - t
                staging = work / f"publish-{os.getpid()}"
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir()
                lib_name = f"libonnxruntime.so.{tree.version}"
                shutil.copyfile(compiled.library, staging / lib_name)
                for extra in compiled.extra_libs:
                    shutil.copyfile(extra, staging / _soname(extra))
                shutil.copyfile(config, staging / "required_operators.config")
                _check_elf(staging / lib_name, arch)
                ver = verified(staging, lib_name, work / "verify")
                entry = cache.publish(
                    staging,
                    key,
                    {
                        "ort_version": tree.version,
                        "source": source_id,
                        "arch": arch,
                        "flags": key_flags(arch),
                        "library": lib_name,
                        "extra_libs": [_soname(e) for e in compiled.extra_libs],
                        "build_seconds": round(compiled.seconds, 1),
                        "verification": ver.as_dict(),
                    },
                )
                # The build tree stays (≈1 GB): a change to the linked-in shim or link flags then only relinks.
    gaps = opconfig.missing(entry.config, config)
    if gaps:
        raise BuildError(
            f"cached minimal ORT {entry.dir} lacks {', '.join(gaps[:5])} that the model needs",
            f"delete {entry.dir} (or run again with --rebuild)",
        )
    if ver is None:
        ver = verified(entry.dir, entry.library.name, work_dir / "verify")
    needs = _needs(entry.library)
    _check_glibc(needs, profile)
    return MinimalRuntime(
        library=entry.library,
        extra_libs=entry.extra_libs,
        ort_model=ort_model,
        required_operators=config,
        ort_version=tree.version,
        arch=arch,
        key=key,
        cached=cached,
        verification=ver,
        timings=timings,
        needs=needs,
    )


def _reuse(
    folder: Path,
    env: Any,
    tree: Any,
    arch: str,
    config: Path,
    ort_model: Path,
    samples: list[Mapping[str, Path]],
    work_dir: Path,
    qemu_cpu: str | None,
    timings: dict[str, float],
    progress: Progress | None,
) -> MinimalRuntime:
    from edgepack.runtime.minimal import opconfig, verify

    lib_cfg = folder / "required_operators.config"
    libs = sorted(folder.glob("libonnxruntime.so*"))
    if not lib_cfg.is_file() or not libs:
        raise SourceError(
            f"{folder} holds no minimal ORT (libonnxruntime.so* and required_operators.config)",
            "pass a folder written by 'edgepack runtime build -o DIR'",
        )
    gaps = opconfig.missing(lib_cfg, config)
    if gaps:
        raise BuildError(
            f"the minimal ORT in {folder} was built without {', '.join(gaps[:5])}"
            + (f" (+{len(gaps) - 5} more)" if len(gaps) > 5 else "")
            + ", which the model needs",
            "run 'edgepack runtime build' for this model without --reuse",
        )
    _check_elf(libs[0], arch)
    t = time.monotonic()
    ver = verify.verify(
        env,
        tree,
        arch,
        folder,
        libs[0].name,
        ort_model,
        samples,
        work_dir / "verify",
        qemu_cpu=qemu_cpu,
        progress=progress,
    )
    timings["verify"] = time.monotonic() - t
    _raise_if_mismatch(ver)
    extras = [p for p in sorted(folder.glob("*.so*")) if not p.name.startswith("libonnxruntime")]
    return MinimalRuntime(
        library=libs[0],
        extra_libs=extras,
        ort_model=ort_model,
        required_operators=config,
        ort_version=ORT_VERSION,
        arch=arch,
        key="reuse",
        cached=True,
        verification=ver,
        timings=timings,
        needs=_needs(libs[0]),
    )


def _soname(path: Path) -> str:
    # libprotobuf-lite.so.32.0.12 → libprotobuf-lite.so.32 (the name the library's DT_NEEDED asks for)
    name = path.name
    head, _, ver = name.partition(".so.")
    return f"{head}.so.{ver.split('.')[0]}" if ver else name


def _check_elf(lib: Path, arch: str) -> None:
    from edgepack.runtime.wheel import check_elf

    check_elf(lib, arch)


def _raise_if_mismatch(ver: Any) -> None:
    if not ver.passed:
        worst = ", ".join(f"{k} {v:.3g}" for k, v in sorted(ver.outputs.items()))
        raise BuildError(
            f"the minimal ORT's outputs differ from full ORT {ORT_VERSION} by up to {ver.max_abs_diff:.3g} "
            f"(tolerance {ver.tolerance:g}; {worst}; {ver.samples} samples, {ver.arch})",
            "nothing was cached; report this — the minimal build computes differently (see the AVX-512 note in "
            "edgepack/runtime/minimal/sources.py)",
        )


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def _check_glibc(needs: dict[str, Any], profile: Profile) -> None:
    if needs.get("glibc") and _version(str(needs["glibc"])) > _version(profile.device.glibc):
        raise BuildError(
            f"the minimal ORT needs glibc {needs['glibc']}, but profile {profile.name} allows glibc "
            f"{profile.device.glibc}",
            "report this (edgepack/runtime/minimal/glibc_compat.c should cover it) or raise device.glibc",
        )


def _needs(lib: Path) -> dict[str, Any]:
    from edgepack.runtime.minimal.verify import elf_needs

    n = elf_needs(lib)
    return {"needed": n.needed, "runpath": n.runpath, "glibc": n.glibc, "glibcxx": n.glibcxx}
