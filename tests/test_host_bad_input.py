"""Bad input to the C# host: one line naming what is wrong, exit 2, never only a stack trace."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgepack.runtime.host import run_host
from tests.test_host_run import replace_json, variant
from tests.test_host_support import aarch64_ort, host_built_fixture, minilm_int8_x86_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("host_built")


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("edgepack-host: error: ")
    return lines[0]


def no_runtime(d: Path) -> None:
    shutil.rmtree(d / "runtime")


def wrong_arch_runtime(d: Path) -> None:
    for lib in (d / "runtime").glob("libonnxruntime.so*"):
        lib.unlink()
    shutil.copy(aarch64_ort(), d / "runtime" / aarch64_ort().name)


def newer_ort(d: Path) -> None:
    replace_json(d / "manifest.json", lambda m: m["runtime"].update(onnxruntime="1.99.0"))


MISSING = "/no/such/libonnxruntime.so.1.32.0"
CASES: list[tuple[str, Callable[[Path], None], list[str], list[str]]] = [
    (
        "missing library",
        no_runtime,
        ["--ort-lib", "/no/such/libonnxruntime.so.1.32.0"],
        ["/no/such/libonnxruntime.so.1.32.0", "does not exist"],
    ),
    ("no library at all", no_runtime, [], ["runtime/", "--ort-lib"]),
    ("library for the wrong arch", wrong_arch_runtime, [], ["libonnxruntime.so.1.32.0", "aarch64", "x86_64"]),
    ("bundle for a newer ORT", newer_ort, [], ["1.99.0", "1.32.0"]),
]


@pytest.mark.parametrize(("name", "edit", "extra", "needles"), CASES, ids=[c[0] for c in CASES])
def test_runtime_problems(
    minilm_int8_x86: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    edit: Callable[[Path], None],
    extra: list[str],
    needles: list[str],
) -> None:
    b = variant(minilm_int8_x86, tmp_path / "b", edit)
    monkeypatch.delenv("EDGEPACK_ORT_LIB", raising=False)
    r = run_host(["check", "--bundle-dir", str(b), "--json", *extra])
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    for needle in needles:
        assert needle in line, line
    assert r.stdout == ""


def test_info_names_library_arch() -> None:
    r = run_host(["info", "--ort-lib", str(aarch64_ort())])
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "aarch64" in line and "x86_64" in line and str(aarch64_ort()) in line


def _sample_inputs(bundle: Path) -> dict[str, Path]:
    index = json.loads((bundle / "reference" / "index.json").read_text())
    return {k: bundle / "reference" / v for k, v in index["samples"][0]["inputs"].items()}


def _run(bundle: Path, inputs: dict[str, Path], out: Path) -> str:
    args = ["run", "--bundle-dir", str(bundle), "--output-dir", str(out)]
    for k, v in inputs.items():
        args += ["--input", f"{k}={v}"]
    r = run_host(args)
    assert r.returncode == 2, r.stderr
    return one_error_line(r.stderr)


def test_unknown_input_name(minilm_int8_x86: Path, tmp_path: Path) -> None:
    inputs = _sample_inputs(minilm_int8_x86)
    inputs["pixel_values"] = inputs["input_ids"]
    line = _run(minilm_int8_x86, inputs, tmp_path / "o")
    assert "pixel_values" in line and "input_ids" in line


def test_wrong_dtype(minilm_int8_x86: Path, tmp_path: Path) -> None:
    inputs = _sample_inputs(minilm_int8_x86)
    np.save(tmp_path / "ids32.npy", np.load(inputs["input_ids"]).astype(np.int32))
    inputs["input_ids"] = tmp_path / "ids32.npy"
    line = _run(minilm_int8_x86, inputs, tmp_path / "o")
    assert "input_ids" in line and "int32" in line and "int64" in line


def test_wrong_shape(minilm_int8_x86: Path, tmp_path: Path) -> None:
    inputs = _sample_inputs(minilm_int8_x86)
    ids = np.load(inputs["input_ids"])
    np.save(tmp_path / "ids3d.npy", ids.reshape(1, 1, -1))
    inputs["input_ids"] = tmp_path / "ids3d.npy"
    line = _run(minilm_int8_x86, inputs, tmp_path / "o")
    assert "input_ids" in line and "shape" in line


def test_npy_header_does_not_match_data(minilm_int8_x86: Path, tmp_path: Path) -> None:
    inputs = _sample_inputs(minilm_int8_x86)
    data = inputs["input_ids"].read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-8])
    inputs["input_ids"] = tmp_path / "cut.npy"
    line = _run(minilm_int8_x86, inputs, tmp_path / "o")
    assert "cut.npy" in line and "shape" in line


def test_not_a_bundle_and_bad_usage(tmp_path: Path) -> None:
    for args, needle in [
        (["check", "--bundle-dir", str(tmp_path)], "manifest.json"),
        (["run", "--bundle-dir", str(tmp_path)], "--output-dir"),
        (["frobnicate"], "unknown command"),
        (["check", "--bundle-dir"], "needs a value"),
        (["tokenize", "--tokenizer", str(tmp_path / "nope")], "does not exist"),
    ]:
        r = run_host(args)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in one_error_line(r.stderr)
