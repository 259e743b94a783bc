"""Bundles for the deploy tests: real bundles from the real writer, and deliberately broken ones."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from edgepack.bundle import Member, write_bundle
from edgepack.bundle.writer import BUNDLE_FORMAT, bundle_id

ROOT = Path(__file__).resolve().parent.parent
INSTALL_SH = ROOT / "edgepack" / "deploy" / "install.sh"


def base_manifest(profile: str, tag: str) -> dict[str, Any]:
    from edgepack import profiles

    return {
        "format": BUNDLE_FORMAT,
        "profile": profiles.load(profile).model_dump(mode="json"),
        "model": {"source": f"test:{tag}", "task": "generic"},
        "runtime": {"onnxruntime": "1.32.0"},
    }


def make_bundle(
    out: Path,
    *,
    profile: str = "generic-x86_64",
    tag: str = "a",
    size: int = 64 * 1024,
    extra: list[Member] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """A bundle with install.sh, a small JSON member and ``size`` bytes of incompressible model data."""
    blob = out.with_suffix(".model.bin")
    if not blob.exists() or blob.stat().st_size != size:
        blob.write_bytes(hashlib.sha256(tag.encode()).digest() + os.urandom(max(0, size - 32)))
    members = [
        Member("install.sh", source=INSTALL_SH, executable=True),
        Member("model/model.onnx", source=blob),
        Member("model/1_Pooling/config.json", data=json.dumps({"tag": tag}).encode()),
        *(extra or []),
    ]
    manifest = write_bundle(out, base_manifest(profile, tag), members)
    return out, manifest


def tamper(bundle: Path, member: str, out: Path) -> Path:
    """Flip one byte inside ``member``'s data; the manifest (and its hash list) stays as it was."""
    data = bytearray(bundle.read_bytes())
    with tarfile.open(bundle) as tar:
        info = tar.getmember(member)
        data[info.offset_data] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def truncate(bundle: Path, out: Path, keep: float = 0.6) -> Path:
    data = bundle.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def evil_bundle(out: Path, kind: str) -> Path:
    """A bundle whose manifest is self-consistent but whose tar carries a member that escapes the release.

    kind: ``dotdot`` (``../escaped``), ``absolute`` (``/tmp/…``), ``symlink`` (a link to /etc), ``hardlink``.
    The writer refuses such paths, so the tar is put together by hand, as an attacker would.
    """
    payload = b"escaped\n"
    name = {
        "dotdot": "model/../../escaped",
        "absolute": f"{out.parent}/escaped-abs",
        "symlink": "model/etc",
        "hardlink": "model/passwd",
    }[kind]
    files = {"install.sh": INSTALL_SH.read_bytes(), "model/model.onnx": b"onnx"}
    listed = {p: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for p, d in files.items()}
    listed[name] = {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    manifest: dict[str, Any] = {**base_manifest("generic-x86_64", kind), "files": listed}
    manifest["id"] = bundle_id(manifest)
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:

        def add(n: str, d: bytes) -> None:
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            tar.addfile(ti, io.BytesIO(d))

        add("manifest.json", raw)
        for p, d in sorted(files.items()):
            add(p, d)
        if kind in ("dotdot", "absolute"):
            add(name, payload)
        else:
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            ti.linkname = "/etc" if kind == "symlink" else "/etc/passwd"
            tar.addfile(ti)
    return out
