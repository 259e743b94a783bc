"""Moving the bundle: skip what the board has, resume what it half has, verify what it got.

Uploads go to ``ROOT/incoming/<id>.edgepack.partial`` (a stable name, so a killed or cut upload resumes from the
bytes already there) and become ``<id>.edgepack`` only after the board's own ``sha256sum`` matches ours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import BundleError, TransferError, VerifyFailed
from edgepack.hashing import sha256_file
from edgepack.transports.base import ProgressFn, Transport, quote


@dataclass(frozen=True)
class LocalBundle:
    """A bundle checked once on this machine, ready to send to any number of targets."""

    path: Path
    manifest: dict[str, Any]
    sha256: str
    size: int

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @property
    def extracted_size(self) -> int:
        files: dict[str, Any] = self.manifest.get("files", {})
        return sum(int(f["size"]) for f in files.values())


def prepare(path: Path) -> LocalBundle:
    """Verify every member here first: a damaged bundle is refused before any byte moves."""
    from edgepack.bundle import read_manifest, verify

    path = Path(path)
    manifest = read_manifest(path)
    if "id" not in manifest:
        raise BundleError(f"{path}: manifest.json has no id", "package it again")
    report = verify(path)
    if not report.ok:
        raise VerifyFailed(f"{path}: {report.problems[0]}", "package it again; nothing was sent")
    return LocalBundle(path, manifest, sha256_file(path), path.stat().st_size)


def remote_sha256(transport: Transport, remote: str, *, timeout: float) -> str | None:
    res = transport.run(f"sha256sum {quote(remote)} 2>/dev/null", timeout=timeout)
    word = res.stdout.split()[0] if res.ok and res.stdout.split() else ""
    return word if len(word) == 64 else None


def upload(
    transport: Transport,
    bundle: LocalBundle,
    incoming: str,
    *,
    progress: ProgressFn | None = None,
    timeout: float = 600.0,
) -> tuple[str, int, float]:
    """Put the bundle at ``incoming/<id>.edgepack`` on the target.

    Returns (remote path, bytes sent, seconds spent moving bytes — the upload phase without the hashing).
    """
    final = f"{incoming}/{bundle.id}.edgepack"
    partial = final + ".partial"
    hash_timeout = max(60.0, bundle.size / 2e6)  # sha256 on an emulated or slow board: ≥2 MB/s
    done = transport.stat(final)
    if (
        done is not None
        and done.size == bundle.size
        and remote_sha256(transport, final, timeout=hash_timeout) == bundle.sha256
    ):
        return final, 0, 0.0
    sent = 0
    moving = 0.0
    for attempt in (1, 2):
        have = transport.stat(partial)
        offset = have.size if have is not None and have.size <= bundle.size and attempt == 1 else 0
        t0 = time.monotonic()
        sent += transport.put(bundle.path, partial, offset=offset, progress=progress, timeout=timeout)
        moving += time.monotonic() - t0
        got = remote_sha256(transport, partial, timeout=hash_timeout)
        if got == bundle.sha256:
            transport.run(f"mv -f {quote(partial)} {quote(final)}", timeout=60).check(
                transport.name, "renaming the upload"
            )
            return final, sent, moving
        if offset == 0:
            break
        # The resumed prefix was not ours (or was damaged): start over once from byte 0.
    transport.run(f"rm -f {quote(partial)}", timeout=60)
    raise TransferError(
        f"{transport.name}: the uploaded bundle's sha256 does not match ({bundle.path.name})",
        "check the board's storage and the link, then deploy again",
    )
