"""The cache of built minimal libraries, keyed by (ORT version, source, arch, operator config hash, build flags).

An entry is a folder ``cache_dir()/ort-build/lib/<key>/`` holding the library, the libraries it needs at run time,
the operator config it was built from and ``entry.json`` (what it is, every file's sha256, how it was verified).
Entries are only ever created by renaming a finished, verified folder into place, so a reader sees a whole entry
or none; a file that no longer matches its recorded sha256 is reported, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import BuildError
from edgepack.hashing import sha256_file
from edgepack.paths import cache_dir

ENTRY_FILE = "entry.json"
ENTRY_FORMAT = "edgepack-minimal-ort/1"


def lib_root() -> Path:
    return cache_dir() / "ort-build" / "lib"


def normalized_config(text: str) -> str:
    """A required-operators config without comments, blank lines or line order, so equal op sets hash equal."""
    lines = sorted({ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")})
    return "\n".join(lines) + "\n"


def config_hash(config: Path) -> str:
    return hashlib.sha256(normalized_config(config.read_text()).encode()).hexdigest()


def build_key(*, ort_version: str, source_id: str, arch: str, config_sha256: str, flags: list[str]) -> str:
    doc = {"ort": ort_version, "source": source_id, "arch": arch, "config": config_sha256, "flags": flags}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Entry:
    """A published, checked cache entry."""

    dir: Path
    doc: dict[str, Any]

    @property
    def library(self) -> Path:
        return self.dir / str(self.doc["library"])

    @property
    def extra_libs(self) -> list[Path]:
        return [self.dir / str(n) for n in self.doc["extra_libs"]]

    @property
    def config(self) -> Path:
        return self.dir / "required_operators.config"


def lookup(key: str) -> Entry | None:
    """The entry for ``key`` after checking every file's sha256, or None when there is none.

    A corrupted entry raises: it is the user's cache, so we say what is wrong instead of deleting it behind their back.
    """
    d = lib_root() / key
    meta = d / ENTRY_FILE
    if not meta.is_file():
        return None
    try:
        doc: dict[str, Any] = json.loads(meta.read_text())
        files: dict[str, dict[str, Any]] = doc["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BuildError(f"cached minimal ORT {d} has an unreadable {ENTRY_FILE} ({e})", _delete_fix(d)) from e
    for name, rec in files.items():
        p = d / name
        if not p.is_file():
            raise BuildError(f"cached minimal ORT {d} lacks {name}", _delete_fix(d))
        got = sha256_file(p)
        if got != rec["sha256"]:
            raise BuildError(
                f"cached minimal ORT {p} is corrupted (sha256 {got[:12]}…, recorded {str(rec['sha256'])[:12]}…)",
                _delete_fix(d),
            )
    return Entry(d, doc)


def _delete_fix(d: Path) -> str:
    return f"delete {d} (or run again with --rebuild) to build it anew"


def publish(staging: Path, key: str, doc: dict[str, Any]) -> Entry:
    """Move a finished, verified ``staging`` folder into the cache as entry ``key`` (atomic rename)."""
    files = {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(staging.iterdir())
        if p.is_file() and p.name != ENTRY_FILE
    }
    full = {"format": ENTRY_FORMAT, "key": key, **doc, "files": files}
    tmp = staging / (ENTRY_FILE + ".tmp")
    tmp.write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, staging / ENTRY_FILE)
    dest = lib_root() / key
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        # Only reached with --rebuild or after a concurrent build published the same key: keep one whole entry.
        old = dest.with_name(dest.name + f".old-{os.getpid()}")
        dest.rename(old)
        staging.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(dest)
    return Entry(dest, full)


def remove(key: str) -> None:
    d = lib_root() / key
    if d.exists():
        gone = d.with_name(d.name + f".gone-{os.getpid()}")
        d.rename(gone)  # rename first so no reader sees a half-deleted entry
        shutil.rmtree(gone, ignore_errors=True)


def entries() -> list[Entry]:
    """Every published entry (unchecked; use lookup() before trusting one)."""
    out = []
    root = lib_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            meta = d / ENTRY_FILE
            if meta.is_file():
                try:
                    out.append(Entry(d, json.loads(meta.read_text())))
                except json.JSONDecodeError:
                    continue  # lookup() reports it when that key is asked for
    return out
