"""The optimize pass's weight set-aside around ORT's shape inference: which initializers lose their bytes for the
duration, and that every byte comes back (the byte-for-byte comparison with ORT's optimizer is in
test_quantize.py, on the real MiniLM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepack.passes.optimize import _weights_set_aside


def _model() -> onnx.ModelProto:
    big = np.arange(256 * 256, dtype=np.float32).reshape(256, 256)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"]),  # weight: only its shape matters to shape inference
        helper.make_node("Add", ["y", "b"], ["z"]),  # Add's constant inputs may be read as values: kept
        helper.make_node("MatMul", ["z", "shared"], ["u"]),
        helper.make_node("Mul", ["u", "shared"], ["v"]),  # a weight one value-reading node uses: kept
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256])],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", 256])],
        [
            numpy_helper.from_array(big, "w"),
            numpy_helper.from_array(big, "b"),
            numpy_helper.from_array(big, "shared"),
        ],
    )
    return helper.make_model(graph)


def test_only_weights_no_value_reader_uses_are_set_aside_and_all_come_back() -> None:
    model = _model()
    before = model.SerializeToString()
    with _weights_set_aside(model):
        sizes = {i.name: len(i.raw_data) for i in model.graph.initializer}
        assert sizes["w"] == 0
        assert sizes["b"] == sizes["shared"] == 256 * 256 * 4
        assert [list(i.dims) for i in model.graph.initializer] == [[256, 256]] * 3  # shapes stay
    assert model.SerializeToString() == before


def test_bytes_come_back_when_the_block_raises() -> None:
    model = _model()
    before = model.SerializeToString()
    try:
        with _weights_set_aside(model):
            raise RuntimeError("fusion failed")
    except RuntimeError:
        pass
    assert model.SerializeToString() == before


def test_models_with_subgraphs_are_left_alone(silero_onnx: Path) -> None:
    model = onnx.load(str(silero_onnx))  # If nodes whose branches read outer initializers
    before = model.SerializeToString()
    with _weights_set_aside(model):
        assert model.SerializeToString() == before
    assert model.SerializeToString() == before
