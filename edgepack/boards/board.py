"""Virtual arm64 boards: ``up``, ``down``, ``list``.

A board is a process tree on this machine, started as root::

    setsid → unshare --pid --fork --kill-child --uts --mount (stage1.sh: pid 1 of the board, private mounts)
               overlay rootfs (cached userland + the board's own upper dir), /proc, /dev, the storage disk
             → unshare --user --mount                        (stage2.sh: uids 0..65535 map to themselves)
               a private binfmt_misc whose aarch64 handler runs qemu with this board's -cpu
             → chroot rootfs /usr/sbin/sshd -D               (127.0.0.1:PORT, or the board's veth address)

``/proc/cpuinfo`` is replaced by one generated for the emulated CPU (qemu-user would show the host's).
Every mount lives in the board's own mount namespace, so the host's mount table never sees them and they go
away with the processes; killing the launcher (``--kill-child``) takes the whole pid namespace down. ``/sys``
is never mounted (ONNX Runtime's cpuinfo crashes under qemu when it is there). State is kept in
``state_dir()/boards/NAME`` and the board registers itself as the target ``state_dir()/targets/NAME.yaml``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from edgepack.boards import binfmt, cpuinfo, netns, sshd, userland
from edgepack.errors import BoardError, ConfigError, EdgepackError
from edgepack.paths import cache_dir, state_dir

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,29}")
CPUS = ("cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "max")
PROFILE_FOR_CPU = {
    "cortex-a53": "rpi-3b",
    "cortex-a57": "jetson-nano",
    "cortex-a72": "rpi-4b",
    "cortex-a76": "rpi-5",
    "neoverse-n1": "generic-aarch64",
    "max": "generic-aarch64",
}
# Profile CPUs qemu 7.2 does not model, mapped to the closest one it does (same ISA level and features).
QEMU_CPU_FOR = {"cortex-a78ae": "cortex-a76", "cortex-a55": "cortex-a76"}
INSTALL_ROOT = "/root/edgepack"
USER = "root"
# binfmt_misc instances per user namespace arrived in Linux 6.7; the board's CPU pinning needs them.
MIN_KERNEL = (6, 7)

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


class BoardInfo(BaseModel):
    """``board.json``: the target fields (DESIGN) plus what ``down`` needs to find the board's processes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    host: str
    port: int
    user: str = USER
    identity: str
    known_hosts: str
    profile: str
    cpu: str
    root: str = INSTALL_ROOT
    storage_mb: int | None = None
    netns: str | None = None
    pid: int
    pid_start: int
    pid_ns: str | None = None
    created: str

    def endpoint(self) -> sshd.Endpoint:
        return sshd.Endpoint(self.host, self.port, self.user, Path(self.identity), Path(self.known_hosts))

    def listing(self) -> dict[str, object]:
        """The ``board list --json`` entry."""
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity": self.identity,
            "known_hosts": self.known_hosts,
            "profile": self.profile,
            "cpu": self.cpu,
            "root": self.root,
            "storage_mb": self.storage_mb,
            "netns": self.netns,
            "state": "running" if is_running(self) else "stopped",
        }


@dataclass
class UpResult:
    board: BoardInfo
    already_running: bool = False
    stale_cleaned: bool = False
    userland_built: bool = False
    userland_tar_bytes: int = 0
    seconds: float = 0.0


@dataclass
class DownResult:
    name: str
    was_running: bool
    killed: list[int] = field(default_factory=list)
    unmounted: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def boards_dir() -> Path:
    return state_dir() / "boards"


def board_dir(name: str) -> Path:
    return boards_dir() / name


def target_file(name: str) -> Path:
    return state_dir() / "targets" / f"{name}.yaml"


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name) or name == "local":
        raise ConfigError(
            f"bad board name {name!r}",
            "use 1-30 lowercase letters, digits and dashes (not 'local', the built-in target)",
        )


def resolve_cpu_profile(cpu: str | None, profile: str | None) -> tuple[str, str]:
    """``--cpu`` and ``--profile`` fill each other in: a Pi 4 profile means a Cortex-A72 board and back."""
    if profile is not None:
        from edgepack.profiles.loader import load

        prof = load(profile)  # ConfigError for an unknown profile
        if prof.device.arch != "aarch64":
            raise ConfigError(
                f"profile {profile} is for {prof.device.arch}", "boards are aarch64: pick an arm64 profile"
            )
        if cpu is None:
            want = prof.device.cpu or "max"
            cpu = QEMU_CPU_FOR.get(want, want)
            if cpu not in CPUS:
                cpu = "max"
        return cpu, prof.name
    cpu = cpu or "max"
    if cpu not in CPUS:
        raise ConfigError(f"unknown CPU {cpu!r}", f"use one of {', '.join(CPUS)}")
    return cpu, PROFILE_FOR_CPU[cpu]


