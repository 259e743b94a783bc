"""Graph surgery the quantize pass needs before ONNX Runtime's quantizers can do their work.

ORT's transformer optimizer fuses the embeddings into ``EmbedLayerNormalization`` and the Q/K/V projections into
``Attention``. Those contrib ops keep their weights out of reach of the QDQ and block-wise (int4) quantizers, which
only know ``MatMul`` and ``Gather``: the 47 MB word-embedding table and 10 MB of attention weights of MiniLM would
stay FP32. These helpers undo the embedding fusion and put quantized weights in front of ``Attention``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ONNX_DOMAIN = ""
MS_DOMAIN = "com.microsoft"


def opset_version(model: Any) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


def to_opset(model: Any, version: int) -> Any:
    """Converted copy at ``version`` (no-op when already there). Block-wise int4 tensors need opset 21."""
    from onnx import version_converter

    if opset_version(model) >= version:
        return model
    converted = version_converter.convert_version(model, version)
    if converted.ir_version < 10:
        converted.ir_version = 10  # INT4/UINT4 initializers need IR 10
    return converted


def _initializer(model: Any, name: str) -> Any | None:
    for init in model.graph.initializer:
        if init.name == name:
            return init
    return None


def _fresh(model: Any, base: str) -> str:
    """A tensor/node name not used yet in the graph."""
    used = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.initializer}
    used |= {i.name for i in model.graph.input} | {n.name for n in model.graph.node}
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}_{k}"
    return name


def unfuse_embed_layernorm(model: Any) -> int:
    """Replace each ``EmbedLayerNormalization`` by Gather + Add + LayerNormalization (in place); returns the count.

    The word-embedding ``Gather`` can then be quantized like any other (int8 per-tensor, or block-wise int4 with
    ``GatherBlockQuantized``). ``Attention`` nodes that read the fused op's ``mask_index`` get the raw int32
    attention mask instead, which ``Attention`` accepts as a 2-D mask and which gives the same result.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    count = 0
    for node in list(graph.node):
        if node.op_type != "EmbedLayerNormalization" or node.domain != MS_DOMAIN:
            continue
        ins = list(node.input) + [""] * (9 - len(node.input))
        ids, segment, word, pos, seg_table, gamma, beta, mask, position_ids = ins[:9]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        p = _fresh(model, (node.name or "EmbedLayerNormalization") + "_unfused")
        new: list[Any] = [helper.make_node("Gather", [word, ids], [f"{p}_word"], name=f"{p}_word_gather")]
        if not position_ids:
            zero, one = f"{p}_zero", f"{p}_one"
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array(0, np.int64), zero),
                    numpy_helper.from_array(np.array(1, np.int64), one),
                ]
            )
            new += [
                helper.make_node("Shape", [ids], [f"{p}_shape"], name=f"{p}_shape", start=1, end=2),
                helper.make_node("Squeeze", [f"{p}_shape"], [f"{p}_seqlen"], name=f"{p}_seqlen"),
                helper.make_node("Range", [zero, f"{p}_seqlen", one], [f"{p}_positions"], name=f"{p}_range"),
            ]
            position_ids = f"{p}_positions"
        new.append(helper.make_node("Gather", [pos, position_ids], [f"{p}_pos"], name=f"{p}_pos_gather"))
        total = f"{p}_sum0"
        new.append(helper.make_node("Add", [f"{p}_word", f"{p}_pos"], [total], name=f"{p}_add0"))
        if segment and seg_table:
            new.append(helper.make_node("Gather", [seg_table, segment], [f"{p}_seg"], name=f"{p}_seg_gather"))
            new.append(helper.make_node("Add", [total, f"{p}_seg"], [f"{p}_sum1"], name=f"{p}_add1"))
            total = f"{p}_sum1"
        outs = list(node.output) + [""] * (3 - len(node.output))
        if outs[2]:
            new.append(helper.make_node("Identity", [total], [outs[2]], name=f"{p}_sum_out"))
        new.append(
            helper.make_node(
                "LayerNormalization", [total, gamma, beta], [outs[0]], name=f"{p}_layernorm", axis=-1, epsilon=eps
            )
        )
        if outs[1]:
            for consumer in graph.node:
                for i, name in enumerate(consumer.input):
                    if name == outs[1]:
                        consumer.input[i] = mask  # raw int32 mask, or "" (no mask) when the fused op had none
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for k, n in enumerate(new):
            graph.node.insert(at + k, n)
        count += 1
    return count


