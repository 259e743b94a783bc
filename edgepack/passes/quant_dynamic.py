"""``onnxruntime.quantization.quantize_dynamic`` for the quantize pass, on a model already in memory.

Same quantizer, same settings, same saved bytes (tests/test_quantize.py compares them with ``quantize_dynamic``
on a file), minus two costs that made up half of MiniLM's quantize pass:

- the file round trip and a redundant shape inference: ``quantize_dynamic`` takes a path, so the pass had to write
  the model (90 MB), and ORT then wrote and read it again to infer shapes its quantizer infers once more anyway.
- the per-channel weight loop: ORT computes scale, zero point and int8 values channel by channel in Python (20 000
  small numpy calls for MiniLM, ~1 s); :class:`_Quantizer` does the same arithmetic on whole weight matrices, in the
  same dtypes and order of operations, so every byte comes out the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def prepared(model: Any) -> Any:
    """A copy of ``model`` as ``quantize_dynamic`` hands it to its quantizer, less the shape inference: the quantizer
    runs ONNX shape inference again itself (after its own graph changes) and, from the model with or without the
    first round's value_info, comes to the same model and bytes (tests/test_quantize.py compares them)."""
    import onnx
    from onnxruntime.quantization.quant_utils import add_infer_metadata

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    add_infer_metadata(copy)  # the mark that tells ORT's base quantizer not to infer a first time
    return copy


def quantize_dynamic_model(
    base: Any,
    output: Path,
    *,
    weight_type: Any,
    per_channel: bool,
    reduce_range: bool,
    op_types_to_quantize: list[str],
    nodes_to_exclude: list[str],
    extra_options: dict[str, Any],
) -> None:
    """``quantize_dynamic(model, output, ...)`` for a model :func:`prepared` returned (left unchanged)."""
    import onnx
    from onnxruntime.quantization.quant_utils import QuantizationMode, QuantType
    from onnxruntime.quantization.quantize import update_opset_version

    model = onnx.ModelProto()
    model.CopyFrom(base)  # the quantizer rewrites its model; each fallback build starts from the same one
    model = update_opset_version(model, weight_type)
    quantizer = _quantizer_class()(
        model,
        per_channel,
        reduce_range,
        QuantizationMode.IntegerOps,
        False,  # static
        weight_type,
        QuantType.QUInt8,  # dynamic activations are uint8
        None,
        [],
        nodes_to_exclude,
        op_types_to_quantize,
        dict(extra_options),
    )
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(output))


def _quantizer_class() -> Any:
    import numpy as np
    import onnx
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.quant_utils import (
        TENSOR_NAME_QUANT_SUFFIX,
        find_by_name,
        get_qmin_qmax_for_qType,
        normalize_axis,
    )

    class _Quantizer(ONNXQuantizer):  # type: ignore[misc]
        def quantize_weight_per_channel_impl(
            self,
            weight_name: str,
            weight_qType: Any,  # ORT's parameter names, kept for its keyword callers
            channel_axis: int,
            reduce_range: bool = True,
            keep_float_weight: bool = False,
        ) -> tuple[str, str, str]:
            init = find_by_name(weight_name, self.model.initializer())
            if (
                init is None
                or keep_float_weight
                or init.data_type != onnx.TensorProto.FLOAT
                or weight_qType not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
                or not self.tensor_quant_overrides.empty()
                or self.min_real_range is not None
            ):  # cases the arithmetic below does not cover: ORT's own loop
                return super().quantize_weight_per_channel_impl(  # type: ignore[no-any-return]
                    weight_name, weight_qType, channel_axis, reduce_range, keep_float_weight
                )
            weights = onnx.numpy_helper.to_array(init)
            valid, axis = normalize_axis(channel_axis, weights.ndim)
            if not valid:
                raise ValueError(f"Weight {weight_name} has no axis {channel_axis}")
            symmetric = self.is_weight_symmetric(weight_qType)
            # ORT's compute_data_quant_params + compute_scale_zp + quantize_nparray, one row per channel.
            rows = np.moveaxis(weights, axis, 0).reshape(weights.shape[axis], -1)
            qmin, qmax = get_qmin_qmax_for_qType(weight_qType, self.reduce_range and reduce_range, symmetric=symmetric)
            rmin = np.minimum(rows.min(axis=1), np.float32(0))
            rmax = np.maximum(rows.max(axis=1), np.float32(0))
            if symmetric:
                absmax = np.maximum(np.abs(rmin), np.abs(rmax))
                rmin, rmax = -absmax, +absmax
            scale = (rmax.astype(np.float64) - rmin.astype(np.float64)) / (np.float64(qmax) - np.float64(qmin))
            if symmetric:
                zero = np.full(scale.shape, np.round((qmin + qmax) / np.float64(2.0)), dtype=np.float64)
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    zero = np.round(np.float64(qmin) - rmin.astype(np.float64) / scale)
            stored = scale.astype(np.float32)
            tiny = scale < np.finfo(np.float32).tiny  # an all-zero channel: scale 1, zero point 0
            stored[tiny] = np.float32(1.0)
            zero[tiny] = 0
            zero_point = zero.astype(qmin.dtype)
            lo, hi = get_qmin_qmax_for_qType(weight_qType, reduce_range=False, symmetric=False)
            q = np.round(rows.astype(np.float32) / stored[:, None]) + zero_point[:, None]
            np.clip(q, lo, hi, out=q)
            shape = list(weights.shape)
            moved = [shape[axis], *shape[:axis], *shape[axis + 1 :]]
            quantized = np.moveaxis(q.astype(zero_point.dtype).reshape(moved), 0, axis)

            q_name = weight_name + TENSOR_NAME_QUANT_SUFFIX
            zp_name = weight_name + "_zero_point"
            scale_name = weight_name + "_scale"
            dims = [init.dims[axis]]
            self.model.initializer_extend(
                [
                    onnx.helper.make_tensor(scale_name, init.data_type, dims, stored.tolist()),
                    onnx.helper.make_tensor(zp_name, weight_qType, dims, zero_point.tolist()),
                ]
            )
            dtype = onnx.helper.tensor_dtype_to_np_dtype(weight_qType)
            packed = np.asarray(quantized, dtype=dtype).reshape(init.dims)
            self.model.initializer_extend([onnx.numpy_helper.from_array(packed, q_name)])
            return q_name, zp_name, scale_name

    return _Quantizer
