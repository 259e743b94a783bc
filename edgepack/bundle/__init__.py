"""Bundles: one deterministic tar with manifest.json first, every member hashed."""

from edgepack.bundle.reader import VerifyReport, read_manifest, read_member, verify
from edgepack.bundle.writer import BUNDLE_FORMAT, Member, write_bundle

__all__ = ["BUNDLE_FORMAT", "Member", "VerifyReport", "read_manifest", "read_member", "verify", "write_bundle"]
