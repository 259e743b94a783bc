"""The transport protocol: how commands run and bytes move on a target, whatever the link.

Policy (preflight, upload, install, rollback) is written once against :class:`Transport`; ``ssh.py`` and
``local.py`` implement it. Errors from the link are translated into ``edgepack.errors`` types inside each
transport, so nothing above this layer sees ``paramiko`` or ``OSError``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from edgepack.errors import CommandFailed

#: ``progress(step, done, total)`` — the core reports bytes and steps through this; only the CLI draws it.
ProgressFn = Callable[[str, float, "float | None"], None]


@dataclass(frozen=True)
class Result:
    """What a command left behind: its output and exit status."""

    command: str
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self, target: str, what: str) -> Result:
        """Raise :class:`CommandFailed` (carrying this result) unless the command succeeded."""
        if self.exit_code != 0:
            last = (self.stderr.strip() or self.stdout.strip()).splitlines()
            detail = last[-1] if last else f"exit status {self.exit_code}"
            raise CommandFailed(
                f"{target}: {what} failed: {detail}",
                "see the message above; fix the target and retry",
                exit_status=self.exit_code,
                stdout=self.stdout,
                stderr=self.stderr,
            )
        return self


@dataclass(frozen=True)
class RemoteStat:
    size: int
    is_dir: bool
    mtime: float


@runtime_checkable
class Held(Protocol):
    """A long-running command whose life is tied to ours (used to hold a lock on the target)."""

    def readline(self, timeout: float) -> str: ...

    def close(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Run commands and move files on one target. Every call is bounded by a timeout."""

    name: str
    #: bytes we handed to the target so far (commands, stdin, file data): what "sent" means for skip-unchanged.
    bytes_out: int

    def run(self, command: str, *, timeout: float = 60.0, stdin: bytes | None = None) -> Result:
        """Run ``command`` with ``sh -c`` semantics; never raises for a non-zero exit (see ``Result.check``)."""
        ...

    def put(
        self, local: Path, remote: str, *, offset: int = 0, progress: ProgressFn | None = None, timeout: float = 60.0
    ) -> int:
        """Copy ``local`` to ``remote`` starting at byte ``offset`` (resume); returns the bytes sent."""
        ...

    def get(self, remote: str, local: Path, *, timeout: float = 60.0) -> None: ...

    def stat(self, remote: str, *, timeout: float = 60.0) -> RemoteStat | None:
        """``None`` when the path does not exist."""
        ...

    def hold(self, command: str) -> Held:
        """Start ``command`` and keep it running (stdin open) until ``close()`` or until we die."""
        ...

    def close(self) -> None: ...


def quote(s: str) -> str:
    return shlex.quote(s)
