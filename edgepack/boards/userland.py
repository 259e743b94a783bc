"""The boards' arm64 Debian userland: built once with debootstrap, cached as one tar.zst, unpacked per use.

Other parts of edgepack (the C# host tests, deploy tests) reuse :func:`tarball_path` for their own chroots, so
the path and the contents are a contract: Debian bookworm arm64 with python3, openssh-server, ca-certificates
and mono-runtime (plus the common class libraries a C# 7 console program loads), no SSH host keys, no apt lists.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgepack.errors import BoardError
from edgepack.paths import cache_dir

SUITE = "bookworm"
ARCH = "arm64"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "python3",
    "openssh-server",
    "ca-certificates",
    "mono-runtime",
    "libmono-system4.0-cil",
    "libmono-system-core4.0-cil",
    "libmono-system-numerics4.0-cil",
    "libmono-system-runtime-serialization4.0-cil",
    "libmono-system-xml4.0-cil",
    "procps",
    "iproute2",
)
# Dropped after the build: fetched package lists and caches (NOTES: apt lists alone are ~79 MB), and docs.
LEAN_DROP = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "var/log",
    "var/cache/debconf/templates.dat-old",
)

Progress = Callable[[str], None]


def tarball_path() -> Path:
    return cache_dir() / "boards" / f"userland-{SUITE}-{ARCH}.tar.zst"


def _noop(_: str) -> None:
    pass


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock: boards and helpers that start at once build or unpack the userland only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, *, timeout: float) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BoardError(
            f"{what} took longer than {timeout:.0f} s", "check the network and CPU load, then retry"
        ) from e
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-5:])
        raise BoardError(f"{what} failed (exit {r.returncode}): {tail}", "fix the cause above and run `board up` again")


def ensure_userland(progress: Progress = _noop, *, timeout: float = 3600) -> Path:
    """The cached userland tarball, built with debootstrap (under qemu) on first use."""
    out = tarball_path()
    if out.is_file():
        return out
    with _locked(out.with_suffix(".lock")):
        if out.is_file():  # built by whoever held the lock before us
            return out
        build_userland(out, progress, timeout=timeout)
    return out


def build_userland(out: Path, progress: Progress = _noop, *, timeout: float = 3600) -> None:
    from edgepack.boards.binfmt import ensure_host_binfmt

    ensure_host_binfmt()
    for tool in ("debootstrap", "zstd", "unshare"):
        if not shutil.which(tool):
            raise BoardError(f"{tool} is not installed", "run: make sysdeps (scripts/sysdeps.sh)")
    mirror = os.environ.get("EDGEPACK_DEBIAN_MIRROR", DEFAULT_MIRROR)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".userland-build-", dir=out.parent))
    try:
        root = work / "rootfs"
        t0 = time.monotonic()
        progress(f"building the arm64 userland with debootstrap from {mirror} (once; several minutes)")
        # A private mount namespace: whatever debootstrap mounts (proc, sys) vanishes with it, even on a crash.
        _run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "nice",
                "-n",
                "10",
                "debootstrap",
                f"--arch={ARCH}",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                mirror,
            ],
            "debootstrap",
            timeout=timeout,
        )
        progress(f"debootstrap done in {time.monotonic() - t0:.0f} s; packing")
        _make_lean(root)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        _run(
            [
                "sh",
                "-c",
                'tar --numeric-owner -C "$1" -cf - . | nice -n 10 zstd -q -T0 -3 -o "$2"',
                "sh",
                str(root),
                str(tmp),
            ],
            "packing the userland",
            timeout=timeout,
        )
        tmp.replace(out)
        progress(f"userland cached at {out} ({out.stat().st_size / 1e6:.0f} MB)")
    finally:
        _rmtree(work)


def _make_lean(root: Path) -> None:
    for rel in LEAN_DROP:
        p = root / rel
        if p.is_dir():
            shutil.rmtree(p)
            p.mkdir(mode=0o755)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    # Every board gets fresh host keys; none may ship in the cache.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "root/edgepack").mkdir(parents=True, exist_ok=True)
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (root / "etc/edgepack-userland").write_text(
        f"suite={SUITE} arch={ARCH} packages={' '.join(PACKAGES)} built={built}\n"
    )


def unpack(tarball: Path, dest: Path, *, timeout: float = 600) -> None:
    """Unpack the userland into ``dest`` (which must not exist yet): temp name, then rename."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    _rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _run(
            ["sh", "-c", 'zstd -q -d -c "$1" | tar --numeric-owner -xpf - -C "$2"', "sh", str(tarball), str(tmp)],
            "unpacking the userland",
            timeout=timeout,
        )
        tmp.replace(dest)
    except BaseException:
        _rmtree(tmp)
        raise


def _rmtree(p: Path) -> None:
    if p.exists():
        shutil.rmtree(p, ignore_errors=True)
