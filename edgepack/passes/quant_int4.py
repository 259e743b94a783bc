"""int4 weight-only quantization: MatMulNBits for MatMuls, GatherBlockQuantized for the embedding table.

What NOTES.md measured on MiniLM and this module follows:
- MatMuls alone leave the model at 0.60x: the 30522x384 word-embedding table dominates, so the embedding
  ``Gather`` is quantized too. ORT can only do that in QOperator format (``GatherBlockQuantized``), on a model
  converted to opset 21 first. Its INT4/UINT4 initializers cannot be stored in the ORT format (.ort, made by
  the prune pass): they are rewritten as the op's packed-uint8 form (``bits=4``).
- MatMulNBits is no faster than FP32 at one thread unless ``accuracy_level=4`` (int8 activations per block).
- ``Attention`` fused by ORT's optimizer has no int4 kernel: it is split into MatMul + MultiHeadAttention so the
  QKV projection becomes a MatMulNBits too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepack.passes.quant_graph import (
    dequantized_weight_input,
    to_opset,
    unfuse_attention,
    unfuse_embed_layernorm,
)


def quantize_int4(
    model: Any,
    out_path: Path,
    *,
    block_size: int,
    quantize_embeddings: bool,
    accuracy_level: int,
    symmetric: bool,
    nodes_to_exclude: list[str],
    exclude_ops: list[str],
    clip: bool = True,
) -> dict[str, Any]:
    """Quantize ``model`` (an onnx ModelProto, changed in place) and save it to ``out_path``; returns facts."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.quantization.quant_utils import QuantFormat

    unfused = unfuse_embed_layernorm(model) if quantize_embeddings and "Gather" not in exclude_ops else 0
    unfused_attention = unfuse_attention(model) if "Attention" not in exclude_ops else []
    # The quantizer declares opset 21 for the ops it adds; converting first updates the model's own ops (an
    # opset-17 ReduceL2 with an ``axes`` attribute is otherwise invalid at 21).
    model = to_opset(model, 21)
    attention = 0
    if "Attention" not in exclude_ops:
        # forms unfuse_attention leaves fused keep block-wise int4 weights behind a DequantizeLinear
        for node in list(model.graph.node):
            if (
                node.op_type == "Attention"
                and node.name not in nodes_to_exclude
                and dequantized_weight_input(model, node, 1, 4, block_size) is not None
            ):
                attention += 1
    op_types = tuple(t for t in ("MatMul", "Gather") if t not in exclude_ops)
    if not quantize_embeddings:
        op_types = tuple(t for t in op_types if t != "Gather")
    clipped = clip_weights(model, block_size, symmetric, op_types, nodes_to_exclude) if clip else 0
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=block_size,
        is_symmetric=symmetric,
        accuracy_level=accuracy_level,
        nodes_to_exclude=nodes_to_exclude,
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=op_types,
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    quantizer.process()
    packed = gathers_to_packed_uint8(quantizer.model.model)
    quantizer.model.save_model_to_file(str(out_path), False)
    ops = [n.op_type for n in quantizer.model.model.graph.node]
    return {
        "quantized_nodes": ops.count("MatMulNBits") + ops.count("GatherBlockQuantized") + attention,
        "matmulnbits": ops.count("MatMulNBits"),
        "quantized_embeddings": ops.count("GatherBlockQuantized"),
        "unfused_attention": len(unfused_attention),
        "attention_int4_weights": attention,
        "unfused_embed_layernorm": unfused,
        "packed_uint8_gathers": packed,
        "mse_clipped_weights": clipped,
    }