def quantize_weight_blockwise(weight: np.ndarray, bits: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric block-wise quantization along axis 0 (the K axis of a ``x @ W`` weight): (q int8, scales)."""
    k, n = weight.shape
    pad = (-k) % block
    w = np.pad(weight.astype(np.float32), ((0, pad), (0, 0))).reshape(-1, block, n)
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(w).max(axis=1) / qmax  # (k/block, n)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale[:, None, :]), -qmax - 1, qmax).astype(np.int8).reshape(-1, n)[:k]
    return q, scale.astype(np.float32)


def dequantized_weight_input(model: Any, node: Any, index: int, bits: int, block: int | None) -> str | None:
    """Store ``node.input[index]`` (a 2-D FP32 initializer) as int8/int4 behind a ``DequantizeLinear`` (in place).

    For ops no ORT quantizer handles (``Attention``): the weight is dequantized at run time, which costs little
    next to the op itself. ``block`` None means per output channel (axis 1); a block size means block-wise along
    axis 0 (needs opset 21). Returns the quantized initializer's name, None when the input is not a 2-D FP32
    initializer.
    """
    from onnx import TensorProto, helper, numpy_helper

    init = _initializer(model, node.input[index])
    if init is None or init.data_type != TensorProto.FLOAT or len(init.dims) != 2:
        return None
    weight = numpy_helper.to_array(init)
    p = _fresh(model, f"{init.name}_q{bits}")
    if block is None:
        qmax = 2 ** (bits - 1) - 1
        scale = np.abs(weight).max(axis=0) / qmax
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(weight / scale), -qmax - 1, qmax).astype(np.int8)
        attrs: dict[str, Any] = {"axis": 1}
    else:
        q, scale = quantize_weight_blockwise(weight, bits, block)
        attrs = {"axis": 0, "block_size": block}
    if bits == 4:
        flat = q.astype(np.int8).ravel()
        if flat.size % 2:
            flat = np.append(flat, np.int8(0))
        packed = ((flat[0::2] & 0x0F) | ((flat[1::2] & 0x0F) << 4)).astype(np.uint8)
        q_init = helper.make_tensor(p, TensorProto.INT4, q.shape, packed.tobytes(), raw=True)
    else:
        q_init = numpy_helper.from_array(q, p)
    s_init = numpy_helper.from_array(scale.astype(np.float32), f"{p}_scale")
    model.graph.initializer.extend([q_init, s_init])
    out = f"{p}_dq"
    dq = helper.make_node("DequantizeLinear", [p, f"{p}_scale"], [out], name=f"{p}_DequantizeLinear", **attrs)
    graph = model.graph
    graph.node.insert(list(graph.node).index(node), dq)
    old = node.input[index]
    node.input[index] = out
    if not any(old in n.input for n in graph.node):
        graph.initializer.remove(init)
    return p


def gather_before_dequantize(model: Any) -> int:
    """Rewrite ``DequantizeLinear(table) → Gather`` as ``Gather(int8 table) → DequantizeLinear`` (in place).

    The QDQ quantizer leaves the embedding table behind a per-tensor DequantizeLinear; ORT does not fuse that
    pair, so it would dequantize all 30522x384 values on every run (~3x slower than FP32). Gathering the int8
    rows first gives the same numbers for a per-tensor scale. Returns the count rewritten.
    """
    from onnx import helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    count = 0
    for node in list(graph.node):
        if node.op_type != "Gather" or not node.input:
            continue
        dq = producer.get(node.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        scales = [inits.get(name) for name in dq.input[1:] if name]
        if any(s is None or len(s.dims) != 0 for s in scales) or readers.get(dq.output[0], 0) != 1:
            continue  # per-axis scales would need gathering too; shared tables keep the original form
        gathered = f"{node.output[0]}_quantized_rows"
        new_gather = helper.make_node("Gather", [dq.input[0], node.input[1]], [gathered], name=node.name)
        new_gather.attribute.extend(node.attribute)
        new_dq = helper.make_node(
            "DequantizeLinear", [gathered, *dq.input[1:]], [node.output[0]], name=f"{node.name}_DequantizeLinear"
        )
        at = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(at, new_dq)
        graph.node.insert(at, new_gather)
        graph.node.remove(dq)
        count += 1
    return count


def annotate_types(model: Any, feed: dict[str, np.ndarray], work: Any) -> int:
    """Add ``value_info`` element types for every node output, read from one ORT run (in place).

    ONNX shape inference stops at contrib ops (SkipLayerNormalization, Attention, BiasGelu…), and ORT's QDQ
    quantizer skips every activation whose type it does not know — after the transformer optimizer that is
    nearly all of them, leaving a weight-only model. Returns the number of tensors annotated.
    """
    import onnx
    from onnx import helper

    known = {v.name for v in model.graph.value_info} | {o.name for o in model.graph.output}
    known |= {i.name for i in model.graph.input}
    names = [o for n in model.graph.node for o in n.output if o and o not in known]
    if not names:  # nothing to annotate (and ORT's run([]) would mean "every output")
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    path = work / "annotate_types.onnx"
    onnx.save(probe, str(path))
    from edgepack.passes.quant_static import session

    sess = session(path, 2)
    inputs = {i.name for i in sess.get_inputs()}
    values = sess.run(names, {k: v for k, v in feed.items() if k in inputs})
    for name, value in zip(names, values, strict=True):
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
        model.graph.value_info.append(helper.make_tensor_value_info(name, elem, None))
    return len(names)


def unfuse_attention(model: Any) -> list[str]:
    """Split each fused ``Attention`` into MatMul + Split + ``MultiHeadAttention`` (in place).

    The QKV projection becomes a plain MatMul that the int8 (QDQ) and int4 (MatMulNBits) quantizers handle with
    their fast kernels; a weight kept behind a run-time DequantizeLinear instead costs ~0.8 ms per layer on
    MiniLM. Only the self-attention form without past state or custom head sizes is rewritten. Returns the
    names of the new MatMul nodes.
    """
    from onnx import helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    made = []
    for node in list(graph.node):
        if node.op_type != "Attention" or node.domain != MS_DOMAIN:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if any(node.input[4:]) or any(node.output[1:]):
            continue  # past/present state or extra inputs: leave fused
        if attrs.get("unidirectional", 0) or attrs.get("qkv_hidden_sizes") or node.input[1] not in inits:
            continue
        weight = inits[node.input[1]]
        if len(weight.dims) != 2 or weight.dims[1] % 3:
            continue
        hidden = int(weight.dims[1]) // 3
        p = _fresh(model, (node.name or "Attention") + "_unfused")
        split = f"{p}_split"
        graph.initializer.append(helper.make_tensor(split, 7, [3], [hidden, hidden, hidden]))
        mha_attrs = {k: v for k, v in attrs.items() if k in ("num_heads", "mask_filter_value", "scale")}
        ins = [f"{p}_q", f"{p}_k", f"{p}_v", node.input[2] if len(node.input) > 2 else ""]
        ins.append(node.input[3] if len(node.input) > 3 else "")
        while ins and not ins[-1]:
            ins.pop()
        new = [
            helper.make_node("MatMul", [node.input[0], node.input[1]], [f"{p}_qkv"], name=f"{p}_MatMul"),
            helper.make_node("Split", [f"{p}_qkv", split], [f"{p}_q", f"{p}_k", f"{p}_v"], name=f"{p}_Split", axis=-1),
            helper.make_node(
                "MultiHeadAttention", ins, [node.output[0]], name=f"{p}_MHA", domain=MS_DOMAIN, **mha_attrs
            ),
        ]
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for k, n in enumerate(new):
            graph.node.insert(at + k, n)
        made.append(f"{p}_MatMul")
    return made
