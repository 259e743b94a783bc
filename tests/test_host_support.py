"""Shared pieces of the C# host tests: the built host, real bundles from `edgepack package` (cached), ORT paths.

Named test_host_* so it sits with the host tests it serves; it holds no tests itself.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

import pytest

from edgepack.paths import cache_dir, project_root
from edgepack.runtime.host import host_exe
from tests.conftest import run_cli


def x86_ort() -> Path:
    import onnxruntime

    lib = Path(onnxruntime.__file__).parent / "capi" / f"libonnxruntime.so.{onnxruntime.__version__}"
    assert lib.is_file(), lib
    return lib


def aarch64_ort() -> Path:
    from edgepack.runtime.wheel import fetch_library

    return fetch_library("1.32.0", "aarch64")


@pytest.fixture(scope="session", name="host_built")
def host_built_fixture() -> Path:
    return host_exe()  # ConfigError "run 'make host'" when missing: an error, never a silent skip


def _pipeline_key() -> str:
    """Cached bundles are rebuilt when the packaging code or the host exe (copied into host/) changes."""
    h = hashlib.sha256(host_exe().read_bytes())
    for folder in ("pipeline", "passes", "checks", "bundle"):
        for f in sorted((project_root() / "edgepack" / folder).glob("*.py")):
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def packaged_bundle(source: Path, profile: str, quant: str) -> Path:
    """A real bundle made by `edgepack package`, extracted as install.sh would (releases/<id>/)."""
    root = cache_dir() / "test-models" / "host-bundles" / f"{source.name}-{profile}-{quant}-{_pipeline_key()}"
    done = root / ".complete"
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        out = root / "bundle.edgepack"
        r = run_cli(["package", str(source), "--profile", profile, "--quant", quant, "-o", str(out)], timeout=900)
        assert r.returncode == 0, r.stderr
        with tarfile.open(out) as tar:
            tar.extractall(root / "dir", filter="data")
        done.write_text("ok")
    return root / "dir"


@pytest.fixture(scope="session", name="minilm_int8_x86")
def minilm_int8_x86_fixture(minilm_dir: Path) -> Path:
    return packaged_bundle(minilm_dir, "generic-x86_64", "int8-dynamic")


@pytest.fixture(scope="session", name="minilm_fp32_x86")
def minilm_fp32_x86_fixture(minilm_dir: Path) -> Path:
    return packaged_bundle(minilm_dir, "generic-x86_64", "none")


@pytest.fixture(scope="session", name="minilm_int8_aarch64")
def minilm_int8_aarch64_fixture(minilm_dir: Path) -> Path:
    return packaged_bundle(minilm_dir, "generic-aarch64", "int8-dynamic")
