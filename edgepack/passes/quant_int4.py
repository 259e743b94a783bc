"""int4 weight-only quantization: MatMulNBits for MatMuls, GatherBlockQuantized for the embedding table.

What NOTES.md measured on MiniLM and this module follows:
- MatMuls alone leave the model at 0.60x: the 30522x384 word-embedding table dominates, so the embedding
  ``Gather`` is quantized too. ORT can only do that in QOperator format (``GatherBlockQuantized``) and with
  INT4 initializers, i.e. a model at opset 21 (converted first; opset 17 models are otherwise rejected).
- MatMulNBits is no faster than FP32 at one thread unless ``accuracy_level=4`` (int8 activations per block).
- ``Attention`` fused by ORT's optimizer has no int4 kernel: it is split into MatMul + MultiHeadAttention so the
  QKV projection becomes a MatMulNBits too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
) -> dict[str, Any]:
    """Quantize ``model`` (an onnx ModelProto, changed in place) and save it to ``out_path``; returns facts."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.quantization.quant_utils import QuantFormat

    unfused = unfuse_embed_layernorm(model) if quantize_embeddings and "Gather" not in exclude_ops else 0
    unfused_attention = unfuse_attention(model) if "Attention" not in exclude_ops else []
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
    quantizer.model.save_model_to_file(str(out_path), False)
    ops = [n.op_type for n in quantizer.model.model.graph.node]
    return {
        "quantized_nodes": ops.count("MatMulNBits") + ops.count("GatherBlockQuantized") + attention,
        "matmulnbits": ops.count("MatMulNBits"),
        "quantized_embeddings": ops.count("GatherBlockQuantized"),
        "unfused_attention": len(unfused_attention),
        "attention_int4_weights": attention,
        "unfused_embed_layernorm": unfused,
    }
