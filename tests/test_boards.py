"""Virtual arm64 boards: real debootstrap userland, real qemu-user, real sshd, real SSH with pinned host keys.

Every test runs against boards started in a private EDGEPACK_STATE; the userland tarball is shared through the
real cache (built once, minutes; later boards start from it in seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, run_cli

DOTPROD = 1 << 20  # HWCAP_ASIMDDP


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "virtual boards need root"
    missing = [
        t
        for t in ("qemu-aarch64-static", "debootstrap", "unshare", "nsenter", "ssh-keygen", "zstd", "ip")
        if not shutil.which(t)
    ]
    if missing:
        return f"missing {', '.join(missing)} (make sysdeps)"
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    if (major, minor) < (6, 7):
        return "Linux < 6.7 has no binfmt_misc per user namespace"
    return None


pytestmark = [pytest.mark.board, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private state folder for this module's boards (targets, keys); every board left is taken down at the end."""
    d = tmp_path_factory.mktemp("board-state")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEPACK_STATE", str(d))
    try:
        yield d
    finally:
        from edgepack.boards import board

        for b in board.list_boards():
            board.down(b.name)
        mp.undo()


def ssh(target: dict[str, Any], command: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run over real SSH (paramiko) with exactly the registered target's key and known_hosts."""
    from edgepack.boards.sshd import Endpoint, run

    ep = Endpoint(
        target["host"], int(target["port"]), target["user"], Path(target["identity"]), Path(target["known_hosts"])
    )
    return run(ep, command, timeout=timeout)


def target(state: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((state / "targets" / f"{name}.yaml").read_text())
    return doc


def hwcap(t: dict[str, Any]) -> int:
    code, out, err = ssh(t, "LD_SHOW_AUXV=1 /bin/true")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("AT_HWCAP:"))
    return int(line.split()[1], 16)


def leftovers(state: Path, infos: list[Any]) -> list[str]:
    """Processes, mounts, namespaces and files a taken-down board could leave behind."""
    from edgepack.boards import board, netns

    found = []
    # Namespace inode numbers are reused: only processes older than this check can be a board's leftovers.
    now = int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))
    for info in infos:
        old = [p for p in board.processes_in(info.pid_ns or "-") if (board.proc_start(p) or now) < now]
        if old:
            found.append(f"processes in {info.name}'s pid namespace: {old}")
        if board.proc_start(info.pid) is not None:
            found.append(f"{info.name}'s launcher {info.pid}")
        if netns.exists(info.name):
            found.append(f"netns of {info.name}")
        r = subprocess.run(["ip", "link", "show", netns.host_veth_name(info.name)], capture_output=True)
        if r.returncode == 0:
            found.append(f"veth of {info.name}")
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmdline = (p / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(state) in cmdline:
                found.append(f"process {p.name}: {cmdline.replace(chr(0), ' ')[:120]}")
    found += [
        f"mount {line.split()[4]}"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if str(state) in line
    ]
    found += [str(p) for p in (state / "boards").glob("*") if not p.name.startswith(".")]
    found += [str(p) for p in (state / "targets").glob("*.yaml")]
    return found


def test_up_is_registered_listed_idempotent_and_down_removes_it(state: Path) -> None:
    r = run_cli(["board", "up", "cli-a72", "--cpu", "cortex-a72", "--json"])
    assert r.returncode == 0, r.stderr
    up = json.loads(r.stdout)
    # Warm cache (the userland is built by the first board ever): must start within 30 s.
    assert up["seconds"] <= 30, up
    t = target(state, "cli-a72")
    assert {k: t[k] for k in ("name", "host", "user", "profile", "root", "cpu", "kind")} == {
        "name": "cli-a72",
        "host": "127.0.0.1",
        "user": "root",
        "profile": "rpi-4b",
        "root": "/root/edgepack",
        "cpu": "cortex-a72",
        "kind": "virtual-board",
    }
    assert t["port"] == up["port"]
    assert Path(t["identity"]).is_file()
    assert Path(t["known_hosts"]).read_text().startswith(f"[127.0.0.1]:{t['port']} ssh-ed25519 ")
    assert ssh(t, "uname -m")[1].strip() == "aarch64"
    # The same board through OpenSSH's client, with strict host key checking, proves the target works anywhere.
    r2 = subprocess.run(
        [
            "ssh",
            "-i",
            t["identity"],
            "-p",
            str(t["port"]),
            "-o",
            f"UserKnownHostsFile={t['known_hosts']}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            f"{t['user']}@{t['host']}",
            "uname -m",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r2.returncode == 0 and r2.stdout.strip() == "aarch64", r2.stderr

    listed = json.loads(run_cli(["board", "list", "--json"]).stdout)
    entry = next(b for b in listed if b["name"] == "cli-a72")
    for key in ("name", "host", "port", "user", "identity", "known_hosts", "profile", "cpu"):
        assert entry[key] == t[key], key
    assert entry["state"] == "running"

    again = run_cli(["board", "up", "cli-a72"])
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout + again.stderr

    down = run_cli(["board", "down", "cli-a72"])
    assert down.returncode == 0, down.stderr
    assert not (state / "targets" / "cli-a72.yaml").exists()
    assert json.loads(run_cli(["board", "list", "--json"]).stdout) == []
    gone = run_cli(["board", "down", "cli-a72"])
    assert gone.returncode == 2 and "no board named cli-a72" in gone.stderr


def test_cpu_flag_gives_pi4_and_pi5_their_real_isa(state: Path) -> None:
    from edgepack.boards import board

    board.up("isa-a72", cpu="cortex-a72")
    board.up("isa-a76", profile="rpi-5")  # the profile's CPU (cortex-a76) is the board's CPU
    a72, a76 = target(state, "isa-a72"), target(state, "isa-a76")
    assert a76["cpu"] == "cortex-a76" and a76["profile"] == "rpi-5"
    assert not hwcap(a72) & DOTPROD
    assert hwcap(a76) & DOTPROD
    # /proc/cpuinfo (which qemu-user leaves as the host's) tells the same story, as on a real Pi 4 and Pi 5.
    for t, part, dotprod in ((a72, "0xd08", False), (a76, "0xd0b", True)):
        code, out, err = ssh(t, "cat /proc/cpuinfo")
        assert code == 0, err
        feats = next(x for x in out.splitlines() if x.startswith("Features")).split(":")[1].split()
        assert "asimd" in feats and ("asimddp" in feats) == dotprod, feats
        assert f"CPU part\t: {part}" in out and "GenuineIntel" not in out and "AuthenticAMD" not in out
    # sshd strips QEMU_CPU, and a session cannot escape the pinned CPU by setting it or clearing its environment.
    code, out, _ = ssh(a72, "QEMU_CPU=max env LD_SHOW_AUXV=1 /bin/true; env -i LD_SHOW_AUXV=1 /bin/true")
    caps = [int(x.split()[1], 16) for x in out.splitlines() if x.startswith("AT_HWCAP:")]
    assert len(caps) == 2 and not any(c & DOTPROD for c in caps), out
    # The userland carries what the device host and deploy need.
    code, out, err = ssh(
        a76,
        "python3 -c 'import sys; print(sys.version_info[:2])' && mono --version | head -1 "
        "&& ls /usr/lib/mono/4.5/System.Runtime.Serialization.dll && test ! -e /sys/devices/system",
    )
    assert code == 0, err
    assert "(3, 11)" in out and "Mono JIT compiler" in out
    board.down("isa-a72")
    board.down("isa-a76")


def _ort_wheels(cache: Path) -> list[Path]:
    """The aarch64 onnxruntime and numpy wheels for the board's python3 (3.11), downloaded once into the cache."""

    import numpy

    d = cache / "runtime" / "board-test"
    names = ["onnxruntime==1.32.0", f"numpy=={numpy.__version__}"]
    wheels = [
        *d.glob("onnxruntime-1.32.0-cp311-*aarch64*.whl"),
        *d.glob(f"numpy-{numpy.__version__}-cp311-*aarch64*.whl"),
    ]
    if len(wheels) == 2:
        return wheels
    d.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_aarch64",
        "--platform",
        "manylinux2014_aarch64",
        "--python-version",
        "3.11",
        "--no-deps",
        "-d",
        str(d),
        *names,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return [
        *d.glob("onnxruntime-1.32.0-cp311-*aarch64*.whl"),
        *d.glob(f"numpy-{numpy.__version__}-cp311-*aarch64*.whl"),
    ]


def test_onnxruntime_aarch64_runs_a_model_in_the_board_bit_identical(state: Path, tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    import paramiko
    from onnx import TensorProto, helper, numpy_helper

    from edgepack.boards import board
    from edgepack.paths import cache_dir

    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y0"]),
            helper.make_node("Add", ["y0", "B"], ["y1"]),
            helper.make_node("Relu", ["y1"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    (tmp_path / "tiny.onnx").write_bytes(model.SerializeToString())
    x = (np.arange(16, dtype=np.float32).reshape(1, 16) - 5) / 7
    np.save(tmp_path / "x.npy", x)
    expected = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]

    try:
        from edgepack.runtime.wheel import fetch_library

        lib = fetch_library("1.32.0", "aarch64")
    except ImportError:
        lib = None
    wheels = _ort_wheels(cache_dir())
    board.up("ort", cpu="cortex-a76")
    t = target(state, "ort")
    client = paramiko.SSHClient()
    client.load_host_keys(t["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        t["host"],
        port=t["port"],
        username=t["user"],
        key_filename=t["identity"],
        look_for_keys=False,
        allow_agent=False,
        timeout=60,
    )
    try:
        client.exec_command("mkdir -p /tmp/ort/site")[1].channel.recv_exit_status()
        sftp = client.open_sftp()
        for f in [*wheels, tmp_path / "tiny.onnx", tmp_path / "x.npy", *([lib] if lib else [])]:
            sftp.put(str(f), f"/tmp/ort/{f.name}")
        # Only the packages, not whole wheels: zipfile from the board's stdlib.
        script = (
            "import zipfile, glob\n"
            "for w in glob.glob('/tmp/ort/*.whl'):\n"
            "    z = zipfile.ZipFile(w)\n"
            "    keep = [n for n in z.namelist() if n.split('/')[0] in ('onnxruntime', 'numpy', 'numpy.libs')]\n"
            "    z.extractall('/tmp/ort/site', keep)\n"
        )
        run_py = (
            "import numpy as np, onnxruntime as ort, platform\n"
            "s = ort.InferenceSession('/tmp/ort/tiny.onnx', providers=['CPUExecutionProvider'])\n"
            "y = s.run(None, {'x': np.load('/tmp/ort/x.npy')})[0]\n"
            "np.save('/tmp/ort/y.npy', y)\n"
            "print(platform.machine(), ort.__version__)\n"
        )
        for name, text in (("unpack.py", script), ("run.py", run_py)):
            with sftp.open(f"/tmp/ort/{name}", "w") as remote:
                remote.write(text)
        code, out, err = ssh(
            t, "python3 /tmp/ort/unpack.py && PYTHONPATH=/tmp/ort/site python3 /tmp/ort/run.py", timeout=300
        )
        assert code == 0, err
        assert out.split() == ["aarch64", "1.32.0"], out
        sftp.get("/tmp/ort/y.npy", str(tmp_path / "y.npy"))
        got = np.load(tmp_path / "y.npy")
        assert got.shape == expected.shape and got.tobytes() == expected.tobytes(), (got, expected)
        if lib is not None:
            # The bare library edgepack ships in bundles loads through the C API entry point.
            probe = (
                "import ctypes; l = ctypes.CDLL('/tmp/ort/libonnxruntime.so.1.32.0'); "
                "l.OrtGetApiBase.restype = ctypes.POINTER(ctypes.c_void_p * 2); "
                "print(ctypes.CFUNCTYPE(ctypes.c_char_p)(l.OrtGetApiBase().contents[1])().decode())"
            )
            code, out, err = ssh(t, f'python3 -c "{probe}"')
            assert code == 0 and out.strip() == "1.32.0", err
    finally:
        client.close()
        board.down("ort")


def test_storage_mb_gives_a_real_disk_full(state: Path) -> None:
    from edgepack.boards import board

    board.up("disk", storage_mb=16)
    t = target(state, "disk")
    code, out, _ = ssh(t, "df -k --output=size /root/edgepack | tail -1")
    assert code == 0 and 15000 <= int(out) <= 17000, out
    code, out, err = ssh(t, "dd if=/dev/zero of=/root/edgepack/fill bs=1M count=64")
    assert code != 0 and "No space left on device" in err, err
    board.down("disk")


def test_stale_state_of_a_crashed_board_is_detected_and_cleaned(state: Path) -> None:
    import signal

    from edgepack.boards import board

    first = board.up("crash")
    os.kill(first.board.pid, signal.SIGKILL)  # the launcher dies as in a crash; --kill-child ends the board
    deadline = time.monotonic() + 20
    while board.status("crash") != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    listed = json.loads(run_cli(["board", "list", "--json"]).stdout)
    assert [b["state"] for b in listed if b["name"] == "crash"] == ["stopped"]
    assert first.board.pid_ns
    while board.processes_in(first.board.pid_ns) and time.monotonic() < deadline:
        time.sleep(0.1)  # the kernel tears the pid namespace down right after its pid 1
    assert board.processes_in(first.board.pid_ns) == []
    again = board.up("crash")
    assert again.stale_cleaned and not again.already_running
    assert ssh(target(state, "crash"), "uname -m")[1].strip() == "aarch64"
    board.down("crash")


def test_changed_host_key_is_rejected(state: Path, tmp_path: Path) -> None:
    from edgepack.boards import board
    from edgepack.errors import HostKeyError

    port = board.up("rekey").board.port
    old = target(state, "rekey")
    saved = tmp_path / "known_hosts.old"
    shutil.copy(old["known_hosts"], saved)
    board.down("rekey")
    board.up("rekey", port=port)  # same name, same address: a new host key
    new = target(state, "rekey")
    assert Path(new["known_hosts"]).read_text() != saved.read_text()
    assert ssh(new, "true")[0] == 0
    with pytest.raises(HostKeyError):
        ssh({**new, "known_hosts": str(saved)}, "true")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError):  # an unknown key is never auto-accepted either
        ssh({**new, "known_hosts": str(empty)}, "true")
    r = subprocess.run(
        [
            "ssh",
            "-i",
            new["identity"],
            "-p",
            str(port),
            "-o",
            f"UserKnownHostsFile={saved}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "root@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in r.stderr, r.stderr
    board.down("rekey")


def _throughput(t: dict[str, Any], nbytes: int) -> float:
    """Bytes per second the board sends to the host over SSH."""
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(t["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        t["host"],
        port=t["port"],
        username=t["user"],
        key_filename=t["identity"],
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    )
    try:
        t0 = time.monotonic()
        _, out, _ = client.exec_command(f"head -c {nbytes} /dev/zero", timeout=60)
        assert len(out.read()) == nbytes
        return nbytes / (time.monotonic() - t0)
    finally:
        client.close()


def _tcp_answers(host: str, port: int, timeout: float = 3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH")
    except OSError:
        return False


def test_four_boards_at_once_then_nothing_left_behind(state: Path) -> None:
    from edgepack.boards import board, netns

    specs = [
        ("four-a", ["--cpu", "cortex-a72"]),
        ("four-b", ["--cpu", "cortex-a76"]),
        ("four-c", ["--storage-mb", "32"]),
        ("four-d", ["--netns", "--profile", "rpi-4b"]),
    ]
    # Started at the same moment by four separate processes, as four CI jobs would.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "edgepack", "board", "up", name, *opts, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name, opts in specs
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert json.loads(out)["seconds"] <= 30
    infos = [i for i in (board.load(n) for n, _ in specs) if i is not None]
    assert len({(i.host, i.port) for i in infos}) == 4
    for i in infos:
        code, out, err = ssh(target(state, i.name), "uname -m && hostname")
        assert code == 0 and out.split() == ["aarch64", i.name], err
    assert {b.name for b in board.list_boards() if board.is_running(b)} == {n for n, _ in specs}

    # The netns board: its link can be cut, restored and slowed, and only its own /30 was created.
    d = target(state, "four-d")
    assert d["host"].startswith("10.213.")
    fast = _throughput(d, 1_000_000)
    netns.set_bandwidth("four-d", "2mbit")
    slow = _throughput(d, 1_000_000)
    netns.clear_bandwidth("four-d")
    # 2 Mbit/s = 250 kB/s, plus SSH framing and the bucket's burst; unshaped is several MB/s even on a busy host.
    assert slow < 300e3 and fast > 2 * slow, (slow, fast)
    netns.cut_link("four-d")
    assert not _tcp_answers(d["host"], d["port"])
    netns.restore_link("four-d")
    deadline = time.monotonic() + 10
    while not _tcp_answers(d["host"], d["port"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _tcp_answers(d["host"], d["port"])
    netns.drop_packets("four-d", 100)
    assert not _tcp_answers(d["host"], d["port"], timeout=2)
    netns.clear_drops("four-d")
    assert ssh(d, "true")[0] == 0

    for name, _ in specs:
        r = run_cli(["board", "down", name])
        assert r.returncode == 0, r.stderr
    assert leftovers(state, infos) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["board", "up", "Bad_Name"], "bad board name"),
        (["board", "up", "local"], "bad board name"),
        (["board", "up", "x", "--profile", "no-such-profile"], "no-such-profile"),
        (["board", "up", "x", "--profile", "generic-x86_64"], "boards are aarch64"),
        (["board", "up", "x", "--port", "80"], "bad port 80"),
        (["board", "up", "x", "--storage-mb", "0"], "bad --storage-mb"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(state: Path, args: list[str], message: str) -> None:
    r = run_cli(args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("edgepack: error: ") and message in r.stderr and len(r.stderr.splitlines()) == 1


def test_without_root_board_up_says_what_to_do(state: Path, tmp_path: Path) -> None:

    r = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "edgepack",
            "board",
            "up",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EDGEPACK_STATE": str(tmp_path)},
        cwd=Path(__file__).parent.parent,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "need root" in r.stderr and "sudo" in r.stderr


def test_a_port_in_use_is_refused(state: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli(["board", "up", "busy", "--port", str(port)])
    assert r.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in r.stderr, r.stderr
    assert not (state / "boards" / "busy").exists() and not (state / "targets" / "busy.yaml").exists()


def test_an_old_kernel_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgepack.boards import board
    from edgepack.errors import BoardError

    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, "6.1.0-28-amd64", real.version, real.machine))
    monkeypatch.setattr(os, "uname", lambda: fake)
    with pytest.raises(BoardError, match=r"no binfmt_misc per user namespace \(needs ≥ 6.7\) — "):
        board.preflight(use_netns=False)
