"""Transports: the same protocol over `local` and a real sshd; errors become edgepack errors at the boundary."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgepack.errors import CommandFailed, ConnectError, HostKeyError
from edgepack.transports.base import Transport
from edgepack.transports.local import LocalTransport
from edgepack.transports.ssh import SshTransport
from tests import sshd as sshd_mod
from tests.sshd import Sshd

needs_sshd = pytest.mark.skipif(sshd_mod.available() is not None, reason=str(sshd_mod.available()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if sshd_mod.available():
        pytest.skip(str(sshd_mod.available()))
    with Sshd(tmp_path_factory.mktemp("sshd")) as s:
        yield s


def _ssh(s: Sshd, **kw: object) -> SshTransport:
    args: dict[str, object] = {
        "port": s.port,
        "user": "root",
        "identity": str(s.client_key),
        "known_hosts": str(s.known_hosts),
        "timeout": 5.0,
        **kw,
    }
    return SshTransport("t", s.host, **args).connect()  # type: ignore[arg-type]


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "local":
        yield LocalTransport()
        return
    s = request.getfixturevalue("server")
    t = _ssh(s)
    yield t
    t.close()


def test_run_returns_output_and_exit_code(transport: Transport) -> None:
    r = transport.run("echo out; echo err >&2; exit 7")
    assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 7)
    with pytest.raises(CommandFailed) as e:
        r.check("t", "the test command")
    assert e.value.exit_status == 7 and e.value.exit_code == 3 and "err" in str(e.value)


def test_run_feeds_stdin(transport: Transport) -> None:
    assert transport.run("sh -s -- x y", stdin=b'echo "$1-$2"\n').stdout == "x-y\n"


def test_run_timeout_is_bounded(transport: Transport) -> None:
    t0 = time.monotonic()
    with pytest.raises(CommandFailed, match="did not finish"):
        transport.run("sleep 30", timeout=1.0)
    assert time.monotonic() - t0 < 10


def test_put_get_stat_and_resume(transport: Transport, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    remote = str(tmp_path / "remote.bin")
    assert transport.stat(remote) is None
    # A "partial" upload of the first 1000 bytes, then a resume from there.
    (tmp_path / "remote.bin").write_bytes(src.read_bytes()[:1000])
    sent = transport.put(src, remote, offset=1000)
    assert sent == src.stat().st_size - 1000
    st = transport.stat(remote)
    assert st is not None and st.size == src.stat().st_size and not st.is_dir
    back = tmp_path / "back.bin"
    transport.get(remote, back)
    assert back.read_bytes() == src.read_bytes()
    d = transport.stat(str(tmp_path))
    assert d is not None and d.is_dir


@needs_sshd
def test_unknown_host_key_is_refused_never_added(server: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="unknown") as e:
        _ssh(server, known_hosts=str(empty))
    assert e.value.exit_code == 3
    assert empty.read_text() == ""


@needs_sshd
def test_changed_host_key_is_refused(server: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kh = tmp_path / "known_hosts"
    kt, key = other.with_suffix(".pub").read_text().split()[:2]
    kh.write_text(f"[{server.host}]:{server.port} {kt} {key}\n")
    before = kh.read_text()
    with pytest.raises(HostKeyError, match="CHANGED"):
        _ssh(server, known_hosts=str(kh))
    assert kh.read_text() == before


@needs_sshd
def test_wrong_key_is_an_auth_error(server: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(ConnectError, match="authentication failed"):
        _ssh(server, identity=str(other))


def test_unreachable_port_fails_fast() -> None:
    t0 = time.monotonic()
    with pytest.raises(ConnectError, match="cannot reach") as e:
        SshTransport("nowhere", "127.0.0.1", port=1, timeout=3).connect()
    assert e.value.exit_code == 3
    assert time.monotonic() - t0 < 5
