"""The ``quantize`` pass: int8 dynamic, int8 static (QDQ) with per-node fallback, int4 weight-only.

- ``int8-dynamic``: QInt8 per-channel weights (``MatMul``, fused ``Attention``, the embedding table), uint8
  activations quantized at run time. Activation outliers are first smoothed into the weights (SmoothQuant) from
  the calibration inputs, which keeps MiniLM's worst-case cosine ≥ 0.99 instead of ~0.97.
- ``int8-static``: QDQ (MatMul, Gather, Conv) with activation ranges from calibration inputs, then **per-node
  fallback**: while the profile's accuracy gates fail, the nodes that add the most error go back to FP32 (see
  ``quant_static``).
- ``int4``: MatMulNBits (block size from the profile, ``accuracy_level`` 4 for speed) and, optionally, the
  embedding table as ``GatherBlockQuantized`` (see ``quant_int4``); input channels are first scaled by their
  activation size (AWQ-like) and each block's range is MSE-clipped before round-to-nearest.

The profile's ISA picks the default mode through its ``quantization.default`` (``--quant auto``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from edgepack.errors import PassError
from edgepack.passes.base import ModelArtifact, Pass, PassConfig, PassContext
from edgepack.profiles import Profile

Mode = Literal["none", "int8-dynamic", "int8-static", "int4"]
MODES: tuple[Mode, ...] = ("none", "int8-dynamic", "int8-static", "int4")
FALLBACK_MODES: tuple[Mode, ...] = ("int8-static", "int8-dynamic")
GATE_KEYS = ("cosine_mean_min", "cosine_min_min", "top1_agreement_min", "max_abs_error_max")


class QuantizeConfig(PassConfig):
    mode: Mode = "int8-dynamic"
    weight_type: Literal["QInt8", "QUInt8"] = "QInt8"
    per_channel: bool = True
    # 7-bit weights: the remedy ORT documents for u8s8 saturation (VPMADDUBSW) on x86 without VNNI, if a large
    # accuracy drop shows there; costs MiniLM 0.9978/0.9906 → 0.9962/0.9824 where VNNI makes it unnecessary.
    reduce_range: bool = False
    exclude_ops: list[str] = Field(default_factory=list, description="op types left in FP32")
    exclude_nodes: list[str] = Field(default_factory=list, description="node names left in FP32")
    block_size: int = Field(default=32, ge=16, description="int4 block size (power of two)")
    quantize_embeddings: bool = Field(default=True, description="int4: quantize the embedding table too")
    accuracy_level: int = Field(default=4, ge=0, le=4, description="int4 MatMulNBits compute accuracy level")
    int4_symmetric: bool = Field(default=False, description="int4: symmetric blocks (asymmetric is more accurate)")
    smooth_alpha: float | None = Field(default=0.7, gt=0, lt=1, description="int8 SmoothQuant strength")
    int4_smooth_alpha: float | None = Field(
        default=0.5, gt=0, lt=1, description="int4 activation-aware weight scaling strength (AWQ-like)"
    )
    calibrate_method: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"
    calibration_samples: int = Field(default=32, ge=1, description="calibration inputs used (int8)")
    fallback: bool = Field(default=True, description="return the worst nodes to FP32 until the gates hold")
    fallback_modes: list[Mode] = Field(default_factory=lambda: list(FALLBACK_MODES))
    max_fallback_fraction: float = Field(default=0.5, gt=0, le=1)
    accuracy_samples: int = Field(default=256, ge=1, description="reference samples in the accuracy loop")
    # Gate thresholds the pass aims for; None takes the profile's gate.
    cosine_mean_min: float | None = None
    cosine_min_min: float | None = None
    top1_agreement_min: float | None = None
    max_abs_error_max: float | None = None

    @classmethod
    def from_profile(cls, profile: Profile, mode: str = "auto", **overrides: Any) -> QuantizeConfig:
        """The config ``--quant MODE`` means for this profile (``auto`` → the profile's default)."""
        q = profile.quantization
        chosen = q.default if mode == "auto" else mode
        if chosen not in MODES:
            raise PassError(f"unknown quantization mode {mode!r}", f"use auto or one of {', '.join(MODES)}")
        fields: dict[str, Any] = {
            "mode": chosen,
            "weight_type": q.weight_type,
            "per_channel": q.per_channel,
            "exclude_ops": list(q.exclude_ops),
            "block_size": q.int4_block_size,
            "quantize_embeddings": q.int4_quantize_embeddings,
            "fallback": q.fallback,
        }
        fields.update(overrides)
        return cls(**fields)


class QuantizePass(Pass[QuantizeConfig]):
    name: ClassVar[str] = "quantize"
    Config: ClassVar[type[PassConfig]] = QuantizeConfig

    def __init__(self, config: QuantizeConfig) -> None:
        super().__init__(config)
        self._evaluated: dict[str, Any] | None = None
        self._evaluated_samples = 0

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        cfg: QuantizeConfig = self.config
        self.extra_params = {"mode": cfg.mode}
        if cfg.mode == "none":
            return artifact
        import onnx

        if cfg.block_size & (cfg.block_size - 1):
            raise PassError(f"int4 block size {cfg.block_size} is not a power of two", "use 16, 32, 64 or 128")
        work = ctx.work_dir / "quantize"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        out = work / "model.onnx"
        model = onnx.load(str(artifact.onnx_path))
        gates = self._gates(ctx.profile)
        calibration = _calibration(ctx, cfg.calibration_samples)
        start = time.perf_counter()
        try:
            with _quiet_quantizers():
                if cfg.mode == "int8-dynamic":
                    facts = self._dynamic(model, artifact.onnx_path, out, work, ctx, gates, calibration)
                elif cfg.mode == "int8-static":
                    facts = self._static(model, artifact.onnx_path, out, work, ctx, gates, calibration)
                else:
                    facts = self._int4(model, artifact.onnx_path, out, work, ctx, gates)
        except PassError:
            raise
        except Exception as exc:  # ORT's quantizers raise bare asserts/ValueErrors; give them the contract's shape
            raise PassError(
                f"{cfg.mode} quantization failed on {artifact.onnx_path.name}: {type(exc).__name__}: {exc}",
                "try another --quant mode, or add the failing op type to the profile's quantization.exclude_ops",
            ) from exc
        facts["seconds"] = round(time.perf_counter() - start, 2)
        for scratch in work.iterdir():  # candidates and probes are ~model-sized each; only the result is kept
            if scratch != out and scratch.is_file():
                scratch.unlink()
        self.extra_params.update(facts)
        notes = {**artifact.notes, "quantization": dict(self.extra_params)}
        if self._evaluated is not None:
            # The accuracy of exactly this output file on the reference set: the pipeline need not measure it again.
            notes["evaluated"] = {"model": str(out), "samples": self._evaluated_samples, "metrics": self._evaluated}
        return dataclasses.replace(artifact, onnx_path=out, notes=notes)

    # --- modes -------------------------------------------------------------------------------------------------

    def _dynamic(
        self,
        model: Any,
        src: Path,
        out: Path,
        work: Path,
        ctx: PassContext,
        gates: dict[str, float | None],
        calibration: list[dict[str, Any]],
    ) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import QuantType

        from edgepack.passes import quant_static as qs
        from edgepack.passes.quant_dynamic import prepared, quantize_dynamic_model

        cfg: QuantizeConfig = self.config
        ctx.report("quantize: int8 dynamic", 0, None)
        smoothed = qs.smooth_activations(model, calibration, cfg.smooth_alpha) if cfg.smooth_alpha else 0
        op_types = [t for t in ("MatMul", "Attention", "Gather", "EmbedLayerNormalization") if t not in cfg.exclude_ops]
        candidates = [n for n in _weighted_nodes(model, op_types) if n.name not in cfg.exclude_nodes]
        base = prepared(model)  # once for every build below
        builds = 0

        def build(fallback: list[str]) -> Path:
            nonlocal builds
            builds += 1
            path = work / f"dynamic_{builds}.onnx"
            quantize_dynamic_model(
                base,
                path,
                weight_type=QuantType[cfg.weight_type],
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                op_types_to_quantize=op_types,
                nodes_to_exclude=[*cfg.exclude_nodes, *fallback],
                # DefaultTensorType: ORT's transformer optimizer leaves tensors without type info ("Unable to
                # find data type for weight_name"); MatMulConstBOnly: activation×activation MatMuls (attention
                # scores) lose accuracy and gain little speed when quantized.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
            )
            return path

        facts: dict[str, Any] = {"smoothed_activations": smoothed}
        facts.update(self._with_fallback(lambda: model, build, candidates, out, work, ctx, gates, src))
        return facts

    def _static(
        self,
        model: Any,
        src: Path,
        out: Path,
        work: Path,
        ctx: PassContext,
        gates: dict[str, float | None],
        calibration: list[dict[str, Any]],
    ) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        from edgepack.passes import quant_static as qs
        from edgepack.passes.quant_graph import (
            annotate_types,
            dequantized_weight_input,
            gather_before_dequantize,
            unfuse_attention,
            unfuse_embed_layernorm,
        )

        cfg: QuantizeConfig = self.config
        if not calibration:
            raise PassError(
                "int8-static needs calibration inputs and none were given",
                "pass --calibration PATH, or use --quant int8-dynamic",
            )
        ctx.report("quantize: int8 static (calibrating)", 0, None)
        # The QDQ quantizer knows MatMul and Gather only: undo the embedding and attention fusions so the
        # embedding table and the QKV projections are quantized (and run on int8 kernels).
        unfused = unfuse_embed_layernorm(model) if "Gather" not in cfg.exclude_ops else 0
        attention = unfuse_attention(model) if "Attention" not in cfg.exclude_ops else []
        smoothed = qs.smooth_activations(model, calibration, cfg.smooth_alpha) if cfg.smooth_alpha else 0
        fp32_prepared = work / "prepared_fp32.onnx"
        onnx.save(model, str(fp32_prepared))
        originals = {i.name: i for i in model.graph.initializer}
        renamed: dict[str, str] = {}
        if "Attention" not in cfg.exclude_ops:
            for node in list(model.graph.node):
                # Attention forms unfuse_attention leaves alone keep int8 weights behind a DequantizeLinear.
                if node.op_type == "Attention" and node.name not in cfg.exclude_nodes:
                    weight = node.input[1]
                    qname = dequantized_weight_input(model, node, 1, 8, None)
                    if qname is not None:
                        renamed[qname] = weight
        annotate_types(model, calibration[0], work)
        prepared = work / "prepared.onnx"
        onnx.save(model, str(prepared))
        op_types = [t for t in ("MatMul", "Gather", "Conv") if t not in cfg.exclude_ops]
        inputs = {i.name for i in model.graph.input}
        qdq_path = work / "qdq.onnx"
        quantize_static(
            str(prepared),
            str(qdq_path),
            qs.feed_reader(calibration, inputs),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType[cfg.weight_type],
            nodes_to_exclude=list(cfg.exclude_nodes),
            calibrate_method=CalibrationMethod[cfg.calibrate_method],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
        )
        qdq = onnx.load(str(qdq_path))
        gathers = gather_before_dequantize(qdq)
        onnx.save(qdq, str(qdq_path))
        producer = {o: n for n in qdq.graph.node for o in n.output}
        quantized = {
            n.name
            for n in qdq.graph.node
            if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)
        }
        candidates = [n for n in model.graph.node if n.name in quantized]
        builds = 0

        def build(fallback: list[str]) -> Path:
            nonlocal builds
            if not fallback:
                return qdq_path
            builds += 1
            path = work / f"static_{builds}.onnx"
            onnx.save(qs.qdq_restore_float(qdq, fallback, originals, renamed), str(path))
            return path

        facts: dict[str, Any] = {
            "smoothed_activations": smoothed,
            "unfused_embed_layernorm": unfused,
            "unfused_attention": len(attention),
            "attention_int8_weights": len(renamed),
            "int8_gathers": gathers,
            "calibration_samples": len(calibration),
        }
        facts.update(
            self._with_fallback(lambda: onnx.load(str(fp32_prepared)), build, candidates, out, work, ctx, gates, src)
        )
        return facts

    def _int4(
        self, model: Any, src: Path, out: Path, work: Path, ctx: PassContext, gates: dict[str, float | None]
    ) -> dict[str, Any]:
        from edgepack.passes import quant_static as qs
        from edgepack.passes.quant_graph import unfuse_attention
        from edgepack.passes.quant_int4 import quantize_int4

        cfg: QuantizeConfig = self.config
        ctx.report("quantize: int4", 0, None)
        smoothed = 0
        calibration = _calibration(ctx, cfg.calibration_samples)
        if cfg.int4_smooth_alpha and calibration:
            # Scaling input channels by their activation size before RTN protects the weights that matter most
            # (the AWQ observation); alpha 0.5 measured best on MiniLM (cosine 0.973 → 0.980 at the same size).
            if "Attention" not in cfg.exclude_ops:
                unfuse_attention(model)
            smoothed = qs.smooth_activations(model, calibration, cfg.int4_smooth_alpha)
        facts = quantize_int4(
            model,
            out,
            block_size=cfg.block_size,
            quantize_embeddings=cfg.quantize_embeddings,
            accuracy_level=cfg.accuracy_level,
            symmetric=cfg.int4_symmetric,
            nodes_to_exclude=list(cfg.exclude_nodes),
            exclude_ops=list(cfg.exclude_ops),
        )
        facts["smoothed_activations"] = smoothed
        facts["fallback_nodes"] = []
        evaluator = self._evaluator(src, ctx, gates)
        if evaluator is not None:
            metrics, results = evaluator.evaluate(out)
            facts.update(_metric_facts(metrics, results))
        return facts

    # --- shared --------------------------------------------------------------------------------------------

    def _with_fallback(
        self,
        fp32_model: Callable[[], Any],
        build: Any,
        candidates: list[Any],
        out: Path,
        work: Path,
        ctx: PassContext,
        gates: dict[str, float | None],
        src: Path,
    ) -> dict[str, Any]:
        """Build the fully quantized model, measure it, and fall back the worst nodes while the gates fail."""
        import onnx

        from edgepack.passes import quant_static as qs

        cfg: QuantizeConfig = self.config
        first = build([])
        facts: dict[str, Any] = {"fallback_nodes": []}
        evaluator = self._evaluator(src, ctx, gates)
        if evaluator is None:
            shutil.copyfile(first, out)
            facts["quantized_nodes"] = len(candidates)
            return facts
        metrics, results = evaluator.evaluate(first)
        chosen, chosen_metrics, chosen_results = first, metrics, results
        self._evaluated_samples = len(evaluator.feeds)
        if cfg.fallback and cfg.mode in cfg.fallback_modes and not qs.gates_hold(results) and candidates:
            start = time.perf_counter()
            ctx.report("quantize: ranking nodes by the error they add", 0, None)
            fp32 = fp32_model()
            floats = _float_tensors(fp32)
            # A node whose input is not a float activation (the embedding Gather reads ids) is ranked by the
            # error of its output alone.
            nodes = [(n.name, n.input[0] if n.input[0] in floats else "", n.output[0]) for n in candidates]
            added = qs.added_errors(fp32, onnx.load(str(first)), nodes, evaluator.feeds[:16])
            costs = qs.weight_bytes(fp32, candidates)
            # Cheapest accuracy first (error per FP32 byte restored), then, if that fallback costs size, plain
            # worst-error-first: whichever passing model is smaller wins. Error per byte alone can miss a gate
            # one big node dominates (e.g. max_abs_error from the embedding table).
            orders = [qs.rank(added, costs), qs.rank(added)]
            best: qs.SearchResult | None = None
            probes: list[dict[str, Any]] = []
            for ranking in orders if orders[0] != orders[1] else orders[:1]:
                result = qs.search_fallback(
                    ranking,
                    build,
                    evaluator,
                    max_count=max(1, int(len(ranking) * cfg.max_fallback_fraction)),
                    initial=(first, metrics, results),
                    progress=ctx.progress,
                )
                probes += [{**p, "order": "error_per_byte" if ranking is orders[0] else "error"} for p in result.probes]
                if best is None or (result.passed, -_size(result.path)) > (best.passed, -_size(best.path)):
                    best = result
                if best.passed and not any(costs.get(n, 0) for n in best.fallback):
                    break  # the fallback restored no weights: nothing smaller to find
            assert best is not None
            chosen, chosen_metrics, chosen_results = best.path, best.metrics, best.gates
            facts["fallback_exhausted"] = not best.passed  # no fallback within the cap met the gates
            facts["fallback_nodes"] = list(best.fallback)
            facts["fallback_probes"] = probes
            facts["fallback_ranking"] = orders[0][: max(10, len(best.fallback))]
            facts["fallback_seconds"] = round(time.perf_counter() - start, 2)
        shutil.copyfile(chosen, out)
        self._evaluated = chosen_metrics
        facts["quantized_nodes"] = len(candidates) - len(facts["fallback_nodes"])
        facts.update(_metric_facts(chosen_metrics, chosen_results))
        return facts

    def _gates(self, profile: Profile) -> dict[str, float | None]:
        cfg: QuantizeConfig = self.config
        return {k: getattr(cfg, k) if getattr(cfg, k) is not None else getattr(profile.gates, k) for k in GATE_KEYS}

    def _evaluator(self, src: Path, ctx: PassContext, gates: dict[str, float | None]) -> Any:
        from edgepack.passes import quant_static as qs

        cfg: QuantizeConfig = self.config
        if ctx.reference is None and not ctx.calibration:
            return None
        return qs.Evaluator.build(src, ctx.reference, ctx.calibration, gates, cfg.accuracy_samples)


