"""The ONNX Runtime shared library for a target arch, taken from the matching PyPI wheel.

``pip download --only-binary=:all: --platform manylinux_2_28_<arch>`` fetches the wheel; the library is
extracted once into the cache and checked to be an ELF for the right machine before it is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgepack.errors import ConfigError, SourceError
from edgepack.paths import cache_dir

# ELF e_machine values (elf.h): what each arch's library must say.
ELF_MACHINE = {"x86_64": 62, "aarch64": 183, "armv7l": 40}
# The manylinux tag PyPI's onnxruntime wheels carry, and so the oldest glibc they run on.
WHEEL_PLATFORM = {"x86_64": ("manylinux_2_27_x86_64", "2.27"), "aarch64": ("manylinux_2_28_aarch64", "2.28")}


def elf_machine(path: Path) -> int | None:
    """The e_machine of an ELF file, or None when it is not an ELF file."""
    with path.open("rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def check_elf(path: Path, arch: str) -> None:
    want = ELF_MACHINE[arch]
    got = elf_machine(path)
    if got != want:
        names = {v: k for k, v in ELF_MACHINE.items()}
        seen = "not an ELF file" if got is None else f"an ELF for {names.get(got, f'machine {got}')}"
        raise SourceError(f"{path} is {seen}, not {arch}", "delete it from the cache and package again")


def library_name(version: str) -> str:
    return f"libonnxruntime.so.{version}"


def fetch_library(version: str, arch: str) -> Path:
    """Path of ``libonnxruntime.so.<version>`` for ``arch`` in the cache, downloading the wheel on first use."""
    if arch not in WHEEL_PLATFORM:
        raise ConfigError(
            f"PyPI has no onnxruntime wheel for {arch}", "use runtime.source: minimal-build or path in the profile"
        )
    dest = cache_dir() / "runtime" / "wheel" / f"onnxruntime-{version}-{arch}" / library_name(version)
    if dest.is_file():
        check_elf(dest, arch)
        return dest
    if arch == os.uname().machine and _installed_version() == version:
        # The venv's own onnxruntime is this exact wheel: no download needed.
        import onnxruntime

        local = Path(onnxruntime.__file__).parent / "capi" / library_name(version)
        if local.is_file():
            return _publish(local, dest, arch)
    platform, _ = WHEEL_PLATFORM[arch]
    with tempfile.TemporaryDirectory(prefix="edgepack-wheel-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            platform,
            "--python-version",
            "3.11",
            "-d",
            tmp,
            f"onnxruntime=={version}",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("onnxruntime-*.whl"))
        if r.returncode != 0 or not wheels:
            last = (r.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise SourceError(
                f"cannot download onnxruntime {version} for {arch} ({last})",
                "check pip's index access, or use --runtime none",
            )
        with zipfile.ZipFile(wheels[0]) as z:
            member = f"onnxruntime/capi/{library_name(version)}"
            try:
                z.extract(member, tmp)
            except KeyError as e:
                raise SourceError(f"{wheels[0].name} has no {member}", "use --runtime none") from e
        return _publish(Path(tmp) / member, dest, arch)


def _installed_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return None


def _publish(src: Path, dest: Path, arch: str) -> Path:
    check_elf(src, arch)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest
