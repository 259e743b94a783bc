"""Configure, compile and publish a reduced-operator minimal ORT shared library (native x86_64, cross aarch64).

A build happens in ``cache_dir()/ort-build/work/<key>/`` (kept across interruptions, so ninja resumes where it
stopped) and reaches the cache only through ``cache.publish`` after verification.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgepack.errors import BuildError, ConfigError
from edgepack.paths import cache_dir
from edgepack.runtime.minimal import sources
from edgepack.runtime.minimal.buildenv import BuildEnv
from edgepack.runtime.minimal.sources import SourceTree

Progress = Callable[[str, float, "float | None"], None]

HOST_ARCH = "x86_64"
SUPPORTED_ARCHS = ("x86_64", "aarch64")
TARGET_PLATFORM = {"x86_64": "amd64", "aarch64": "arm"}  # convert_onnx_models_to_ort --target_platform
GNU_TRIPLET = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}

# Warnings GCC 14 raises on ORT 1.21 that its -Werror would turn into errors.
_WNO = "-Wno-error=uninitialized -Wno-error=array-bounds -Wno-error=unused-variable -Wno-error=unused-but-set-variable"

# Where the build's static protobuf-lite is installed (inside the work folder, as the chroot sees it).
PROTOBUF_PREFIX = "/ort/work/protobuf"

# Part of the cache key: change any of these and a different library results.
_BASE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
    "-Dsafeint_SOURCE_DIR=/usr/include/safeint",
    "-Donnxruntime_USE_PREINSTALLED_EIGEN=ON",
    "-Deigen_SOURCE_PATH=/usr/include/eigen3",
    "-Donnxruntime_BUILD_SHARED_LIB=ON",
    "-Donnxruntime_BUILD_UNIT_TESTS=OFF",
    "-Donnxruntime_BUILD_BENCHMARKS=OFF",
    "-Donnxruntime_DISABLE_ABSEIL=ON",
    "-Donnxruntime_ENABLE_PYTHON=OFF",
    "-Donnxruntime_USE_XNNPACK=OFF",
    "-Donnxruntime_USE_DNNL=OFF",
    "-Donnxruntime_MINIMAL_BUILD=ON",
    "-Donnxruntime_REDUCED_OPS_BUILD=ON",
    "-Donnxruntime_DISABLE_RTTI=ON",
    "-Donnxruntime_DISABLE_ML_OPS=ON",
    "-Donnxruntime_USE_FULL_PROTOBUF=OFF",
    "-Donnxruntime_DISABLE_EXCEPTIONS=ON",
    "-Donnxruntime_ENABLE_CPUINFO=OFF",
    # A library shipped beside it (a user checkout's build may need one) is found wherever the bundle is unpacked.
    "-DCMAKE_BUILD_RPATH=$ORIGIN",
    f"-DCMAKE_C_FLAGS={_WNO}",
    f"-DCMAKE_CXX_FLAGS={_WNO}",
]
_RECIPE = [
    "-DCMAKE_SHARED_LINKER_FLAGS=/ort/work/glibc_compat.o",
    # -O2, as Debian built the full ORT 1.21 each library is verified against: on aarch64 at -O3 GCC vectorizes the
    # layer-norm variance loops as in-order reductions without fused multiply-add where Debian's -O2 code uses
    # fmadd, and the 1-ulp differences flip int8 rounding downstream (0.05 max abs on MiniLM). (Baseline x86-64 has
    # no FMA, so there the level cannot change results; -O2 is also smaller.)
    "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG",
    "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG",
    # protobuf-lite built here as PIC static code and linked in: --gc-sections keeps only what ORT uses, so the
    # library needs nothing beside it but libc/libm/libstdc++ (GLIBCXX <= 3.4.30, GCC 12's: Raspberry Pi OS
    # Bookworm), and the C23 strtol family comes from glibc_compat.c (glibc <= 2.36).
    f"-DProtobuf_INCLUDE_DIR={PROTOBUF_PREFIX}/include",
    f"-DProtobuf_LITE_LIBRARY_RELEASE={PROTOBUF_PREFIX}/lib/libprotobuf-lite.a",
    f"-DProtobuf_LITE_LIBRARY_DEBUG={PROTOBUF_PREFIX}/lib/libprotobuf-lite.a",
]
ARCH_FLAGS = {
    "x86_64": _RECIPE,
    "aarch64": [
        *_RECIPE,
        "-DCMAKE_TOOLCHAIN_FILE=/ort/work/toolchain-aarch64.cmake",
        "-DProtobuf_PROTOC_EXECUTABLE=/usr/bin/protoc",
        "-DONNX_CUSTOM_PROTOC_EXECUTABLE=/usr/bin/protoc",
    ],
}
# Not cmake flags, but they change what is published: part of the cache key too.
PACKAGING = ["edgepack:strip-unneeded", "edgepack:protobuf-lite=static-pic-3.21.12-O2"]
TOOLCHAIN_AARCH64 = """\
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
"""
CC = {"x86_64": "gcc", "aarch64": "aarch64-linux-gnu-gcc"}
STRIP = {"x86_64": "strip", "aarch64": "aarch64-linux-gnu-strip"}

_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")


def parse_ninja_line(line: str) -> tuple[int, int] | None:
    """``(done, total)`` from ninja's ``[N/M] ...`` status line, else None."""
    m = _NINJA_STEP.match(line)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_arch(arch: str) -> None:
    if arch not in SUPPORTED_ARCHS:
        raise ConfigError(
            f"no toolchain for {arch} here: minimal ORT builds cover {' and '.join(SUPPORTED_ARCHS)} (a trixie chroot "
            "with the arm64 cross compiler)",
            f"use a profile with device.arch aarch64 or x86_64, or build on an {arch} machine with --ort-source DIR "
            "and ORT's tools/ci_build/build.py --minimal_build",
        )