# -- processes -------------------------------------------------------------------------------------------------


def proc_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live, non-zombie process; None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(info: BoardInfo) -> bool:
    # The start time guards against a recycled pid after a crash or a reboot.
    return proc_start(info.pid) == info.pid_start


def processes_in(pid_ns: str) -> list[int]:
    """Host pids of every process in the pid namespace ``pid_ns`` (e.g. ``pid:[4026532]``)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "ns" / "pid") == pid_ns:
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


def _mounts_under(path: Path) -> list[str]:
    """Mount points in this (the host's) mount namespace at or below ``path``, deepest first."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == prefix or mp.startswith(prefix + "/"):
            found.append(mp)
    return sorted(found, key=len, reverse=True)


# -- state -------------------------------------------------------------------------------------------------------


@contextmanager
def _board_lock(name: str) -> Iterator[None]:
    """Serializes up/down of one board (the lock lives outside the board folder, which ``down`` deletes)."""
    lock = boards_dir() / ".locks" / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load(name: str) -> BoardInfo | None:
    f = board_dir(name) / "board.json"
    if not f.is_file():
        return None
    try:
        return BoardInfo.model_validate_json(f.read_text())
    except ValueError:
        return None  # a half-written file from a crashed `up`: the board is stale


def list_boards() -> list[BoardInfo]:
    if not boards_dir().is_dir():
        return []
    infos = [load(d.name) for d in sorted(boards_dir().iterdir()) if d.is_dir() and not d.name.startswith(".")]
    return [i for i in infos if i is not None]


def _write_target(info: BoardInfo) -> None:
    import yaml

    doc = {
        "name": info.name,
        "host": info.host,
        "port": info.port,
        "user": info.user,
        "identity": info.identity,
        "known_hosts": info.known_hosts,
        "profile": info.profile,
        "root": info.root,
        "cpu": info.cpu,
        "kind": "virtual-board",
    }
    f = target_file(info.name)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.tmp")
    tmp.write_text(
        "# written by `edgepack board up`; removed by `edgepack board down`\n" + yaml.safe_dump(doc, sort_keys=False)
    )
    tmp.replace(f)


# -- the userland as an overlay lower layer ----------------------------------------------------------------------


def _lower_dir(tarball: Path, progress: Progress) -> Path:
    """The cached tarball unpacked once (per tarball version) as the read-only lower layer of every board."""
    st = tarball.stat()
    tag = hashlib.sha1(f"{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:12]
    lower = tarball.parent / f"rootfs-{tag}"
    if lower.is_dir():
        return lower
    with userland._locked(tarball.parent / "rootfs.lock"):
        if not lower.is_dir():
            progress(f"unpacking {tarball.name} (once per userland)")
            userland.unpack(tarball, lower)
    return lower


# -- up ---------------------------------------------------------------------------------------------------------


def preflight(use_netns: bool) -> None:
    """Everything a board needs from the host, with one clear BoardError (exit 2) for the first thing missing."""
    binfmt.require_root()
    rel = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if rel and (int(rel.group(1)), int(rel.group(2))) < MIN_KERNEL:
        raise BoardError(
            f"Linux {os.uname().release} has no binfmt_misc per user namespace (needs ≥ 6.7)",
            "run boards on a newer kernel, or deploy to a real device from targets/*.yaml",
        )
    tools = ["unshare", "nsenter", "setsid", "chroot", "mount", "ssh-keygen", "zstd", "tar"]
    if use_netns:
        tools += ["ip", "tc", "nft"]
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise BoardError(f"missing tools for virtual boards: {', '.join(missing)}", "run: make sysdeps (as root)")
    binfmt.ensure_host_binfmt()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As sshd binds: connections of a previous board on this port, still in TIME_WAIT, do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _populate_upper(d: Path, name: str, host_key: Path, client_pub: str, listen: str, port: int) -> None:
    """Files the board gets on top of the shared userland (written into the overlay's upper layer)."""
    up = d / "upper"
    for sub, mode in (("etc/ssh", 0o755), ("root/.ssh", 0o700), ("usr/bin", 0o755), ("root/edgepack", 0o755)):
        (up / sub).mkdir(parents=True, exist_ok=True)
        (up / sub).chmod(mode)
    (up / "root").chmod(0o700)
    shutil.copyfile(host_key, up / "etc/ssh/ssh_host_ed25519_key")
    (up / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
    shutil.copyfile(host_key.with_name(host_key.name + ".pub"), up / "etc/ssh/ssh_host_ed25519_key.pub")
    (up / sshd.CONFIG_PATH.lstrip("/")).write_text(sshd.config(listen, port))
    (up / "root/.ssh/authorized_keys").write_text(client_pub + "\n")
    (up / "root/.ssh/authorized_keys").chmod(0o600)
    # The binfmt wrapper execs qemu by this path after sshd's chroot, so the board needs its own copy.
    shutil.copy2(binfmt.qemu_path(), up / "usr/bin" / binfmt.QEMU)
    (up / "etc/hostname").write_text(name + "\n")
    (up / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n")


def _scripts(d: Path, name: str, lower: Path, wrapper: Path, cpuinfo_file: Path, storage_mb: int | None) -> Path:
    q = shlex.quote
    storage = ""
    if storage_mb:
        # A real size limit for the install root: writes past it fail with ENOSPC, as on a full SD card.
        storage = f'mount -t tmpfs -o size={storage_mb}m,mode=0755 edgepack-storage "$R{INSTALL_ROOT}"\n'
    stage1 = f"""#!/bin/sh
# Board stage 1: pid 1 of the board's pid namespace, real root, private mount namespace (nothing leaks out).
set -eu
B={q(str(d))}
R="$B/rootfs"
echo {q(name)} > /proc/sys/kernel/hostname  # own UTS namespace: the board's hostname is its name
mount -t overlay edgepack-board -o lowerdir={q(str(lower))},upperdir="$B/upper",workdir="$B/work" "$R"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount --bind -o ro {q(str(cpuinfo_file))} "$R/proc/cpuinfo"  # qemu-user leaves the host's x86 file there
mount --rbind /dev "$R/dev"
{storage}# Never /sys: ONNX Runtime's cpuinfo crashes under qemu-user when it can read it.
unshare --user --mount --propagation private -- /bin/sh "$B/stage2.sh" &
child=$!
me=$(readlink "$R/proc/self/ns/user")
n=0
while [ "$(readlink "$R/proc/$child/ns/user" || echo gone)" = "$me" ]; do
  n=$((n + 1)); [ $n -lt 1000 ] || {{ echo "stage 2 never entered its user namespace" >&2; exit 1; }}
  sleep 0.01
done
# Map uids/gids 0..65535 to themselves: root inside is root on the files, and sshd can drop to its own user.
echo "0 0 65536" > "$R/proc/$child/uid_map"
echo "0 0 65536" > "$R/proc/$child/gid_map"
wait $child
"""
    stage2 = f"""#!/bin/sh
# Board stage 2: root of the board's user namespace; owns a private binfmt_misc instance (Linux >= 6.7).
set -eu
B={q(str(d))}
if [ "${{1:-}}" != mapped ]; then
  n=0
  until [ -n "$(cat /proc/self/uid_map)" ]; do
    n=$((n + 1)); [ $n -lt 1000 ] || {{ echo "uid map never written" >&2; exit 1; }}
    sleep 0.01
  done
  # Capabilities were dropped when this shell started unmapped; exec again as (mapped) root to get them.
  exec /bin/sh "$0" mapped
fi
mount -t binfmt_misc edgepack-binfmt "$B/binfmt"
echo {q(binfmt.board_handler_line(wrapper))} > "$B/binfmt/register"
exec chroot "$B/rootfs" /usr/sbin/sshd -D -e -f {sshd.CONFIG_PATH}
"""
    (d / "stage1.sh").write_text(stage1)
    (d / "stage2.sh").write_text(stage2)
    return d / "stage1.sh"


def _launch(d: Path, stage1: Path, ns: str | None) -> tuple[int, int]:
    """Start the board detached (its own session, reparented to init) and return (pid, start time)."""
    pidfile = d / "launcher.pid"
    pidfile.unlink(missing_ok=True)
    enter = ["nsenter", f"--net=/run/netns/{ns}"] if ns else []
    cmd = [
        "setsid",
        "-f",
        "sh",
        "-c",
        'echo $$ > "$0"; exec "$@"',
        str(pidfile),
        *enter,
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        "--uts",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        str(stage1),
    ]
    with (d / "console.log").open("ab") as log:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    if r.returncode != 0:
        raise BoardError(f"cannot start the board's launcher (exit {r.returncode})", f"see {d / 'console.log'}")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        text = pidfile.read_text() if pidfile.is_file() else ""
        if text.endswith("\n") and text.strip().isdigit():  # the whole line, not a half-written one
            pid = int(text)
            start = proc_start(pid)
            if start is None:
                raise BoardError("the board's launcher exited at once", f"see {d / 'console.log'}")
            return pid, start
        time.sleep(0.02)
    raise BoardError("the board's launcher did not start", f"see {d / 'console.log'}")


def _pid_ns_of(pid: int, timeout: float = 5) -> str | None:
    """The pid namespace of the launcher's child (pid 1 of the board)."""
    t0 = time.monotonic()
    own = os.readlink(f"/proc/{pid}/ns/pid") if Path(f"/proc/{pid}").exists() else None
    while time.monotonic() - t0 < timeout:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        for c in children:
            try:
                ns = os.readlink(f"/proc/{c}/ns/pid")
            except OSError:
                continue
            if ns != own:
                return ns
        time.sleep(0.02)
    return None


def _console_tail(d: Path, lines: int = 6) -> str:
    try:
        text = (d / "console.log").read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def up(
    name: str,
    *,
    port: int | None = None,
    cpu: str | None = None,
    storage_mb: int | None = None,
    profile: str | None = None,
    use_netns: bool = False,
    timeout: float = 120,
    progress: Progress = _noop,
) -> UpResult:
    """Start board ``name`` (a no-op when it already runs) and register it as a target."""
    t0 = time.monotonic()
    check_name(name)
    binfmt.require_root()
    cpu, profile = resolve_cpu_profile(cpu, profile)
    if port is not None and not 1024 <= port <= 65535:
        raise ConfigError(f"bad port {port}", "give a port in 1024..65535, or leave --port out to pick a free one")
    if storage_mb is not None and storage_mb < 1:
        raise ConfigError(f"bad --storage-mb {storage_mb}", "give a size in MB, at least 1")
    with _board_lock(name):
        existing = load(name)
        if existing is not None and is_running(existing):
            return UpResult(existing, already_running=True, seconds=time.monotonic() - t0)
        stale = (
            board_dir(name).exists()
            or target_file(name).exists()
            or (shutil.which("ip") is not None and netns.exists(name))
        )
        preflight(use_netns)
        if stale:
            progress(f"cleaning stale state of board {name} (a crashed or killed run)")
            _cleanup(name, existing)
        host = "127.0.0.1"
        if port is None:
            port = _pick_port()
        elif not use_netns and not _port_free(host, port):
            raise BoardError(f"port {port} on {host} is in use", "pick another --port, or leave it out")
        built = not userland.tarball_path().is_file()
        tarball = userland.ensure_userland(progress)
        lower = _lower_dir(tarball, progress)
        wrapper = binfmt.wrapper_for(cpu, cache_dir() / "boards" / "bin")
        d = board_dir(name)
        try:
            return _start(
                name,
                d,
                host,
                port,
                cpu,
                profile,
                storage_mb,
                use_netns,
                lower,
                wrapper,
                tarball,
                built,
                stale,
                timeout,
                t0,
                progress,
            )
        except BaseException:
            _cleanup(name, load(name))
            raise


def _start(
    name: str,
    d: Path,
    host: str,
    port: int,
    cpu: str,
    profile: str,
    storage_mb: int | None,
    use_netns: bool,
    lower: Path,
    wrapper: Path,
    tarball: Path,
    built: bool,
    stale: bool,
    timeout: float,
    t0: float,
    progress: Progress,
) -> UpResult:
    for p in (d, lower):
        if any(c in str(p) for c in ",:\n"):
            # overlayfs splits its mount options on these characters.
            raise BoardError(f"{p} contains ',' or ':'", "point EDGEPACK_STATE / EDGEPACK_CACHE at a plain path")
    for sub in ("keys", "upper", "work", "rootfs", "binfmt"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "keys").chmod(0o700)
    host_key = d / "keys" / "ssh_host_ed25519_key"
    host_pub = sshd.keygen(host_key, f"edgepack-board-{name}")
    identity = d / "keys" / "id_ed25519"
    client_pub = sshd.keygen(identity, f"edgepack@{name}")
    listen = host
    ns = None
    if use_netns:
        link = netns.create(name)
        ns, host = link.netns, link.board_ip
        listen = link.board_ip
    _populate_upper(d, name, host_key, client_pub, listen, port)
    known_hosts = d / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line(host, port, host_pub))
    cpuinfo_file = cpuinfo.write_for(cpu, binfmt.qemu_path(), lower, cache_dir() / "boards" / "bin")
    stage1 = _scripts(d, name, lower, wrapper, cpuinfo_file, storage_mb)
    progress(f"starting board {name} ({cpu}) on {host}:{port}")
    pid, start = _launch(d, stage1, ns)
    info = BoardInfo(
        name=name,
        host=host,
        port=port,
        identity=str(identity),
        known_hosts=str(known_hosts),
        profile=profile,
        cpu=cpu,
        storage_mb=storage_mb,
        netns=ns,
        pid=pid,
        pid_start=start,
        pid_ns=_pid_ns_of(pid),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    tmp = d / ".board.json.tmp"
    tmp.write_text(info.model_dump_json(indent=2))
    tmp.replace(d / "board.json")
    try:
        # ``timeout`` is for the board itself: building the userland first (minutes, once) does not eat into it.
        sshd.wait_banner(host, port, timeout, alive=lambda: is_running(info))
        code, out, err = sshd.run(info.endpoint(), "uname -m", timeout=max(30.0, timeout))
    except EdgepackError as e:
        raise BoardError(
            f"board {name} did not come up: {e.what} [console: {_console_tail(d)}]",
            "check `dmesg` for binfmt errors and the console log in " + str(d),
        ) from e
    if code != 0 or out.strip() != "aarch64":
        raise BoardError(
            f"board {name} answers but `uname -m` gave {out.strip()!r} {err.strip()!r}",
            "the binfmt handler is not qemu-aarch64; check `dmesg`",
        )
    _write_target(info)
    return UpResult(
        info,
        stale_cleaned=stale,
        userland_built=built,
        userland_tar_bytes=tarball.stat().st_size,
        seconds=time.monotonic() - t0,
    )


# -- down -------------------------------------------------------------------------------------------------------


def down(name: str, *, timeout: float = 20) -> DownResult:
    """Stop board ``name``: kill its processes, drop its mounts and network namespace, remove state and target."""
    check_name(name)
    binfmt.require_root()
    with _board_lock(name):
        info = load(name)
        exists = (
            info is not None
            or board_dir(name).exists()
            or target_file(name).exists()
            or (shutil.which("ip") is not None and netns.exists(name))
        )
        if not exists:
            raise BoardError(f"there is no board named {name}", "see `edgepack board list`")
        return _cleanup(name, info, timeout=timeout)


def _cleanup(name: str, info: BoardInfo | None, *, timeout: float = 20) -> DownResult:
    res = DownResult(name, was_running=info is not None and is_running(info))
    if info is not None:
        res.killed = _kill(info, timeout)
    d = board_dir(name)
    # Mounts live in the board's own namespace and vanish with it; these are leftovers of older or odd runs.
    for mp in _mounts_under(d) if d.exists() else []:
        r = subprocess.run(["umount", mp], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", mp], capture_output=True)  # busy: detach now, free when unused
        res.unmounted.append(mp)
    if shutil.which("ip") is not None and netns.exists(name):
        netns.teardown(name)
        res.removed.append(f"netns {netns.netns_name(name)}")
    if d.exists():
        left = _mounts_under(d)
        if left:
            # Deleting through a mount would delete what it shows (the userland cache, or /dev).
            raise BoardError(f"mounts still under {d}: {', '.join(left)}", "unmount them by hand, then `board down`")
        shutil.rmtree(d)
        res.removed.append(str(d))
    t = target_file(name)
    if t.exists():
        t.unlink()
        res.removed.append(str(t))
    return res


def _kill(info: BoardInfo, timeout: float) -> list[int]:
    killed: list[int] = []
    if not is_running(info):
        # The launcher is gone, so --kill-child already ended pid 1 and with it the pid namespace. Its recorded
        # inode number may since belong to another board's namespace: sweeping it would kill that board.
        return killed
    # The launcher leads its own session: the group signal reaches it and every board process still in the
    # group; --kill-child turns its death into SIGKILL for pid 1 of the board, which ends the pid namespace.
    # While any process is in that namespace it stays alive, so its inode cannot be reused meanwhile.
    try:
        os.killpg(info.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    killed.append(info.pid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        rest = processes_in(info.pid_ns) if info.pid_ns else []
        if is_running(info):
            rest.append(info.pid)
        if not rest:
            return killed
        for pid in rest:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.05)
    raise BoardError(
        f"board {info.name}'s processes did not exit within {timeout:.0f} s",
        f"look for them with `ps` (pid namespace {info.pid_ns}) and kill them",
    )


def status(name: str) -> Literal["running", "stopped", "absent"]:
    info = load(name)
    if info is None:
        return "absent"
    return "running" if is_running(info) else "stopped"
