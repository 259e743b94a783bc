"""Driving ``install.sh`` on the target: the device does the installing, we only call it.

``install`` runs the bundle's own ``install.sh`` (the member shipped with it); ``status``, ``rollback``,
``activate`` pipe this package's copy into ``sh -s`` so they work on boards where nothing is installed yet.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from edgepack.errors import CommandFailed, ConnectError, TransportError
from edgepack.transports.base import Held, Result, Transport, quote

INSTALL_SH = Path(__file__).with_name("install.sh")
DEPLOY_LOCK_WAIT = 120.0


@cache
def script() -> bytes:
    return INSTALL_SH.read_bytes()


def _ours(transport: Transport, root: str, args: str, *, timeout: float) -> Result:
    return transport.run(f"sh -s -- {args} --root {quote(root)}", timeout=timeout, stdin=script())


def status(transport: Transport, root: str, *, expect: str | None = None, timeout: float = 300.0) -> dict[str, Any]:
    """``healthy``: the current release verifies; with ``expect``, hashed only when current is that id (else None)."""
    args = f"--status --expect {quote(expect)}" if expect else "--status"
    res = _ours(transport, root, args, timeout=timeout).check(transport.name, "reading the install state")
    doc: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return doc


def verify(transport: Transport, root: str, bundle_id: str, *, timeout: float = 300.0) -> bool:
    return _ours(transport, root, f"--verify {quote(bundle_id)}", timeout=timeout).ok


def activate(transport: Transport, root: str, bundle_id: str, *, keep: int, timeout: float = 300.0) -> Result:
    return _ours(transport, root, f"--activate {quote(bundle_id)} --keep {keep}", timeout=timeout)


def rollback(transport: Transport, root: str, *, timeout: float = 300.0) -> Result:
    return _ours(transport, root, "--rollback", timeout=timeout).check(transport.name, "rollback")


def install(
    transport: Transport, root: str, remote_bundle: str, bundle_id: str, *, keep: int, timeout: float = 900.0
) -> Result:
    """Run the bundle's own install.sh on the uploaded file."""
    runner = f"{root}/incoming/.install-{bundle_id}.sh"
    cmd = (
        f"tar -xOf {quote(remote_bundle)} install.sh > {quote(runner)} && "
        f"sh {quote(runner)} {quote(remote_bundle)} --root {quote(root)} --keep {keep}; "
        f"rc=$?; rm -f {quote(runner)}; exit $rc"
    )
    return transport.run(cmd, timeout=timeout).check(transport.name, "install.sh")


def cleanup_incoming(transport: Transport, root: str) -> None:
    """Called under the deploy lock after a good install: no temp file outlives the next successful deploy."""
    inc = quote(f"{root}/incoming")
    transport.run(f"rm -f {inc}/*.edgepack {inc}/*.edgepack.partial {inc}/.install-*.sh", timeout=60)


class DeployLock:
    """Serializes deploys to one board, uploads included: ``flock`` held by a command tied to our session.

    The holder is ``flock … cat``: when we close it, die, or the link drops (sshd closes the session), ``cat``
    sees EOF and the kernel drops the lock. Boards without ``flock`` rely on install.sh's own lock.
    """

    def __init__(self, transport: Transport, root: str, *, wait: float = DEPLOY_LOCK_WAIT) -> None:
        self._transport = transport
        self._root = root
        self._wait = wait
        self._held: Held | None = None

    def __enter__(self) -> DeployLock:
        lock = quote(f"{self._root}/.deploy.lock")
        cmd = (
            f"mkdir -p {quote(self._root)}/incoming && if command -v flock >/dev/null 2>&1; then "
            f"exec flock -w {int(self._wait)} {lock} sh -c 'echo locked; exec cat >/dev/null'; "
            f"else echo locked; exec cat >/dev/null; fi"
        )
        self._held = self._transport.hold(cmd)
        line = self._held.readline(self._wait + 15)
        if line.strip() != "locked":
            self._held.close()
            self._held = None
            raise TransportError(
                f"{self._transport.name}: another deploy to this target is still running "
                f"(waited {self._wait:g} s for {self._root}/.deploy.lock)",
                "wait for it to finish and deploy again",
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._held is not None:
            try:
                self._held.close()
            except (ConnectError, CommandFailed):
                pass  # the link is gone: the board drops the lock with the session
            self._held = None
