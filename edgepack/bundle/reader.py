"""Reading and verifying bundles."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import BundleError

_CHUNK = 1 << 20


def _open(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise BundleError(f"bundle {path} does not exist", "check the path")
    try:
        return tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as e:
        raise BundleError(
            f"{path} is not a bundle (not a tar file: {e})", "package it again with 'edgepack package'"
        ) from e


def read_manifest(path: Path) -> dict[str, Any]:
    with _open(path) as tar:
        first = tar.next()
        if first is None or first.name != "manifest.json":
            raise BundleError(f"{path}: manifest.json is not the first member", "package it again")
        f = tar.extractfile(first)
        assert f is not None
        try:
            doc: dict[str, Any] = json.loads(f.read())
        except json.JSONDecodeError as e:
            raise BundleError(f"{path}: manifest.json is not valid JSON ({e})", "package it again") from e
    return doc


def read_member(path: Path, member: str) -> bytes:
    with _open(path) as tar:
        try:
            info = tar.getmember(member)
        except KeyError as e:
            raise BundleError(f"{path} has no member '{member}'", "package it again") from e
        f = tar.extractfile(info)
        if f is None:
            raise BundleError(f"{path}: '{member}' is not a file", "package it again")
        return f.read()


@dataclass
class VerifyReport:
    bundle_id: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"bundle_id": self.bundle_id, "ok": self.ok, "checked": self.checked, "problems": self.problems}


def verify(path: Path) -> VerifyReport:
    """Check every member against the manifest's sha256/size, and the id against the manifest."""
    from edgepack.bundle.writer import bundle_id

    manifest = read_manifest(path)
    report = VerifyReport(bundle_id=str(manifest.get("id", "")))
    files: dict[str, Any] = manifest.get("files", {})
    if bundle_id(manifest) != manifest.get("id"):
        report.problems.append("manifest.json: id does not match the manifest's content")
    seen: set[str] = set()
    try:
        with _open(path) as tar:
            for info in tar:
                if info.name == "manifest.json":
                    continue
                if info.name not in files:
                    report.problems.append(f"{info.name}: member not listed in the manifest")
                    continue
                seen.add(info.name)
                f = tar.extractfile(info)
                if f is None:
                    report.problems.append(f"{info.name}: not a regular file")
                    continue
                h = hashlib.sha256()
                n = 0
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    n += len(chunk)
                want = files[info.name]
                if n != want["size"]:
                    report.problems.append(f"{info.name}: size {n} ≠ manifest {want['size']}")
                elif h.hexdigest() != want["sha256"]:
                    report.problems.append(f"{info.name}: sha256 mismatch (member was changed)")
                report.checked += 1
    except (tarfile.TarError, OSError, EOFError) as e:
        report.problems.append(f"bundle is truncated or corrupt ({e})")
    for missing in sorted(set(files) - seen):
        report.problems.append(f"{missing}: listed in the manifest but missing from the bundle")
    return report
