"""Writing a bundle: sorted members, mtime 0, uid/gid 0, modes 0644/0755, temp file + rename.

The bundle id is the sha256 of the canonical JSON of the manifest without ``id`` (which covers every
member's hash), so the same inputs give the same id and the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import BundleError
from edgepack.hashing import sha256_file

BUNDLE_FORMAT = "edgepack-bundle/1"


@dataclass(frozen=True)
class Member:
    """One file of the bundle: either bytes in memory or a file on disk."""

    path: str
    source: Path | None = None
    data: bytes | None = None
    executable: bool = False

    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.source is not None
        return self.source.stat().st_size

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the content, computed once (the packager needs it for the cache key and the manifest)."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        assert self.source is not None
        return sha256_file(self.source)

    def sha256(self) -> str:
        return self.digest


def _check_path(path: str) -> None:
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "" in parts or path == "manifest.json":
        raise BundleError(f"invalid bundle member path '{path}'", "use a relative path without '..'")


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def bundle_id(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "id"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _tarinfo(name: str, size: int, executable: bool) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = 0o755 if executable else 0o644
    ti.type = tarfile.REGTYPE
    return ti


def write_bundle(output: Path, manifest: dict[str, Any], members: list[Member]) -> dict[str, Any]:
    """Fill ``files`` and ``id`` into ``manifest`` and write the bundle atomically. Returns the final manifest."""
    seen: set[str] = set()
    for m in members:
        _check_path(m.path)
        if m.path in seen:
            raise BundleError(f"duplicate bundle member '{m.path}'", "report this as a bug")
        seen.add(m.path)
    ordered = sorted(members, key=lambda m: m.path)
    manifest = dict(manifest)
    manifest["files"] = {m.path: {"sha256": m.sha256(), "size": m.size()} for m in ordered}
    manifest.pop("id", None)
    manifest["format"] = BUNDLE_FORMAT
    manifest["id"] = bundle_id(manifest)
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"

    out_dir = output.resolve().parent
    if not out_dir.is_dir():
        raise BundleError(f"output folder {out_dir} does not exist", "create it or choose another -o path")
    if not os.access(out_dir, os.W_OK):
        raise BundleError(f"output folder {out_dir} is not writable", "choose a writable -o path")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=out_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            tar.addfile(_tarinfo("manifest.json", len(manifest_bytes), False), io.BytesIO(manifest_bytes))
            for m in ordered:
                ti = _tarinfo(m.path, m.size(), m.executable)
                if m.data is not None:
                    tar.addfile(ti, io.BytesIO(m.data))
                else:
                    assert m.source is not None
                    with m.source.open("rb") as f:
                        tar.addfile(ti, f)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        tmp.chmod(0o644)
        os.replace(tmp, output)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BundleError(
            f"cannot write bundle {output}: {e.strerror or e}", "free disk space or choose another -o path"
        ) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest
