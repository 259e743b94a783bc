"""SSH transport over paramiko: key auth, strict host keys, and a link that fails in bounded time.

A dead link is not noticed by paramiko's defaults (the kernel retries for ~15 minutes), so we create the TCP
socket ourselves with ``TCP_USER_TIMEOUT`` and keepalive probes and hand it to ``connect(sock=…)``: unacknowledged
data or silent peers then abort the connection after ``timeout`` seconds (NOTES.md, "Fault injection").
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import paramiko
import paramiko.packet
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305

from edgepack.errors import CommandFailed, ConnectError, HostKeyError, TransferError
from edgepack.transports.base import Held, ProgressFn, RemoteStat, Result, quote

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


_CHACHA = "chacha20-poly1305@openssh.com"


class _ChaCha20Poly1305:
    """OpenSSH's ``chacha20-poly1305@openssh.com`` (its PROTOCOL.chacha20poly1305), from ``cryptography``'s primitives.

    paramiko lacks it, yet it is OpenSSH's default and the cheapest cipher for a board's sshd to decrypt where AES
    and SHA-2 have no fast path (an emulated or a small ARM core): against the emulated rpi-5 board an upload runs
    ≈1.8× faster than with aes128-ctr + hmac-sha2-256, paramiko's best otherwise. 64 bytes of key: K_2 (payload
    and Poly1305 key) then K_1 (the 4-byte packet length); the nonce is the packet's sequence number. One instance
    per direction, plugged into paramiko's AEAD path: ``encrypt``/``decrypt`` take the length in clear as ``aad``
    and handle ciphertext + tag, while ``_Packetizer`` puts the length's own encryption on and off the wire.
    """

    def __init__(self, key: bytes) -> None:
        self._main, self._header = key[:32], key[32:]
        self.seq = 0  # sequence number of the next packet in this direction
        self.wire_length: bytes | None = None  # the encrypted length of the packet just sealed, for write_all

    def _stream(self, key: bytes) -> CipherContext:
        # 16-byte ChaCha20 IV as OpenSSL reads it: 64-bit block counter (little endian, 0) + 64-bit nonce (seq).
        return Cipher(algorithms.ChaCha20(key, bytes(8) + self.seq.to_bytes(8, "big")), mode=None).encryptor()

    def length(self, data: bytes) -> bytes:
        """Encrypt or decrypt (the same XOR) a packet's 4-byte length."""
        return self._stream(self._header).update(data)

    def _keyed(self) -> tuple[CipherContext, bytes]:
        main = self._stream(self._main)
        return main, main.update(bytes(64))[:32]  # block 0 gives the Poly1305 key; the payload starts at block 1

    def encrypt(self, iv: bytes | None, data: bytes, aad: bytes) -> bytes:
        wire_length = self.length(aad)
        main, poly_key = self._keyed()
        sealed = main.update(data)
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        self.wire_length = wire_length
        return sealed + Poly1305.generate_tag(poly_key, wire_length + sealed)

    def decrypt(self, iv: bytes | None, data: bytes, aad: bytes) -> bytes:
        main, poly_key = self._keyed()
        sealed, tag = data[:-16], data[-16:]
        try:
            Poly1305.verify_tag(poly_key, self.length(aad) + sealed, tag)
        except InvalidSignature:
            raise paramiko.SSHException("Mismatched MAC") from None
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return main.update(sealed)


class _Packetizer(paramiko.packet.Packetizer):
    """paramiko's packetizer, plus the encrypted packet length that chacha20-poly1305 adds to the AEAD path."""

    _chacha_out: _ChaCha20Poly1305 | None = None
    _chacha_in: _ChaCha20Poly1305 | None = None

    def set_outbound_cipher(self, block_engine: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(block_engine, _ChaCha20Poly1305):
            block_engine.seq = vars(self)["_Packetizer__sequence_number_out"]
            self._chacha_out = block_engine
        else:
            self._chacha_out = None
        super().set_outbound_cipher(block_engine, *args, **kwargs)

    def set_inbound_cipher(self, block_engine: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(block_engine, _ChaCha20Poly1305):
            block_engine.seq = vars(self)["_Packetizer__sequence_number_in"]
            self._chacha_in = block_engine
        else:
            self._chacha_in = None
        super().set_inbound_cipher(block_engine, *args, **kwargs)

    def reset_seqno_in(self) -> None:  # strict kex: paramiko resets this after setting the inbound cipher
        super().reset_seqno_in()
        if self._chacha_in is not None:
            self._chacha_in.seq = 0

    def reset_seqno_out(self) -> None:
        super().reset_seqno_out()
        if self._chacha_out is not None:
            self._chacha_out.seq = 0

    def write_all(self, out: Any) -> None:
        eng = self._chacha_out
        if eng is not None and eng.wire_length is not None:
            # A packet sealed just now, under the same write lock: paramiko's AEAD path put its length in clear.
            out, eng.wire_length = eng.wire_length + bytes(out)[4:], None
        super().write_all(out)

    def read_all(self, n: int, check_rekey: bool = False) -> bytes:
        data = super().read_all(n, check_rekey)
        eng = self._chacha_in
        if check_rekey and eng is not None:
            # The first block of a packet (paramiko reads it with check_rekey): decrypt its length in place.
            data = eng.length(data[:4]) + data[4:]
            (size,) = struct.unpack(">I", data[:4])
            if size < 8 or size % 8 or size > 256 * 1024:
                raise paramiko.SSHException("Invalid packet blocking")
        return data


class _Transport(paramiko.Transport):
    """paramiko's transport offering chacha20-poly1305@openssh.com first; every other algorithm as paramiko has it."""

    _preferred_ciphers = (_CHACHA, *vars(paramiko.Transport)["_preferred_ciphers"])
    _cipher_info: ClassVar[dict[str, dict[str, Any]]] = {
        **vars(paramiko.Transport)["_cipher_info"],
        _CHACHA: {"class": _ChaCha20Poly1305, "block-size": 8, "iv-size": 12, "key-size": 64, "is_aead": True},
    }


def _new_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    return _Transport(sock, packetizer_class=_Packetizer, **kwargs)


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
                transport_factory=_new_transport,
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

    @property
    def cipher(self) -> str | None:
        """The cipher negotiated for data sent to the target (None before connecting)."""
        t = self._client.get_transport() if self._client is not None else None
        return (t.local_cipher or None) if t is not None else None

    @contextlib.contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        """The one place where paramiko/socket errors become edgepack errors."""
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
                # One SSH packet's worth per send (paramiko caps a packet's data at the peer's maximum - 64):
                # Channel.sendall would re-slice the rest of the chunk after every packet (quadratic copying).
                piece = max(1024, chan.out_max_packet_size - 64)
                while chunk := src.read(_CHUNK):
                    if chan.exit_status_ready():
                        break  # cat died (disk full): stop sending, report its error below
                    view = memoryview(chunk)
                    while view:
                        n = chan.send(view[:piece].tobytes())
                        if n <= 0:
                            raise OSError("Socket is closed")  # the channel ended under us (sendall would spin)
                        view = view[n:]
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