def gathers_to_packed_uint8(model: Any) -> int:
    """Store each 4-bit ``GatherBlockQuantized`` table as packed uint8 with ``bits=4`` (in place); returns the count.

    Same bytes, other type: ONNX packs INT4/UINT4 two to a byte, low nibble first, as the op's uint8 form does
    along the last axis. Signed INT4 (zero point 0) becomes unsigned with the op's default zero point 8, which
    is flipping each nibble's top bit. The uint8 form needs ``gather_axis`` 0 and the last axis quantized.
    """
    from onnx import TensorProto, helper

    inits = {i.name: i for i in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        if node.op_type != "GatherBlockQuantized":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        data = inits.get(node.input[0])
        if data is None or data.data_type not in (TensorProto.INT4, TensorProto.UINT4):
            continue
        rank = len(data.dims)
        if attrs.get("gather_axis", 0) != 0 or attrs.get("quantize_axis", 1) % rank != rank - 1 or data.dims[-1] % 2:
            continue
        zero = inits.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        signed = data.data_type == TensorProto.INT4
        raw = np.frombuffer(data.raw_data, dtype=np.uint8)
        if signed:
            raw = raw ^ np.uint8(0x88)
        shape = [*data.dims[:-1], data.dims[-1] // 2]
        data.CopyFrom(helper.make_tensor(data.name, TensorProto.UINT8, shape, raw.tobytes(), raw=True))
        if zero is not None:
            zshape = [*zero.dims[:-1], (zero.dims[-1] + 1) // 2]
            zraw = np.frombuffer(zero.raw_data, dtype=np.uint8)
            zero.CopyFrom(helper.make_tensor(zero.name, TensorProto.UINT8, zshape, zraw.tobytes(), raw=True))
        node.attribute.append(helper.make_attribute("bits", 4))
        count += 1
    return count


CLIP_RATIOS = tuple(round(1.0 - 0.05 * i, 2) for i in range(11))


def clip_for_rtn(weight: np.ndarray, axis: int, block: int, symmetric: bool) -> np.ndarray:
    """Clamp each block of ``weight`` to the range that minimises its 4-bit round-to-nearest error.

    ORT's quantizer takes each block's min/max as its range; one outlier then spends the 16 levels on values that
    barely occur. Clamping first makes RTN use the best of a few shrunk ranges (searched per block, by squared
    error), i.e. MSE-clipped quantization with ORT's own kernels and file format.
    """
    w = np.moveaxis(weight.astype(np.float32), axis, -1)
    shape = w.shape
    length = shape[-1]
    pad = (-length) % block
    blocks = np.pad(w, [(0, 0)] * (w.ndim - 1) + [(0, pad)], mode="edge").reshape(*shape[:-1], -1, block)
    if symmetric:
        hi0 = np.abs(blocks).max(axis=-1, keepdims=True)
        lo0 = -hi0
    else:
        lo0 = np.minimum(blocks.min(axis=-1, keepdims=True), 0)
        hi0 = np.maximum(blocks.max(axis=-1, keepdims=True), 0)
    best_err = np.full(lo0.shape, np.inf, dtype=np.float32)
    best_lo, best_hi = lo0.copy(), hi0.copy()
    for r in CLIP_RATIOS:
        lo, hi = lo0 * r, hi0 * r
        if symmetric:
            scale = np.maximum(hi, 1e-12) / 7.0
            deq = np.clip(np.rint(blocks / scale), -8, 7) * scale
        else:
            scale = np.maximum(hi - lo, 1e-12) / 15.0
            zp = np.clip(np.rint(-lo / scale), 0, 15)
            deq = (np.clip(np.rint(blocks / scale) + zp, 0, 15) - zp) * scale
        err = ((blocks - deq) ** 2).sum(axis=-1, keepdims=True)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_lo = np.where(better, lo, best_lo)
        best_hi = np.where(better, hi, best_hi)
    clipped = np.clip(blocks, best_lo, best_hi).reshape(*shape[:-1], -1)[..., :length]
    return np.moveaxis(clipped, -1, axis).astype(np.float32)


def clip_weights(model: Any, block: int, symmetric: bool, op_types: tuple[str, ...], exclude: list[str]) -> int:
    """Apply :func:`clip_for_rtn` to every weight the int4 quantizer will see (in place); returns the count."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    done: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in op_types or node.name in exclude:
            continue
        name, axis = (node.input[1], 0) if node.op_type == "MatMul" else (node.input[0], 1)
        init = inits.get(name)
        if init is None or name in done or init.data_type != TensorProto.FLOAT or len(init.dims) != 2:
            continue
        clipped = clip_for_rtn(numpy_helper.to_array(init), axis, block, symmetric)
        init.CopyFrom(numpy_helper.from_array(clipped, name))
        done.add(name)
    return len(done)