def flags_for(arch: str) -> list[str]:
    check_arch(arch)
    return _BASE_FLAGS + ARCH_FLAGS[arch]


def key_flags(arch: str) -> list[str]:
    """Everything about how the library is made that the cache key must cover (the linked-in shim included)."""
    shim = resources.files("edgepack.runtime.minimal").joinpath("glibc_compat.c").read_bytes()
    return [*flags_for(arch), *PACKAGING, f"edgepack:glibc_compat.c={hashlib.sha256(shim).hexdigest()[:16]}"]


def work_root() -> Path:
    return cache_dir() / "ort-build" / "work"


@contextmanager
def locked(key: str) -> Iterator[Path]:
    """The work folder for ``key``, held under an exclusive lock (two builds of one key would trample ninja)."""
    work = work_root() / key
    work.mkdir(parents=True, exist_ok=True)
    with (work_root() / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield work


@dataclass(frozen=True)
class Compiled:
    library: Path  # in the work folder's build dir
    extra_libs: list[Path]
    seconds: float
    steps: int  # ninja steps run this time (0 when nothing was left to do)


def compile_library(
    env: BuildEnv,
    tree: SourceTree,
    arch: str,
    config: Path,
    work: Path,
    *,
    progress: Progress | None = None,
) -> Compiled:
    """Configure and build ``libonnxruntime`` in ``work/build`` for ``arch`` with the ops in ``config``."""
    flags = flags_for(arch)
    t0 = time.monotonic()
    build = work / "build"
    build.mkdir(exist_ok=True)
    log = work / "build.log"
    shutil.copyfile(config, work / "required_operators.config")
    if arch == "aarch64":
        (work / "toolchain-aarch64.cmake").write_text(TOOLCHAIN_AARCH64)
    shim = resources.files("edgepack.runtime.minimal").joinpath("glibc_compat.c").read_text()
    (work / "glibc_compat.c").write_text(shim)
    binds = {"/ort/src": tree.root, "/ort/work": work}
    onnx = ""
    if tree.onnx_dir is not None:
        binds["/ort/onnx"] = tree.onnx_dir
        onnx = "-DFETCHCONTENT_SOURCE_DIR_ONNX=/ort/onnx"
    q = " ".join(f"'{f}'" for f in flags)
    steps = 0

    def on_line(line: str) -> None:
        nonlocal steps
        step = parse_ninja_line(line)
        if step:
            steps += 1
            done, total = step
            if progress:
                progress("compile" if done < total else "link", float(done), float(total))

    jobs = os.environ.get("EDGEPACK_BUILD_JOBS", "2")
    # Plain C11 (no _GNU_SOURCE): the calls inside bind to the pre-2.38 symbols.
    env.run(
        f"{CC[arch]} -std=c11 -O2 -fPIC -fno-builtin -c /ort/work/glibc_compat.c -o /ort/work/glibc_compat.o",
        binds={"/ort/work": work},
        log=log,
        timeout=300,
    )
    user_checkout = tree.origin.startswith("user:") and not (tree.root / ".edgepack-prepared").is_file()
    if not user_checkout:  # (ORT's own build script builds and links its pinned protobuf itself)
        build_protobuf_lite(env, arch, work, log, progress)
    if user_checkout:
        # An upstream checkout: ORT's own build script, which fetches the dependencies it pins (needs internet).
        if progress:
            progress("configure: tools/ci_build/build.py", 0, None)
        env.run(build_script_command(arch, jobs), binds=binds, log=log, on_line=on_line, timeout=7200, nice=15)
        lib = _find_library(build / "Release", tree.version)
    else:
        lib = _cmake_build(env, tree, arch, work, binds, onnx, q, flags, log, jobs, on_line, progress)
    if progress:
        progress("strip", 0, 1)
    # The symbol table is half the file and nothing at run time reads it (exports live in .dynsym).
    stripped = work / f"{lib.name}.stripped"
    rel = lib.relative_to(work)
    env.run(
        f"{STRIP[arch]} --strip-unneeded -o /ort/work/{stripped.name} /ort/work/{rel}",
        binds={"/ort/work": work},
        log=log,
        timeout=300,
    )
    return Compiled(stripped, [], time.monotonic() - t0, steps)


def build_protobuf_lite(env: BuildEnv, arch: str, work: Path, log: Path, progress: Progress | None) -> Path:
    """``work/protobuf/lib/libprotobuf-lite.a``: protobuf-lite 3.21.12 as position-independent static code.

    Built from Debian's pinned orig tarball with the same compiler and -O2 as the library, once per work folder
    (ninja resumes an interrupted build; the archive appears under its final name only when complete).
    """
    prefix = work / "protobuf"
    archive = prefix / "lib" / "libprotobuf-lite.a"
    if archive.is_file():
        return archive
    tarball = sources.fetch_pinned(progress, pins=(sources.PROTOBUF_ORIG,))[sources.PROTOBUF_ORIG.name]
    src = prefix / "src"
    if not (src / "CMakeLists.txt").is_file():
        if progress:
            progress("protobuf-lite: extract", 0, None)
        shutil.rmtree(src, ignore_errors=True)
        staging = prefix / f"src.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        sources.extract_single_dir(tarball, staging)
        staging.rename(src)
    # The headers the library compiles against must be this tree's (the archive's own version and patches).
    include = prefix / "include"
    if not include.exists():
        include.symlink_to("src/src")
    if progress:
        progress("protobuf-lite: compile", 0, None)
    toolchain = "-DCMAKE_TOOLCHAIN_FILE=/ort/work/toolchain-aarch64.cmake" if arch == "aarch64" else ""
    env.run(
        f"cmake -S {PROTOBUF_PREFIX}/src -B {PROTOBUF_PREFIX}/build -G Ninja {toolchain} -DCMAKE_BUILD_TYPE=Release "
        "'-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG' '-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG' "
        "'-DCMAKE_CXX_FLAGS=-ffunction-sections -fdata-sections' -DCMAKE_POSITION_INDEPENDENT_CODE=ON "
        "-Dprotobuf_BUILD_TESTS=OFF -Dprotobuf_BUILD_PROTOC_BINARIES=OFF -Dprotobuf_BUILD_LIBPROTOC=OFF "
        "-Dprotobuf_BUILD_SHARED_LIBS=OFF -Dprotobuf_WITH_ZLIB=OFF && "
        f"ninja -C {PROTOBUF_PREFIX}/build -j{os.environ.get('EDGEPACK_BUILD_JOBS', '2')} libprotobuf-lite && "
        f"mkdir -p {PROTOBUF_PREFIX}/lib && cp {PROTOBUF_PREFIX}/build/libprotobuf-lite.a {PROTOBUF_PREFIX}/lib/.a && "
        f"mv {PROTOBUF_PREFIX}/lib/.a {PROTOBUF_PREFIX}/lib/libprotobuf-lite.a",
        binds={"/ort/work": work},
        log=log,
        timeout=1800,
    )
    return archive


def build_script_command(arch: str, jobs: str) -> str:
    """ORT's own ``tools/ci_build/build.py`` invocation for a reduced-operator minimal shared library."""
    defines = [
        "onnxruntime_BUILD_UNIT_TESTS=OFF",
        "onnxruntime_ENABLE_CPUINFO=OFF",
        "CMAKE_SHARED_LINKER_FLAGS=/ort/work/glibc_compat.o -static-libstdc++ -static-libgcc",
        "CMAKE_BUILD_RPATH=$ORIGIN",
    ]
    if arch == "aarch64":
        defines.append("CMAKE_TOOLCHAIN_FILE=/ort/work/toolchain-aarch64.cmake")
    return (
        "cd /ort/src && python3 tools/ci_build/build.py --build_dir /ort/work/build --config Release --update --build "
        "--minimal_build --include_ops_by_config /ort/work/required_operators.config "
        "--enable_reduced_operator_type_support --disable_exceptions --disable_rtti --disable_ml_ops "
        f"--build_shared_lib --skip_tests --skip_submodule_sync --parallel {jobs} --target onnxruntime "
        "--cmake_extra_defines " + " ".join(f"'{d}'" for d in defines)
    )


def _cmake_build(
    env: BuildEnv,
    tree: SourceTree,
    arch: str,
    work: Path,
    binds: dict[str, Path],
    onnx: str,
    q: str,
    flags: list[str],
    log: Path,
    jobs: str,
    on_line: Callable[[str], None],
    progress: Progress | None,
) -> Path:
    """The Debian route: our own cmake flags against system libraries, offline."""
    build = work / "build"
    reduced = build / ".edgepack-reduced"
    if not reduced.is_file():
        # reduce_op_kernels rewrites the kernel registration files in the build dir; done once per work folder
        # so a resumed build does not recompile them.
        if progress:
            progress("configure: reduce operator kernels", 0, None)
        env.run(
            "cd /ort/src && python3 tools/ci_build/reduce_op_kernels.py --cmake_build_dir /ort/work/build "
            "--enable_type_reduction /ort/work/required_operators.config",
            binds=binds,
            log=log,
            timeout=600,
        )
        reduced.write_text("done\n")
    flags_file = build / ".edgepack-flags"
    if not (build / "build.ninja").is_file() or not flags_file.is_file() or flags_file.read_text() != "\n".join(flags):
        if progress:
            progress("configure: cmake", 0, None)
        env.run(f"cmake -S /ort/src/cmake -B /ort/work/build -G Ninja {onnx} {q}", binds=binds, log=log, timeout=1200)
        (build / ".edgepack-flags").write_text("\n".join(flags))
    env.run(f"ninja -C /ort/work/build -j{jobs} onnxruntime", binds=binds, log=log, on_line=on_line, timeout=7200)
    return _find_library(build, tree.version)


def _find_library(build: Path, version: str) -> Path:
    cands = [p for p in build.glob("libonnxruntime.so*") if p.is_file() and not p.is_symlink()]
    if not cands:
        raise BuildError(f"the build in {build} made no libonnxruntime.so", "see build.log there and run again")
    exact = [p for p in cands if p.name == f"libonnxruntime.so.{version}"]
    return exact[0] if exact else max(cands, key=lambda p: len(p.name))
