"""The built-in ``local`` target: this machine, no SSH, the same commands and install layout."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from edgepack.errors import CommandFailed, TransferError
from edgepack.transports.base import Held, ProgressFn, RemoteStat, Result

_CHUNK = 1 << 20


class _LocalHeld:
    def __init__(self, command: str) -> None:
        # stdin stays open: the command (e.g. ``flock … cat``) lives until we close it or this process dies.
        self._proc = subprocess.Popen(
            ["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def readline(self, timeout: float) -> str:
        import selectors

        assert self._proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self._proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        if not ready:
            return ""
        return self._proc.stdout.readline()

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for f in (self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()


class LocalTransport:
    """Runs commands with ``sh -c`` and copies files on this machine."""

    def __init__(self, name: str = "local") -> None:
        self.name = name
        self.bytes_out = 0

    def run(self, command: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        self.bytes_out += len(command) + len(stdin or b"")
        try:
            p = subprocess.run(
                ["sh", "-c", command], input=stdin if stdin is not None else b"", capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            raise CommandFailed(
                f"{self.name}: command did not finish within {timeout:g} s: {command[:80]}",
                "check the target or raise the timeout",
                exit_status=124,
            ) from e
        return Result(command, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), p.returncode)

    def put(
        self, local: Path, remote: str, *, offset: int = 0, progress: ProgressFn | None = None, timeout: float = 60.0
    ) -> int:
        total = local.stat().st_size
        sent = 0
        try:
            mode = "r+b" if offset and os.path.exists(remote) else "wb"
            with local.open("rb") as src, open(remote, mode) as dst:
                src.seek(offset)
                dst.seek(offset)
                dst.truncate()
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(f"{self.name}: upload", offset + sent, total)
        except OSError as e:
            raise TransferError(
                f"{self.name}: cannot write {remote}: {e.strerror or e}", "free space under the install root and retry"
            ) from e
        self.bytes_out += sent
        return sent

    def get(self, remote: str, local: Path, *, timeout: float = 60.0) -> None:
        try:
            shutil.copyfile(remote, local)
        except OSError as e:
            raise TransferError(f"{self.name}: cannot read {remote}: {e.strerror or e}", "check the path") from e

    def stat(self, remote: str, *, timeout: float = 60.0) -> RemoteStat | None:
        try:
            st = os.stat(remote)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise TransferError(f"{self.name}: cannot stat {remote}: {e.strerror or e}", "check the path") from e
        import stat as stat_mod

        return RemoteStat(st.st_size, stat_mod.S_ISDIR(st.st_mode), st.st_mtime)

    def hold(self, command: str) -> Held:
        self.bytes_out += len(command)
        return _LocalHeld(command)

    def close(self) -> None:
        pass
