"""Example hardware-in-the-loop test (see README): package for the target's profile, deploy, check on the device.

    pytest tests/test_hil_example.py --edgepack-target demo-pi5 [--edgepack-target kitchen-pi ...]

Without --edgepack-target these tests are skipped with a reason.
"""

from __future__ import annotations

from pathlib import Path

from edgepack.hil.handle import TargetHandle
from edgepack.pipeline import PackageRequest, package


def _bundle_for(target: TargetHandle, source: Path, out: Path) -> Path:
    profile = target.target.profile or "generic-x86_64"
    bundle = out / f"{source.stem}-{profile}.edgepack"
    package(PackageRequest(source=source, profile=profile, output=bundle))
    return bundle


def test_minilm_passes_its_gates_on_the_device(edgepack_target: TargetHandle, minilm_dir: Path, tmp_path: Path) -> None:
    bundle = _bundle_for(edgepack_target, minilm_dir, tmp_path)
    deployed = edgepack_target.deploy(bundle)
    assert deployed.status in ("installed", "unchanged")
    result = edgepack_target.check()
    assert result.bundle_id == deployed.bundle_id
    assert result.passed, f"failed gates: {result.failed_gates}"
    assert result.metrics["cosine_mean"] >= 0.99


def test_silero_vad_passes_its_gate_on_the_device(
    edgepack_target: TargetHandle, silero_onnx: Path, tmp_path: Path
) -> None:
    arch = edgepack_target.run("uname -m").stdout.strip()
    profile = "rpi-zero-2w" if arch == "aarch64" else "generic-x86_64"
    bundle = tmp_path / "silero.edgepack"
    package(PackageRequest(source=silero_onnx, profile=profile, output=bundle))
    result = edgepack_target.check(bundle)
    assert result.passed, f"failed gates: {result.failed_gates}"
    assert result.metrics["max_abs_error"] <= 1e-4
