"""SSH transport over paramiko: key auth, strict host keys, and a link that fails in bounded time.

A dead link is not noticed by paramiko's defaults (the kernel retries for ~15 minutes), so we create the TCP
socket ourselves with ``TCP_USER_TIMEOUT`` and keepalive probes and hand it to ``connect(sock=…)``: unacknowledged
data or silent peers then abort the connection after ``timeout`` seconds (NOTES.md, "Fault injection").
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.errors import CommandFailed, ConnectError, HostKeyError, TransferError
from edgepack.transports.base import Held, ProgressFn, RemoteStat, Result, quote

if TYPE_CHECKING:
    import paramiko

_CHUNK = 1 << 20


def _link_socket(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        # Linux: abort when sent data stays unacknowledged this long (covers a link cut mid-upload).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout * 1000))
    if hasattr(socket, "TCP_KEEPIDLE"):
        # Probes cover the idle case (waiting on a long command): idle + cnt*intvl ≈ timeout.
        interval = max(1, int(timeout // 4))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.settimeout(None)
    return sock


def _close(chan: paramiko.Channel) -> None:
    """Closing a channel sends a message; on a dead link that fails, and there is nothing left to close."""
    with contextlib.suppress(Exception):
        chan.close()


class _SshHeld:
    def __init__(self, owner: SshTransport, chan: paramiko.Channel) -> None:
        self._owner = owner
        self._chan = chan
        self._buf = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._owner._translate("waiting on the target"):
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or (self._chan.exit_status_ready() and not self._chan.recv_ready()):
                    break
                select.select([self._chan], [], [], min(left, 0.5))
                if self._chan.recv_ready():
                    self._buf += self._chan.recv(4096)
        line, sep, rest = self._buf.partition(b"\n")
        if not sep:
            return ""
        self._buf = rest
        return line.decode(errors="replace") + "\n"

    def close(self) -> None:
        # Closing stdin ends the held command (``cat`` sees EOF), which releases whatever it held.
        with contextlib.suppress(Exception):
            self._chan.shutdown_write()
        with contextlib.suppress(Exception):
            self._chan.close()


class SshTransport:
    """One SSH connection to a target. Host keys come only from ``known_hosts``; unknown or changed keys fail."""

    def __init__(
        self,
        name: str,
        host: str,
        *,
        port: int = 22,
        user: str | None = None,
        identity: str | None = None,
        known_hosts: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.bytes_out = 0
        self.host = host
        self.port = port
        self.user = user
        self.identity = identity
        self.known_hosts = known_hosts
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None

    # -- connection -------------------------------------------------------------------------------------------
    def _where(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"

    def connect(self) -> SshTransport:
        import paramiko

        kh = Path(self.known_hosts).expanduser() if self.known_hosts else Path.home() / ".ssh" / "known_hosts"
        client = paramiko.SSHClient()
        # RejectPolicy: a key that is not in known_hosts is refused, never added.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if kh.is_file():
            try:
                client.get_host_keys().load(str(kh))
            except (OSError, paramiko.SSHException) as e:
                raise HostKeyError(f"{self.name}: cannot read known_hosts {kh}: {e}", "fix or recreate the file") from e
        try:
            sock = _link_socket(self.host, self.port, self.timeout)
        except OSError as e:
            raise ConnectError(
                f"{self.name}: cannot reach {self._where()}: {e.strerror or e}",
                "check that the target is up and its host/port are right",
            ) from e
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=str(Path(self.identity).expanduser()) if self.identity else None,
                sock=sock,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=False,
                look_for_keys=self.identity is None,
            )
        except paramiko.BadHostKeyException as e:
            client.close()
            sock.close()
            raise HostKeyError(
                f"{self.name}: the host key of {self._where()} CHANGED (not the one in {kh})",
                "if the target was reinstalled, verify its new fingerprint out of band and replace "
                "its line in known_hosts; otherwise do not connect",
            ) from e
        except paramiko.AuthenticationException as e:
            client.close()
            sock.close()
            raise ConnectError(
                f"{self.name}: authentication failed for {self._where()} with key {self.identity or '(default keys)'}",
                "check the target's user and identity",
            ) from e
        except paramiko.SSHException as e:
            client.close()
            sock.close()
            if "known_hosts" in str(e) or "not found in" in str(e):
                raise HostKeyError(
                    f"{self.name}: the host key of {self._where()} is unknown (not in {kh})",
                    "check its fingerprint out of band and add it to known_hosts "
                    "(ssh-keyscan); edgepack never adds keys itself",
                ) from e
            raise ConnectError(f"{self.name}: SSH to {self._where()} failed: {e}", "check the target's sshd") from e
        except (OSError, EOFError) as e:
            client.close()
            sock.close()
            raise ConnectError(
                f"{self.name}: connection to {self._where()} failed: {e}", "check that the target is up"
            ) from e
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(max(1, int(self.timeout // 3)))
        # Bigger windows keep a fast link busy while acks travel (default 2 MiB).
        transport.window_size = 16 << 20  # type: ignore[attr-defined]
        self._client = client
        return self

    @contextlib.contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        """The one place where paramiko/socket errors become edgepack errors."""
        import paramiko

        try:
            yield
        except (EOFError, paramiko.SSHException, OSError) as e:
            # OSError includes "Socket is closed" from a channel whose transport died under it (link cut).
            what = f"{self.name}: connection to {self._where()} lost while {doing} ({str(e) or type(e).__name__})"
            raise ConnectError(
                what,
                f"check the link to the target (timeout {self.timeout:g} s) and retry",
            ) from e

    def _check_link(self, settle: float = 3.0) -> None:
        """A channel ended without an exit status: raise ConnectError if that is because the link died.

        paramiko closes the channels of a dead transport a moment before it marks the transport inactive, so
        give it ``settle`` seconds to make up its mind; still active then means the command was killed by a signal.
        """
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            self._transport()
            time.sleep(0.05)

    def _transport(self) -> paramiko.Transport:
        if self._client is None:
            self.connect()
        assert self._client is not None
        t = self._client.get_transport()
        if t is None or not t.is_active():
            raise ConnectError(
                f"{self.name}: connection to {self._where()} was lost",
                f"check the link to the target (timeout {self.timeout:g} s) and retry",
            )
        return t

    def _open(self, command: str) -> paramiko.Channel:
        self.bytes_out += len(command)
        t = self._transport()
        with self._translate("opening a session"):
            chan = t.open_session(timeout=self.timeout)
            chan.exec_command(command)
        return chan

    # -- protocol ---------------------------------------------------------------------------------------------
    def run(self, command: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        chan = self._open(command)
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + timeout
        with self._translate(f"running '{command[:60]}'"):
            if stdin:
                chan.sendall(stdin)
                self.bytes_out += len(stdin)
            chan.shutdown_write()
            while True:
                while chan.recv_ready():
                    out.append(chan.recv(65536))
                while chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(65536))
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    _close(chan)
                    raise CommandFailed(
                        f"{self.name}: command did not finish within {timeout:g} s: {command[:80]}",
                        "check the target or raise the timeout",
                        exit_status=124,
                    )
                # The channel's fd wakes us on stdout; the cap re-checks stderr and exit status.
                select.select([chan], [], [], 0.05)
            code = chan.recv_exit_status()
        _close(chan)
        if code == -1:
            # No exit status: either the connection died under the command (raises here) or the command was
            # killed by a signal (sshd sends exit-signal, which paramiko does not surface): report -1.
            self._check_link()
        return Result(command, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace"), code)

    def put(
        self, local: Path, remote: str, *, offset: int = 0, progress: ProgressFn | None = None, timeout: float = 60.0
    ) -> int:
        # A plain ``cat`` stream, not SFTP: as fast as scp here (SFTP's per-request acks cost ~15%), it names the
        # real error (SFTP reports a full disk only as "Failure"), and busybox boards without sftp-server work.
        total = local.stat().st_size
        sent = 0
        step = f"{self.name}: upload"
        chan = self._open(f"cat {'>>' if offset else '>'} {quote(remote)}")
        err = b""
        try:
            with self._translate(f"uploading to {remote}"), local.open("rb") as src:
                src.seek(offset)
                while chunk := src.read(_CHUNK):
                    if chan.exit_status_ready():
                        break  # cat died (disk full): stop sending, report its error below
                    chan.sendall(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(step, offset + sent, total)
                chan.shutdown_write()
                code = chan.recv_exit_status()
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
        except ConnectError:
            if not chan.exit_status_ready():
                raise
            code = chan.recv_exit_status()  # cat died and sshd closed the channel under sendall
            with contextlib.suppress(Exception):
                err = chan.recv_stderr(65536)
        finally:
            _close(chan)
        if code == -1:
            # No exit status: a dead link closed the channel (the check raises ConnectError, exit 3).
            self._check_link()
        if code != 0:
            msg = err.decode(errors="replace").strip().splitlines()
            raise TransferError(
                f"{self.name}: writing {remote} failed after {offset + sent} of {total} bytes "
                f"({msg[-1] if msg else f'exit {code}'})",
                "free space under the target's install root and retry",
            )
        self.bytes_out += sent
        return sent

    def get(self, remote: str, local: Path, *, timeout: float = 60.0) -> None:
        chan = self._open(f"cat {quote(remote)}")
        deadline = time.monotonic() + timeout
        with self._translate(f"reading {remote}"), local.open("wb") as dst:
            chan.shutdown_write()
            chan.settimeout(timeout)
            while data := chan.recv(_CHUNK):
                dst.write(data)
                if time.monotonic() > deadline:
                    raise TransferError(
                        f"{self.name}: reading {remote} took longer than {timeout:g} s", "raise the timeout"
                    )
            code = chan.recv_exit_status()
        _close(chan)
        if code != 0:
            local.unlink(missing_ok=True)
            raise TransferError(f"{self.name}: cannot read {remote} (exit {code})", "check the path")

    def stat(self, remote: str, *, timeout: float = 60.0) -> RemoteStat | None:
        res = self.run(f"stat -c '%s %F %Y' {quote(remote)} 2>/dev/null || echo missing", timeout=timeout)
        line = res.stdout.strip()
        if line == "missing" or not line:
            return None
        size, _, rest = line.partition(" ")
        kind, _, mtime = rest.rpartition(" ")
        return RemoteStat(int(size), kind == "directory", float(mtime))

    def hold(self, command: str) -> Held:
        return _SshHeld(self, self._open(command))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
