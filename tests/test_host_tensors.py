"""Every tensor type the host moves (float32, float16, int64, int32, int8, uint8, bool), `.ort` models, profile
session options, through `run` (.npy) and `serve` (JSON) on small real ONNX graphs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgepack.paths import cache_dir
from edgepack.runtime.host import host_command, run_host
from tests.test_host_support import host_built_fixture, minilm_int8_x86_fixture, x86_ort  # noqa: F401

pytestmark = pytest.mark.usefixtures("host_built")

DTYPES = ["float32", "float16", "int64", "int32", "int8", "uint8", "bool"]


def all_types_model(path: Path) -> None:
    """y_T = x_T + x_T (Or for bool): every dtype in, computed, and out."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inputs, outputs = [], [], []
    for name in DTYPES:
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(name))
        inputs.append(helper.make_tensor_value_info(f"x_{name}", elem, ["n", 3]))
        outputs.append(helper.make_tensor_value_info(f"y_{name}", elem, ["n", 3]))
        op = "Or" if name == "bool" else "Add"
        nodes.append(helper.make_node(op, [f"x_{name}", f"x_{name}"], [f"y_{name}"]))
    graph = helper.make_graph(nodes, "all_types", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    assert TensorProto.BOOL  # the bool case is part of the table above


def make_bundle(d: Path, runtime: dict[str, Any] | None = None) -> Path:
    (d / "model").mkdir(parents=True)
    all_types_model(d / "model" / "model.onnx")
    manifest = {
        "format": "edgepack-bundle/1",
        "id": "test-all-types",
        "profile": {"name": "t", "runtime": {"threads": 1, **(runtime or {})}, "gates": {}},
        "runtime": {"onnxruntime": "1.32.0", "arch": "x86_64", "library": None},
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def sample(dtype: str, rng: np.random.Generator) -> np.ndarray:
    if dtype == "bool":
        return rng.random((2, 3)) < 0.5
    if dtype.startswith("float"):
        return rng.standard_normal((2, 3)).astype(dtype)
    return rng.integers(-50 if dtype.startswith("int") else 0, 50, (2, 3)).astype(dtype)


def expected(x: np.ndarray) -> np.ndarray:
    return np.asarray(x | x if x.dtype == np.bool_ else x + x)


def test_run_every_dtype_through_npy(tmp_path: Path) -> None:
    b = make_bundle(tmp_path / "b")
    rng = np.random.default_rng(0)
    args = ["run", "--bundle-dir", str(b), "--output-dir", str(tmp_path / "out"), "--ort-lib", str(x86_ort())]
    xs = {}
    for dt in DTYPES:
        xs[dt] = sample(dt, rng)
        np.save(tmp_path / f"{dt}.npy", xs[dt])
        args += ["--input", f"x_{dt}={tmp_path / f'{dt}.npy'}"]
    r = run_host(args)
    assert r.returncode == 0, r.stderr
    for dt in DTYPES:
        got = np.load(tmp_path / "out" / f"y_{dt}.npy")
        assert got.dtype == np.dtype(dt) and got.shape == (2, 3)
        assert np.array_equal(got, expected(xs[dt])), dt


def test_serve_every_dtype_through_json_and_unknown_provider_is_skipped(tmp_path: Path) -> None:
    b = make_bundle(tmp_path / "b", {"execution_providers": ["NoSuchExecutionProvider", "CPUExecutionProvider"]})
    proc = subprocess.Popen(
        host_command(["serve", "--bundle-dir", str(b), "--ort-lib", str(x86_ort())]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rng = np.random.default_rng(1)
    xs = {dt: sample(dt, rng) for dt in DTYPES}
    req = {
        "id": 1,
        "op": "run",
        "inputs": {f"x_{dt}": {"dtype": dt, "shape": [2, 3], "data": x.ravel().tolist()} for dt, x in xs.items()},
    }
    out, err = proc.communicate(json.dumps(req) + "\n" + json.dumps({"op": "info"}) + "\n", timeout=120)
    assert proc.returncode == 0, err
    resp, info = (json.loads(line) for line in out.splitlines())
    assert resp["ok"], resp
    for dt in DTYPES:
        o = resp["outputs"][f"y_{dt}"]
        assert o["dtype"] == dt and o["shape"] == [2, 3]
        got = np.asarray(o["data"], dtype=dt).reshape(2, 3)
        if dt == "float16":
            assert np.array_equal(got, expected(xs[dt]))  # float16 → float32 → JSON → float16 is exact
        else:
            assert np.array_equal(got, expected(xs[dt])), dt
    assert info["execution_providers"] == ["CPUExecutionProvider"]
    assert "NoSuchExecutionProvider" in err and "skipped" in err


def ort_format(bundle: Path) -> Path:
    """The bundle's model converted to ORT format, cached by bundle id (the conversion takes a minute here)."""
    import sys

    manifest = json.loads((bundle / "manifest.json").read_text())
    work = cache_dir() / "test-models" / "ort-format" / str(manifest["id"])
    done = work / "model.ort"
    if not done.is_file():
        work.mkdir(parents=True, exist_ok=True)
        src = work / "model.onnx"
        if not src.exists():
            src.symlink_to(bundle / "model" / "model.onnx")
        r = subprocess.run(
            [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(src), "--output_dir", str(work)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr
        assert done.is_file(), sorted(p.name for p in work.iterdir())
    return done


def test_ort_format_model_runs(minilm_int8_x86: Path, tmp_path: Path) -> None:
    """A `.ort` model (what minimal builds load) gives the same outputs as its `.onnx`."""
    import onnxruntime as ort

    ort_file = ort_format(minilm_int8_x86)
    b = tmp_path / "b"
    (b / "model").mkdir(parents=True)
    (b / "manifest.json").symlink_to(minilm_int8_x86 / "manifest.json")
    (b / "runtime").symlink_to(minilm_int8_x86 / "runtime")
    (b / "model" / "model.ort").symlink_to(ort_file)
    index = json.loads((minilm_int8_x86 / "reference" / "index.json").read_text())
    args = ["run", "--bundle-dir", str(b), "--output-dir", str(tmp_path / "out")]
    feeds = {}
    for name, rel in index["samples"][0]["inputs"].items():
        args += ["--input", f"{name}={minilm_int8_x86 / 'reference' / rel}"]
        feeds[name] = np.load(minilm_int8_x86 / "reference" / rel)
    r2 = run_host(args)
    assert r2.returncode == 0, r2.stderr
    assert "model.ort" not in r2.stderr
    want = ort.InferenceSession(str(b / "model" / "model.ort")).run(["sentence_embedding"], feeds)[0]
    got = np.load(tmp_path / "out" / "sentence_embedding.npy")
    assert np.max(np.abs(got - want)) <= 1e-5
