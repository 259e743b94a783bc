"""Verification of a built minimal library against full ONNX Runtime of the same version.

Both sides run the same ``.ort`` model on the same inputs through ``verifier.c`` (one binary, the library
``dlopen``ed): the minimal library on its own arch (aarch64 under qemu-user with the profile's CPU model, through
binfmt in the chroot), and full ORT 1.21 of the same arch: Debian's ``libonnxruntime.so.1.21`` inside the chroot on
x86_64, Debian's arm64 package under the same qemu CPU on aarch64. A max abs difference above ``TOLERANCE`` is a
failed build, reported with the numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgepack.errors import BuildError
from edgepack.paths import cache_dir
from edgepack.runtime.minimal.buildenv import BuildEnv
from edgepack.runtime.minimal.sources import SourceTree

Progress = Callable[[str, float, "float | None"], None]

TOLERANCE = 1e-5
COMPILERS = {"x86_64": "gcc", "aarch64": "aarch64-linux-gnu-gcc"}
FULL_ORT_IN_CHROOT = "/usr/lib/x86_64-linux-gnu/libonnxruntime.so.1.21.0"
# Debian's full ORT 1.21 for arm64 and the libraries it needs that the chroot's cross setup lacks; fetched with
# the chroot's apt (which checks each .deb against trixie's signed index) and unpacked beside the chroot.
FULL_ORT_ARM64_DEBS = (
    "libonnxruntime1.21:arm64",
    "libxnnpack0.20241108:arm64",
    "libpthreadpool0:arm64",
    "libonnx1t64:arm64",
    "libprotobuf32t64:arm64",
    "libcpuinfo0:arm64",
)
FULL_ORT_ARM64_DIR = "/ort/full"
FULL_ORT_ARM64_LIBS = f"{FULL_ORT_ARM64_DIR}/usr/lib/aarch64-linux-gnu"

Sample = Mapping[str, Path]  # input name → .npy file


@dataclass(frozen=True)
class Verification:
    """How the minimal library's outputs compared with full ORT's on the same inputs."""

    max_abs_diff: float
    samples: int
    outputs: dict[str, float]  # per output name: max abs diff over samples
    tolerance: float
    reference: str  # what the minimal library was compared with
    arch: str
    cpu: str | None  # qemu CPU model the aarch64 side ran under
    peak_rss_kb: dict[str, int] = field(default_factory=dict)  # {"minimal": kB, "full": kB} of the verifier

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "samples": self.samples,
            "outputs": self.outputs,
            "tolerance": self.tolerance,
            "reference": self.reference,
            "arch": self.arch,
            "cpu": self.cpu,
            "peak_rss_kb": self.peak_rss_kb,
        }


def verifier_binary(env: BuildEnv, tree: SourceTree, arch: str) -> Path:
    """``verifier`` for ``arch``, compiled once in the chroot against this tree's C API header."""
    src = resources.files("edgepack.runtime.minimal").joinpath("verifier.c").read_bytes()
    header = tree.c_api_header
    if not header.is_file():
        raise BuildError(f"{header} is missing from the ORT sources", "pass a complete ORT source tree")
    tag = hashlib.sha256(src + header.read_bytes()).hexdigest()[:16]
    out_dir = cache_dir() / "ort-build" / "verifier" / tag
    binary = out_dir / f"verifier-{arch}"
    if binary.is_file():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "verifier.c").write_bytes(src)
    tmp = f"verifier-{arch}.tmp"
    env.run(
        f"{COMPILERS[arch]} -O2 -std=c11 -I/ort/hdr /ort/v/verifier.c -ldl -o /ort/v/{tmp} && "
        f"mv /ort/v/{tmp} /ort/v/verifier-{arch}",
        binds={"/ort/v": out_dir, "/ort/hdr": header.parent},
        timeout=300,
    )
    return binary


def full_ort_arm64(env: BuildEnv) -> tuple[Path, str]:
    """Debian's arm64 ``libonnxruntime.so.1.21.0`` unpacked (once) under the cache: ``(folder, versions)``."""
    out = cache_dir() / "ort-build" / "full-ort-arm64"
    stamp = out / "versions.txt"
    if stamp.is_file():
        return out, stamp.read_text().strip()
    staging = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "debs").mkdir(parents=True)
    try:
        env.run(
            "cd /ort/full/debs && apt-get -q download " + " ".join(FULL_ORT_ARM64_DEBS) + " && "
            'for d in *.deb; do dpkg-deb -x "$d" /ort/full; done && '
            "dpkg-deb -W --showformat='${Package} ${Version}' libonnxruntime1.21_*_arm64.deb > /ort/full/versions.txt",
            binds={"/ort/full": staging},
            timeout=900,
        )
        lib = staging / "usr" / "lib" / "aarch64-linux-gnu" / "libonnxruntime.so.1.21.0"
        if not lib.is_file():
            raise BuildError(
                "Debian's arm64 libonnxruntime1.21 package holds no libonnxruntime.so.1.21.0",
                f"delete {staging} and run again",
            )
        shutil.rmtree(staging / "debs")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out, stamp.read_text().strip()


