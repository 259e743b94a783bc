"""The build environment: a Debian trixie chroot with ORT's build dependencies, made once and cached.

The Debian 12 host cannot build ORT 1.21 (cmake 3.25 < 3.28, flatbuffers 2.0.8 ≠ 23.5); trixie can, and it also
carries the arm64 cross toolchain and libraries and ORT 1.21's Python package (for the ``.ort`` conversion and as
the full-ORT reference of the same version). Like a board rootfs it is built under a ``.partial`` name and renamed
into place only when ``provision.sh`` finished, so an interrupted creation is redone, never half-used.

Commands run through ``unshare --mount``: /proc, /dev and the bind mounts live in a private mount namespace and
vanish with the process, so an interrupted build leaves no mounts behind.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from edgepack.errors import BuildError
from edgepack.paths import cache_dir

Progress = Callable[[str, float, "float | None"], None]
LineSink = Callable[[str], None]

ENV_NAME = "trixie-v1"
STAMP = ".edgepack-buildenv"
MIRROR = os.environ.get("EDGEPACK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PATH_IN_CHROOT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def env_root() -> Path:
    return cache_dir() / "ort-build" / "env" / ENV_NAME


@dataclass
class BuildEnv:
    """A ready chroot; ``run`` executes a shell command inside it with host folders bound in."""

    root: Path
    created_seconds: float = 0.0  # time spent creating it in this process (0 when it came from the cache)
    binds: dict[str, Path] = field(default_factory=dict)

    def run(
        self,
        script: str,
        *,
        binds: Mapping[str, Path] | None = None,
        log: Path | None = None,
        on_line: LineSink | None = None,
        timeout: float = 3600,
        nice: int = 15,
    ) -> str:
        """Run ``script`` (sh) inside the chroot; returns its output. ``binds`` maps chroot paths to host paths."""
        mounts = ['mount -t proc proc "$R/proc"', 'mount --rbind /dev "$R/dev"']
        for inside, host in {**self.binds, **(binds or {})}.items():
            target = f"$R{inside}"
            kind = "-d" if host.is_dir() else "-f"
            make = f'mkdir -p "{target}"' if kind == "-d" else f'mkdir -p "$(dirname {target})" && touch "{target}"'
            mounts.append(f'{make} && mount --bind {shlex.quote(str(host))} "{target}"')
        # niceness is absolute: only add what the caller's own niceness lacks (nice adds up to 19 otherwise).
        extra = max(0, nice - os.nice(0))
        inner = (
            f"env -i PATH={PATH_IN_CHROOT} HOME=/root LC_ALL=C.UTF-8 TERM=dumb "
            f"nice -n {extra} sh -ec {shlex.quote(script)}"
        )
        outer = " && ".join(mounts) + f' && exec chroot "$R" {inner}'
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-ec", outer]
        return run_streaming(cmd, env={"R": str(self.root)}, log=log, on_line=on_line, timeout=timeout)


def run_streaming(
    cmd: list[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    on_line: LineSink | None = None,
    timeout: float = 3600,
) -> str:
    """Run a command, feeding each output line to ``on_line`` and a log file; raise BuildError on failure."""
    lines: list[str] = []
    logf = log.open("a") if log else None
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so an interruption reaches ninja and the compilers
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.append(line)
                if logf:
                    logf.write(line)
                if on_line:
                    on_line(line.rstrip("\n"))
                if time.monotonic() > deadline:
                    raise BuildError(f"'{shlex.join(cmd)[:120]}' ran past {timeout:.0f} s", "see the log and retry")
            rc = proc.wait()
        except BaseException:
            # Interrupted (Ctrl-C) or timed out: stop the whole group. SIGTERM first, so ninja deletes the outputs
            # it was writing (a truncated .o must not look up to date when the build resumes); then SIGKILL.
            _stop_group(proc)
            raise
    finally:
        if logf:
            logf.close()
    out = "".join(lines)
    if rc != 0:
        tail = " | ".join(ln.strip() for ln in lines[-6:] if ln.strip())[-600:]
        where = f" (log: {log})" if log else ""
        raise BuildError(f"command failed with exit {rc}: {tail}{where}", "fix the cause shown and run again")
    return out


def _stop_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def ensure(progress: Progress | None = None, mirror: str = MIRROR) -> BuildEnv:
    """The cached build chroot, created on first use (debootstrap + provision.sh, a few minutes)."""
    root = env_root()
    if (root / STAMP).is_file():
        return BuildEnv(root)
    if os.geteuid() != 0:
        raise BuildError(
            "creating the trixie build environment needs root (debootstrap, chroot, mount)",
            "run 'edgepack runtime build' once as root, or build from your own toolchain with --ort-source",
        )
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            raise BuildError(f"'{tool}' is not installed", f"install it (apt-get install {tool}) and run again")
    t0 = time.monotonic()
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log = root.with_name(root.name + ".log")
    log.write_text("")
    if progress:
        progress("build environment: debootstrap trixie", 0, 3)
    run_streaming(
        ["nice", "-n", str(max(0, 15 - os.nice(0))), "debootstrap", "--variant=buildd", "trixie", str(partial), mirror],
        log=log,
        timeout=1800,
    )
    script = resources.files("edgepack.runtime.minimal").joinpath("provision.sh").read_text()
    (partial / "tmp" / "provision.sh").write_text(script)
    steps = {"build-dep": 1, "python": 2, "cross": 2}

    def on_line(line: str) -> None:
        if progress and line.startswith("edgepack-step: ") and line[15:] in steps:
            progress(f"build environment: {line[15:]}", steps[line[15:]], 3)

    BuildEnv(partial).run(f"sh /tmp/provision.sh {shlex.quote(mirror)}", log=log, on_line=on_line, timeout=3600)
    seconds = time.monotonic() - t0
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (partial / STAMP).write_text(
        json.dumps({"name": ENV_NAME, "created": created, "seconds": round(seconds, 1)}) + "\n"
    )
    partial.rename(root)
    if progress:
        progress("build environment: ready", 3, 3)
    return BuildEnv(root, created_seconds=seconds)


def creation_seconds() -> float | None:
    """How long creating the cached environment took (recorded in its stamp), if known."""
    try:
        doc = json.loads((env_root() / STAMP).read_text())
        return float(doc["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
