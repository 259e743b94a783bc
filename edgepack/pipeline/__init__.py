"""The packaging pipeline: orders passes from the profile, measures, writes the bundle."""

from edgepack.pipeline.package import PackageRequest, PackageResult, package

__all__ = ["PackageRequest", "PackageResult", "package"]