def _size(path: Path) -> int:
    return path.stat().st_size


def _weighted_nodes(model: Any, op_types: list[str]) -> list[Any]:
    """Nodes of ``op_types`` with an FP32 initializer to quantize (not, e.g., a Gather on a shape)."""
    import onnx

    floats = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    index = {"MatMul": [1], "Attention": [1], "Gather": [0], "EmbedLayerNormalization": [2, 3, 4]}
    return [
        n
        for n in model.graph.node
        if n.op_type in op_types and any(i < len(n.input) and n.input[i] in floats for i in index.get(n.op_type, []))
    ]


def _float_tensors(model: Any) -> set[str]:
    """Names of tensors the (shape-inferred) model knows to be FP32."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # contrib ops can stop inference; then only graph inputs/outputs are known — still valid
        inferred = model
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    out = {v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    producer = {o: n for n in model.graph.node for o in n.output}
    # MatMul/Attention activations are float even where inference did not reach them
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Attention") and n.input and n.input[0] in producer:
            out.add(n.input[0])
    return out


@contextmanager
def _quiet_quantizers() -> Iterator[None]:
    """Keep ORT's quantizers off stderr while the pass runs (the pass reports through ``ctx`` and its record).

    They log through the root logger ("Please consider to run pre-processing…"), and importing
    ``matmul_nbits_quantizer`` calls ``logging.basicConfig(level=INFO)``, which would print every INFO line of
    the whole process from then on; a NullHandler on an unconfigured root makes that call a no-op.
    """
    root = logging.getLogger()
    guard = logging.NullHandler()
    added = not root.handlers
    if added:
        root.addHandler(guard)
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        if added:
            root.removeHandler(guard)


def _calibration(ctx: PassContext, limit: int) -> list[dict[str, Any]]:
    feeds = list(ctx.calibration or [])
    if not feeds and ctx.reference is not None:
        feeds = [dict(s.feeds) for s in getattr(ctx.reference, "samples", [])]
    return feeds[:limit]


def _metric_facts(metrics: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    facts: dict[str, Any] = {k: round(float(v), 6) for k, v in metrics.items() if isinstance(v, (int, float))}
    facts["gates"] = results
    facts["gates_passed"] = all(r["passed"] for r in results)
    return facts


def size_estimate(onnx_path: Path, mode: str, block_size: int = 32, quantize_embeddings: bool = True) -> int:
    """Bytes the model at ``onnx_path`` (FP32) is expected to take after ``mode`` (no fallback).

    Counts the FP32 weights each mode quantizes (MatMul/Attention weights, embedding tables) at 1 byte (int8) or
    half a byte plus one FP32 scale per block (int4); everything else keeps its size. Accurate to a few percent
    on transformer encoders: good enough to tell the user which ``--quant`` fits a budget.
    """
    import onnx

    if mode == "none":
        return onnx_path.stat().st_size
    if mode not in MODES:
        raise PassError(f"unknown quantization mode {mode!r}", f"use one of {', '.join(MODES)}")
    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    weights: dict[str, str] = {}
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Attention") and len(n.input) > 1 and n.input[1] in inits:
            weights[n.input[1]] = "matmul"
        elif n.op_type == "Gather" and n.input and n.input[0] in inits:
            weights[n.input[0]] = "gather"
        elif n.op_type == "EmbedLayerNormalization":
            for name in n.input[2:5]:
                if name in inits:
                    weights[name] = "gather"
    saved = 0.0
    for name, kind in weights.items():
        init = inits[name]
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        count = 1
        for d in init.dims:
            count *= int(d)
        fp32 = 4.0 * count
        if mode == "int4" and (kind == "matmul" or quantize_embeddings):
            saved += fp32 - (count / 2 + 4.0 * count / block_size)
        elif mode == "int4":
            continue
        else:
            saved += fp32 - count
    return int(onnx_path.stat().st_size - saved)


def fitting_modes(onnx_path: Path, max_bytes: float, profile: Profile) -> list[str]:
    """Quantization modes whose estimated size fits ``max_bytes``, largest (most accurate) first."""
    q = profile.quantization
    sizes = {
        m: size_estimate(onnx_path, m, q.int4_block_size, q.int4_quantize_embeddings)
        for m in ("none", "int8-dynamic", "int4")
    }
    return [m for m, s in sorted(sizes.items(), key=lambda kv: -kv[1]) if s <= max_bytes]
