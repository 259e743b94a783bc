"""optimize: ORT's transformer optimizer for BERT-like graphs, onnxscript's optimizer (constant folding, dead
branches) for the rest, after pinning the inputs the task fixes (e.g. silero-vad's sample rate)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from edgepack.errors import PassError
from edgepack.passes.base import ModelArtifact, Pass, PassConfig, PassContext

BERT_LIKE = {"bert", "roberta", "distilbert", "xlm-roberta", "camembert", "mpnet", "electra", "albert"}
# Inputs a task pins to one value: fixing them lets constant folding remove the branches for the other values.
TASK_PINNED_INPUTS: dict[str, dict[str, int]] = {"audio-vad": {"sr": 16000}}


class OptimizeConfig(PassConfig):
    pinned_inputs: dict[str, int] = Field(default_factory=dict)
    transformer_fusion: bool = True
    # int4 quantizes the word-embedding Gather; a fused EmbedLayerNormalization would hide it from the quantizer.
    fuse_embed_layer_norm: bool = True


def hf_model_type(source_dir: Path | None) -> str | None:
    if source_dir is None or not (source_dir / "config.json").is_file():
        return None
    value = json.loads((source_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    return str(value) if value else None


def pin_inputs(model: Any, values: dict[str, int]) -> list[str]:
    """Turn graph inputs into int64 initializers; returns the names that were pinned."""
    import numpy as np
    from onnx import numpy_helper

    pinned = []
    for name, value in values.items():
        found = [i for i in model.graph.input if i.name == name]
        if not found:
            continue
        model.graph.input.remove(found[0])
        model.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.int64), name))
        pinned.append(name)
    return pinned


class OptimizePass(Pass[OptimizeConfig]):
    name: ClassVar[str] = "optimize"
    Config: ClassVar[type[PassConfig]] = OptimizeConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        import onnx

        cfg: OptimizeConfig = self.config
        self.extra_params = {}
        out = ctx.work_dir / "optimize" / "model.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        model_type = hf_model_type(artifact.source_dir)
        if cfg.transformer_fusion and model_type in BERT_LIKE:
            method = self._transformer(artifact.onnx_path, out, model_type, cfg.fuse_embed_layer_norm)
            pinned: list[str] = []
        else:
            model = onnx.load(str(artifact.onnx_path))
            pinned = pin_inputs(model, cfg.pinned_inputs)
            method = self._fold(model, out)
        # _transformer left the fused operator counts in extra_params: keep them in the pass log
        self.extra_params = {"method": method, "model_type": model_type, "pinned": pinned, **self.extra_params}
        notes = dict(artifact.notes)
        notes["pinned_inputs"] = {k: cfg.pinned_inputs[k] for k in pinned}
        return ModelArtifact(onnx_path=out, task=artifact.task, source_dir=artifact.source_dir, notes=notes)

    def _transformer(self, src: Path, out: Path, model_type: str, fuse_embed: bool) -> str:
        import logging

        import onnx
        from onnxruntime.transformers.fusion_options import FusionOptions

        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
        # opt_level 0: only the Python fusions (Attention, SkipLayerNorm, BiasGelu…); ORT's own graph optimizations
        # run again on the device, so baking x86-specific ones in here would be wrong for an ARM target.
        try:
            options = FusionOptions("bert")
            options.enable_embed_layer_norm = fuse_embed
            opt = _fuse_bert(onnx.load(str(src)), options)
        except Exception as e:  # the fusion scripts raise assorted errors on graphs they do not understand
            raise PassError(
                f"transformer optimizer failed on a {model_type} graph ({str(e)[:160]})",
                "package with a plain export: report this model to edgepack",
            ) from e
        opt.save_model_to_file(str(out))
        fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        self.extra_params["fused"] = fused
        return "onnxruntime.transformers(bert)"

    def _fold(self, model: Any, out: Path) -> str:
        import onnx
        from onnxscript import optimizer

        try:
            folded = optimizer.optimize(model)
            onnx.checker.check_model(folded)
        except Exception as e:  # onnxscript raises many types; any failure means "cannot fold this graph"
            raise PassError(f"constant folding failed ({str(e)[:160]})", "package with --task generic") from e
        onnx.save(folded, str(out))
        return "onnxscript.optimizer"


# Node inputs whose *values* ORT's symbolic shape inference never reads (only their shapes): the weights.
_SHAPE_ONLY_INPUTS = {"MatMul": {1}, "Gemm": {1}, "Gather": {0}, "Attention": {1}, "EmbedLayerNormalization": {2, 3, 4}}
_LARGE_BYTES = 1 << 16


@contextmanager
def _weights_set_aside(model: Any) -> Iterator[None]:
    """Take the raw bytes of the large weights out of ``model`` for the duration, and put them back.

    ORT's symbolic shape inference copies the whole model three times per run, and the BERT fusions run it five
    times: 15 copies of MiniLM's 90 MB of weights whose values it never reads (only their dims, which stay).
    """
    from onnx import AttributeProto

    readers: dict[str, set[tuple[str, int]]] = {}
    for node in model.graph.node:
        if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute):
            yield  # subgraphs may read outer weights unseen here: leave everything in place
            return
        for i, name in enumerate(node.input):
            readers.setdefault(name, set()).add((node.op_type, i))
    outputs = {o.name for o in model.graph.output}
    aside: list[tuple[Any, bytes]] = []
    for init in model.graph.initializer:
        uses = readers.get(init.name)
        if (
            uses
            and init.name not in outputs
            and len(init.raw_data) >= _LARGE_BYTES
            and all(i in _SHAPE_ONLY_INPUTS.get(op, ()) for op, i in uses)
        ):
            aside.append((init, init.raw_data))
            init.ClearField("raw_data")
    try:
        yield
    finally:
        for init, data in aside:
            init.raw_data = data


def _fuse_bert(model: Any, options: Any) -> Any:
    """``onnxruntime.transformers.optimizer.optimize_model(model_type="bert", opt_level=0)`` on a loaded model, with
    the same fusions and result (tests/test_quantize.py compares the bytes), minus the weight copies above."""
    import onnxruntime
    from onnxruntime.transformers.onnx_model_bert import BertOnnxModel

    class _Bert(BertOnnxModel):  # type: ignore[misc]
        def infer_runtime_shape(self, dynamic_axis_mapping: Any = None, update: bool = False) -> Any:
            with _weights_set_aside(self.model):
                return super().infer_runtime_shape(dynamic_axis_mapping or {}, update)

    opt = _Bert(model, 0, 0)
    opt.optimize(options)
    opt.topological_sort()
    opt.model.producer_name = "onnxruntime.transformers"
    opt.model.producer_version = onnxruntime.__version__
    return opt
