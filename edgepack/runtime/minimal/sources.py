"""ONNX Runtime sources for the minimal build.

Two routes:

* **Debian (offline-capable, the default).** Three pinned files from Debian's archive, fetched with a private apt
  configuration (``apt-get update`` verifies the signed ``InRelease``; the ``Sources`` index it checks gives each
  file's sha256). Every download is checked against that index *and* against the sha256 pinned here, so a changed
  archive cannot slip a different tarball in. A file the mirror no longer has is a ``SourceError`` naming it.
* **The user's own checkout** (``--ort-source DIR``): any ORT source tree; its version comes from its
  ``VERSION_NUMBER`` file.

The prepared tree (extracted, Debian's system-library patches applied, the AVX-512 fix in) lives under
``cache_dir()/ort-build/src/`` and is published by rename, so an interrupted preparation is simply redone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import BuildError, SourceError
from edgepack.hashing import sha256_file
from edgepack.paths import cache_dir

Progress = Callable[[str, float, "float | None"], None]

ORT_VERSION = "1.21.0"
MIRROR = os.environ.get("EDGEPACK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Bump when the preparation below changes, so old prepared trees are not reused.
PREP_REVISION = 1


@dataclass(frozen=True)
class PinnedFile:
    """One file of a Debian source package, pinned by the sha256 its signed Sources index gave."""

    name: str
    package: str
    version: str  # Debian version of the source package whose index lists the file
    suite: str
    sha256: str
    size: int

    @property
    def pool_path(self) -> str:
        return f"pool/main/{self.package[0]}/{self.package}/{self.name}"


ORT_ORIG = PinnedFile(
    "onnxruntime_1.21.0+dfsg.orig.tar.xz",
    "onnxruntime",
    "1.21.0+dfsg-1",
    "trixie",
    "32df1f82bd6b07b18372c0f387133214905cbde7a586b3ad83f0ed0075f80273",
    37970624,
)
# The 1.21 packaging (.debian.tar.xz) is gone from the mirror; 1.23.2's patches carry the same system-library
# changes and most of them apply to 1.21 (see ORT-MINIMAL.md).
ORT_DEBIAN = PinnedFile(
    "onnxruntime_1.23.2+dfsg-6.1.debian.tar.xz",
    "onnxruntime",
    "1.23.2+dfsg-6.1",
    "sid",
    "140fe4766a37f1a57451bef8f21174ae43ff206d0dc80e467f52e6e9694c37f9",
    24396,
)
# The dfsg tarball's cmake/external/onnx is empty; the minimal build needs onnx's proto sources.
ONNX_ORIG = PinnedFile(
    "onnx_1.17.0.orig.tar.gz",
    "onnx",
    "1.17.0-3",
    "trixie",
    "8d5e983c36037003615e5a02d36b18fc286541bf52de1a78f6cf9f32005a820e",
    12475304,
)
# protobuf-lite, built from source as position-independent static code and linked into the library (only
# the few hundred bytes ORT uses survive --gc-sections); Debian's libprotobuf-lite.a is not PIC.
PROTOBUF_ORIG = PinnedFile(
    "protobuf_3.21.12.orig.tar.gz",
    "protobuf",
    "3.21.12-11+deb13u1",
    "trixie",
    "930c2c3b5ecc6c9c12615cf5ad93f1cd6e12d0aba862b572e076259970ac3a53",
    5141502,
)
PINNED = (ORT_ORIG, ORT_DEBIAN, ONNX_ORIG, PROTOBUF_ORIG)


@dataclass(frozen=True)
class SourceTree:
    """A prepared ORT source tree ready for cmake."""

    root: Path
    version: str
    origin: str  # "debian" or "user:<path>"
    onnx_dir: Path | None  # FETCHCONTENT_SOURCE_DIR_ONNX, when the tree does not fetch onnx itself

    @property
    def c_api_header(self) -> Path:
        return self.root / "include" / "onnxruntime" / "core" / "session" / "onnxruntime_c_api.h"


def sources_dir() -> Path:
    return cache_dir() / "ort-build" / "sources"


# --- Debian route -------------------------------------------------------------------------------------------


def _apt_options(base: Path) -> list[str]:
    return [
        "-o",
        f"Dir::Etc::SourceList={base / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={base / 'lists'}",
        "-o",
        f"Dir::Cache={base / 'cache'}",
        "-o",
        "APT::Get::List-Cleanup=0",
        "-o",
        "Debug::NoLocking=1",
    ]


def signed_index_hashes(mirror: str = MIRROR) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(file name, debian version): (sha256, Directory)}`` from the signed Sources indexes of trixie and sid.

    ``apt-get update`` refuses an index whose ``InRelease`` signature does not check against Debian's keyring, so
    every hash returned here is one the archive signed.
    """
    base = cache_dir() / "ort-build" / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    suites = sorted({p.suite for p in PINNED})
    lines = [f"deb-src [signed-by={KEYRING}] {mirror} {suite} main" for suite in suites]
    (base / "sources.list").write_text("\n".join(lines) + "\n")
    opts = _apt_options(base)
    upd = subprocess.run(["apt-get", "-q", *opts, "update"], capture_output=True, text=True, timeout=600)
    if upd.returncode != 0 or "W: GPG error" in upd.stderr or "NO_PUBKEY" in upd.stderr:
        tail = (upd.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SourceError(
            f"cannot read Debian's signed source index from {mirror} ({tail})",
            "check the network or set EDGEPACK_DEBIAN_MIRROR, or build from your own checkout with --ort-source DIR",
        )
    packages = sorted({p.package for p in PINNED})
    show = subprocess.run(["apt-cache", *opts, "showsrc", *packages], capture_output=True, text=True, timeout=300)
    return parse_showsrc(show.stdout)


def parse_showsrc(text: str) -> dict[tuple[str, str], tuple[str, str]]:
    """Parse ``apt-cache showsrc`` stanzas into ``{(file, version): (sha256, directory)}``."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for stanza in re.split(r"\n\s*\n", text):
        version = re.search(r"^Version: (\S+)", stanza, re.M)
        directory = re.search(r"^Directory: (\S+)", stanza, re.M)
        block = re.search(r"^Checksums-Sha256:\n((?: .*\n?)+)", stanza, re.M)
        if not (version and directory and block):
            continue
        for line in block.group(1).splitlines():
            parts = line.split()
            if len(parts) == 3:
                out[(parts[2], version.group(1))] = (parts[0], directory.group(1))
    return out


def fetch_pinned(
    progress: Progress | None = None, mirror: str = MIRROR, pins: tuple[PinnedFile, ...] | None = None
) -> dict[str, Path]:
    """Download (once) and verify the pinned Debian files (all of them, or ``pins``); ``{file name: path}``."""
    pins = PINNED if pins is None else pins
    dest_dir = sources_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    have = {p.name: dest_dir / p.name for p in pins}
    missing = [p for p in pins if not (have[p.name].is_file() and have[p.name].stat().st_size == p.size)]
    if not missing:
        for p in pins:
            if sha256_file(have[p.name]) != p.sha256:
                raise SourceError(
                    f"cached source {have[p.name]} does not match its pinned sha256",
                    f"delete {have[p.name]} and run again",
                )
        return have
    index = signed_index_hashes(mirror)
    for i, p in enumerate(missing):
        if progress:
            progress(f"download {p.name}", i, len(missing))
        listed = index.get((p.name, p.version))
        if listed is None:
            raise SourceError(
                f"Debian's signed index no longer lists {p.name} ({p.package} {p.version}, {p.suite})",
                "build from your own ORT checkout with --ort-source DIR, or put the file (sha256 "
                f"{p.sha256[:16]}…) into {dest_dir}",
            )
        sha, directory = listed
        if sha != p.sha256:
            raise SourceError(
                f"Debian's signed index gives {p.name} sha256 {sha[:16]}…, not the pinned {p.sha256[:16]}…",
                "the archive changed this file; use --ort-source DIR with a checkout you trust",
            )
        _download(f"{mirror}/{directory}/{p.name}", have[p.name], p)
    return have


def _download(url: str, dest: Path, pin: PinnedFile) -> None:
    part = dest.with_name(dest.name + f".part-{os.getpid()}")
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as r, part.open("wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except urllib.error.HTTPError as e:
            raise SourceError(
                f"{pin.name} is gone from the Debian mirror ({url}: HTTP {e.code})",
                f"build from your own ORT checkout with --ort-source DIR, or put the file into {dest.parent}",
            ) from e
        except (urllib.error.URLError, OSError) as e:
            raise SourceError(f"cannot download {url} ({e})", "check the network, or use --ort-source DIR") from e
        got = sha256_file(part)
        if got != pin.sha256:
            raise SourceError(
                f"{pin.name} from {url} has sha256 {got[:16]}…, not the signed {pin.sha256[:16]}…",
                "retry later (a mirror may be mid-sync) or use --ort-source DIR",
            )
        part.rename(dest)
    finally:
        part.unlink(missing_ok=True)


def prepared_debian_tree(progress: Progress | None = None) -> SourceTree:
    """The Debian ORT 1.21 tree, extracted and patched once into the cache."""
    root = cache_dir() / "ort-build" / "src" / f"onnxruntime-{ORT_VERSION}-deb{PREP_REVISION}"
    tree = SourceTree(root, ORT_VERSION, "debian", root / "_onnx")
    if (root / ".edgepack-prepared").is_file():
        return tree
    files = fetch_pinned(progress)
    staging = root.with_name(root.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if progress:
            progress("extract sources", 0, 3)
        extract_single_dir(files[ORT_ORIG.name], staging)
        with tempfile.TemporaryDirectory(prefix="edgepack-debian-") as tmp:
            with tarfile.open(files[ORT_DEBIAN.name]) as t:
                t.extractall(tmp, filter="data")
            _apply_debian_patches(staging, Path(tmp) / "debian" / "patches")
        if progress:
            progress("extract sources", 1, 3)
        onnx_dir = staging / "_onnx"
        onnx_dir.mkdir()
        extract_single_dir(files[ONNX_ORIG.name], onnx_dir)
        _patch(onnx_dir, staging / "cmake" / "patches" / "onnx" / "onnx.patch", required=True)
        apply_local_fixes(staging)
        if progress:
            progress("extract sources", 2, 3)
        (staging / ".edgepack-prepared").write_text(f"{ORT_VERSION} debian rev {PREP_REVISION}\n")
        if root.exists():  # a tree without the marker is a leftover of an interrupted run
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tree


def extract_single_dir(archive: Path, dest: Path) -> None:
    """Extract an archive whose members sit under one top folder, dropping that folder."""
    subprocess.run(["tar", "-xf", str(archive), "-C", str(dest), "--strip-components=1"], check=True, timeout=900)


def _patch(tree: Path, patch_file: Path, *, required: bool) -> bool:
    r = subprocess.run(
        ["patch", "-p1", "-F3", "-N", "-s", "-r", "-", "-d", str(tree), "-i", str(patch_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode != 0 and required:
        raise BuildError(
            f"patch {patch_file.name} does not apply to {tree} ({r.stdout.strip()[-200:]})",
            "delete the folder and run again",
        )
    return r.returncode == 0


def _apply_debian_patches(tree: Path, patches: Path) -> None:
    # Hunks that do not apply are for parts this build does not use (ORT-MINIMAL.md lists them); patch -N -r -
    # keeps going past them instead of writing .rej files.
    for name in (patches / "series").read_text().split():
        if name.startswith("#"):
            continue
        _patch(tree, patches / name, required=False)


def apply_local_fixes(tree: Path) -> None:
    """The two source fixes this build needs on 1.21 (idempotent)."""
    # 1. With onnxruntime_DISABLE_ABSEIL=ON the brace-init below no longer deduces its type.
    ra = tree / "onnxruntime" / "core" / "framework" / "resource_accountant.cc"
    if ra.is_file():
        text = ra.read_text()
        fixed = re.sub(r"(insert_or_assign\([^,]+,\s*)\{", r"\1NodeAllocationStats{", text)
        if fixed != text:
            ra.write_text(fixed)
    # 2. The AVX-512 trap: ORT_MINIMAL_BUILD leaves the AVX-512 MLAS kernels out, so on an AVX-512 machine the
    #    minimal library computes with different kernels than full ORT (max abs diff 0.02 on MiniLM int8).
    #    Keep the kernels in, so the minimal build gives what full ORT gives.
    enable_avx512_in_minimal_build(tree)


def enable_avx512_in_minimal_build(tree: Path) -> None:
    for rel in ("onnxruntime/core/mlas/lib/platform.cpp", "onnxruntime/core/mlas/lib/convsym.cpp"):
        path = tree / rel
        if not path.is_file():
            continue
        text = path.read_text()
        fixed = _drop_minimal_guards(text)
        if fixed != text:
            path.write_text(fixed)


def _drop_minimal_guards(text: str) -> str:
    """Turn ``#if !defined(ORT_MINIMAL_BUILD)`` / ``#ifndef ORT_MINIMAL_BUILD`` guards in MLAS into ``#if 1``."""
    text = re.sub(r"#if\s+!defined\(ORT_MINIMAL_BUILD\)", "#if 1 /* edgepack: AVX-512 kept in minimal builds */", text)
    return re.sub(r"#ifndef\s+ORT_MINIMAL_BUILD", "#if 1 /* edgepack: AVX-512 kept in minimal builds */", text)


# --- user checkout route ------------------------------------------------------------------------------------


def user_tree(path: Path) -> SourceTree:
    """An ORT checkout the user gives with ``--ort-source``."""
    path = path.expanduser().resolve()
    version_file = path / "VERSION_NUMBER"
    if not (path / "cmake" / "CMakeLists.txt").is_file() or not version_file.is_file():
        raise SourceError(
            f"{path} is not an ONNX Runtime source tree (no cmake/CMakeLists.txt or VERSION_NUMBER)",
            "pass the root of an onnxruntime checkout or release tarball to --ort-source",
        )
    version = version_file.read_text().strip()
    onnx = path / "cmake" / "external" / "onnx"
    onnx_dir: Path | None = onnx if (onnx / "onnx" / "onnx.proto").is_file() else None
    if onnx_dir is None and (path / "_onnx" / "onnx" / "onnx.proto").is_file():
        onnx_dir = path / "_onnx"
    return SourceTree(path, version, f"user:{path}", onnx_dir)