def fake_cpu_sysfs() -> Path:
    """A folder with only ``devices/system/cpu/{possible,present,online}`` (one CPU).

    Debian's full ORT reads them through cpuinfo and aborts without them; the real /sys stays out of the chroot
    (ORT segfaults under qemu-user when it can read it). CPU features still come from the qemu CPU's AT_HWCAP.
    """
    root = cache_dir() / "ort-build" / "fake-sysfs"
    cpu = root / "devices" / "system" / "cpu"
    if not (cpu / "online").is_file():
        cpu.mkdir(parents=True, exist_ok=True)
        for name in ("possible", "present", "online"):
            (cpu / name).write_text("0\n")
    return root


def synthetic_inputs(model_onnx: Path, dest: Path, count: int = 4, seq_len: int = 16) -> list[Sample]:
    """Deterministic inputs shaped like the model's, for when no reference inputs are given.

    Token-id inputs get ids in a small range every vocabulary has; masks are ones; token types zeros; floats
    are seeded normals. Dynamic dimensions become 1 (batch) or ``seq_len``.
    """
    import numpy as np
    import onnx

    model = onnx.load(str(model_onnx), load_external_data=False)
    init = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(1234)
    dtypes = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 2: np.uint8, 3: np.int8, 11: np.float64}
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Sample] = []
    for k in range(count):
        sample: dict[str, Path] = {}
        for inp in model.graph.input:
            if inp.name in init:
                continue
            tt = inp.type.tensor_type
            dt = dtypes.get(tt.elem_type)
            if dt is None:
                raise BuildError(
                    f"input '{inp.name}' has an element type edgepack cannot synthesize",
                    "give reference inputs (package the model, then 'runtime build --model BUNDLE')",
                )
            shape = [
                d.dim_value if d.HasField("dim_value") else (1 if i == 0 else seq_len)
                for i, d in enumerate(tt.shape.dim)
            ]
            name = inp.name.lower()
            arr: Any
            if "mask" in name:
                arr = np.ones(shape, dtype=dt)
            elif "type" in name or "position" in name:
                arr = (
                    np.zeros(shape, dtype=dt)
                    if "type" in name
                    else np.broadcast_to(np.arange(shape[-1]), shape).astype(dt)
                )
            elif np.issubdtype(dt, np.integer):
                arr = rng.integers(100, 1000, size=shape).astype(dt)
            elif dt is np.bool_:
                arr = np.ones(shape, dtype=dt)
            else:
                arr = rng.standard_normal(shape).astype(dt)
            p = dest / f"syn{k:03d}.{inp.name}.npy"
            np.save(p, arr)
            sample[inp.name] = p
        out.append(sample)
    return out


def _stage_inputs(samples: Sequence[Sample], run: Path) -> list[str]:
    """Copy the inputs under ``run/in`` and return the verifier's sample arguments (chroot paths)."""
    (run / "in").mkdir(parents=True, exist_ok=True)
    args: list[str] = []
    for k, sample in enumerate(samples):
        args += ["--", f"s{k:03d}"]
        for name, path in sample.items():
            if not Path(path).is_file():
                raise BuildError(f"reference input {path} does not exist", "package the bundle again")
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            shutil.copyfile(path, run / "in" / f"s{k:03d}.{safe}.npy")
            args.append(f"{name}=/ort/run/in/s{k:03d}.{safe}.npy")
    return args


def _run_side(
    env: BuildEnv,
    verifier: Path,
    lib: str,
    lib_binds: dict[str, Path],
    model: Path,
    run: Path,
    side: str,
    sample_args: list[str],
    qemu_cpu: str | None,
    library_path: str | None = None,
) -> int:
    out = run / side
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copyfile(verifier, run / verifier.name)
    (run / verifier.name).chmod(0o755)
    prefix = f"QEMU_CPU={shlex.quote(qemu_cpu)} " if qemu_cpu else ""
    if library_path:
        prefix += f"LD_LIBRARY_PATH={shlex.quote(library_path)} "
    cmd = f"{prefix}/ort/run/{verifier.name} {shlex.quote(lib)} /ort/model.ort /ort/run/{side} 1 " + shlex.join(
        sample_args
    )
    try:
        text = env.run(cmd, binds={"/ort/run": run, "/ort/model.ort": model, **lib_binds}, timeout=3600)
    except BuildError as e:
        raise BuildError(
            f"the {side} ORT library could not run the model ({e.what})", e.fix or "see the message above"
        ) from e
    last = [ln for ln in text.splitlines() if ln.startswith("{")]
    return int(json.loads(last[-1])["peak_rss_kb"]) if last else -1


def verify(
    env: BuildEnv,
    tree: SourceTree,
    arch: str,
    library_dir: Path,
    library_name: str,
    ort_model: Path,
    samples: Sequence[Sample],
    run_dir: Path,
    *,
    qemu_cpu: str | None = None,
    progress: Progress | None = None,
) -> Verification:
    """Run ``samples`` through the minimal library and through full ORT 1.21; compare every output."""
    import numpy as np

    if not samples:
        raise BuildError("no reference inputs to verify the minimal library with", "give the bundle reference data")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    args = _stage_inputs(samples, run_dir)
    verifier = verifier_binary(env, tree, arch)  # both sides run on the library's own arch
    if progress:
        progress("verify: full ORT 1.21" + (" (qemu)" if arch != "x86_64" else ""), 0, 2)
    if arch == "x86_64":
        rss_full = _run_side(env, verifier, FULL_ORT_IN_CHROOT, {}, ort_model, run_dir, "full", args, None)
        reference = "onnxruntime 1.21.0 full build (Debian libonnxruntime1.21, x86_64)"
    else:
        # Same arch, same CPU model: int8 kernels and float code paths differ between x86_64 and aarch64, so
        # only Debian's own arm64 build of the same version is a fair reference.
        full_dir, versions = full_ort_arm64(env)
        rss_full = _run_side(
            env,
            verifier,
            f"{FULL_ORT_ARM64_LIBS}/libonnxruntime.so.1.21.0",
            {FULL_ORT_ARM64_DIR: full_dir, "/sys": fake_cpu_sysfs()},
            ort_model,
            run_dir,
            "full",
            args,
            qemu_cpu,
            library_path=FULL_ORT_ARM64_LIBS,
        )
        reference = f"onnxruntime 1.21.0 full build (Debian {versions}, aarch64 under qemu {qemu_cpu or 'max'})"
    if progress:
        progress(f"verify: minimal {arch}" + (" (qemu)" if arch != "x86_64" else ""), 1, 2)
    rss_min = _run_side(
        env,
        verifier,
        f"/ort/lib/{library_name}",
        {"/ort/lib": library_dir},
        ort_model,
        run_dir,
        "minimal",
        args,
        qemu_cpu if arch != "x86_64" else None,
    )
    per_output: dict[str, float] = {}
    for ref in sorted((run_dir / "full").glob("*.npy")):
        cand = run_dir / "minimal" / ref.name
        out_name = ref.name.split(".", 1)[1][: -len(".npy")]
        if not cand.is_file():
            raise BuildError(f"the minimal library produced no output '{out_name}'", "see the verifier's log")
        a, b = np.load(ref), np.load(cand)
        if a.shape != b.shape:
            raise BuildError(
                f"output '{out_name}' has shape {b.shape} from the minimal library, {a.shape} from full ORT",
                "report this; the minimal build is wrong",
            )
        d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        per_output[out_name] = max(per_output.get(out_name, 0.0), d)
    if progress:
        progress("verify: compare", 2, 2)
    return Verification(
        max_abs_diff=max(per_output.values(), default=0.0),
        samples=len(samples),
        outputs=per_output,
        tolerance=TOLERANCE,
        reference=reference,
        arch=arch,
        cpu=qemu_cpu if arch != "x86_64" else None,
        peak_rss_kb={"minimal": rss_min, "full": rss_full},
    )


# --- what a library needs at run time ------------------------------------------------------------------------


@dataclass(frozen=True)
class ElfNeeds:
    needed: list[str]
    runpath: str | None
    glibc: str | None  # highest GLIBC_x.y symbol version required
    glibcxx: str | None  # highest GLIBCXX_x.y.z required


def elf_needs(path: Path) -> ElfNeeds:
    """DT_NEEDED, RUNPATH and the newest glibc / libstdc++ symbol versions ``path`` requires (via readelf)."""
    readelf = shutil.which("readelf")
    if readelf is None:
        raise BuildError("readelf is not installed", "apt-get install binutils")
    r = subprocess.run([readelf, "-dV", "-W", str(path)], capture_output=True, text=True, timeout=120)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)
    rp = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]*)\]", r.stdout)
    # Only the version *requirements* section, not the versions the library itself defines.
    req = r.stdout.split("Version needs section", 1)[-1] if "Version needs section" in r.stdout else ""

    def newest(prefix: str) -> str | None:
        vs = {tuple(int(x) for x in v.split(".")) for v in re.findall(rf"Name: {prefix}_([0-9.]+)", req)}
        return ".".join(str(x) for x in max(vs)) if vs else None

    return ElfNeeds(needed, rp.group(1) if rp else None, newest("GLIBC"), newest("GLIBCXX"))
