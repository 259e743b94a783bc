"""Calibration, activation smoothing, per-node sensitivity ranking and the fallback search of the quantize pass.

The fallback search replaces the trial and error NOTES.md describes (~200 s, 40% of MatMuls left FP32):
1. one run of the FP32 and the quantized model with every candidate node's input and output exposed ranks the
   nodes by the error each *adds* (relative error of its output minus that of its input);
2. the worst nodes go back to FP32 in growing batches (1, 2, 4, …), then a binary search on the count finds the
   fewest that make the gates hold. Each probe is one model build + one accuracy run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgepack.checks.metrics import accuracy, apply_gates

Feeds = dict[str, np.ndarray]


class SampleLike(Protocol):
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


class ReferenceLike(Protocol):
    """What the pass reads from ``ctx.reference`` (edgepack.checks.reference.ReferenceSet has this shape)."""

    compare_output: str

    @property
    def samples(self) -> Sequence[SampleLike]: ...

    @property
    def metric_kinds(self) -> list[str]: ...


def session(model: Path | str | bytes, threads: int = 1) -> Any:
    """An ORT CPU session on a model file or on a serialized model (no file written)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # ORT warns about unused initializers after surgery; not actionable for users
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])


def model_feed(sess: Any, feed: Feeds) -> Feeds:
    """``feed`` restricted to the session's inputs: earlier passes may have pinned some (silero-vad's ``sr``)."""
    names = {i.name for i in sess.get_inputs()}
    return {k: v for k, v in feed.items() if k in names}


@dataclass
class Evaluator:
    """Accuracy of a candidate model against FP32 reference values, and whether the gates hold."""

    feeds: list[Feeds]
    references: list[np.ndarray]
    compare_output: str
    kinds: list[str]
    gates: dict[str, float | None]
    postprocess: Callable[[list[dict[str, np.ndarray]], list[Feeds]], list[np.ndarray]] | None = None
    threads: int = 2
    runs: int = 0

    @classmethod
    def build(
        cls,
        fp32_path: Path,
        reference: Any,
        calibration: list[Feeds] | None,
        gates: dict[str, float | None],
        max_samples: int,
    ) -> Evaluator:
        if reference is not None and getattr(reference, "samples", None):
            samples = list(reference.samples)[:max_samples]
            feeds = [dict(s.feeds) for s in samples]
            outputs = [dict(s.outputs) for s in samples]
            compare = str(reference.compare_output)
            kinds = list(reference.metric_kinds)
            post = getattr(reference, "compare_values", None)
            refs = post(outputs, feeds) if callable(post) else [o[compare] for o in outputs]
            return cls(feeds, [np.asarray(r) for r in refs], compare, kinds, gates, post if callable(post) else None)
        # No reference set: the FP32 input model's own outputs on the calibration feeds are the reference.
        feeds = list(calibration or [])[:max_samples]
        sess = session(fp32_path, 2)
        names = [o.name for o in sess.get_outputs()]
        compare = "sentence_embedding" if "sentence_embedding" in names else names[0]
        refs = [sess.run([compare], model_feed(sess, f))[0] for f in feeds]
        return cls(feeds, refs, compare, ["cosine", "max_abs_error"], gates)

    def outputs(self, path: Path) -> list[np.ndarray]:
        sess = session(path, self.threads)
        self.runs += 1
        raw = [sess.run([self.compare_output], model_feed(sess, f))[0] for f in self.feeds]
        if self.postprocess is not None:
            return [np.asarray(v) for v in self.postprocess([{self.compare_output: r} for r in raw], self.feeds)]
        return raw

    def evaluate(self, path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        metrics = accuracy(self.references, self.outputs(path), self.kinds)
        metrics.pop("per_sample_cosine", None)
        return metrics, apply_gates(self.gates, metrics)


def gates_hold(results: list[dict[str, Any]]) -> bool:
    return all(r["passed"] for r in results)


def feed_reader(feeds: list[Feeds], input_names: set[str]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter([{k: v for k, v in f.items() if k in input_names} for f in feeds])

        def get_next(self) -> Feeds | None:
            return next(self._it, None)

    return _Reader()


def with_outputs(model: Any, names: Sequence[str]) -> Any:
    """A copy of ``model`` that also returns the tensors ``names`` (types left to ORT's inference)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for n in names:
        if n not in present:
            copy.graph.output.append(onnx.ValueInfoProto(name=n))
    return copy


def run_tensors(model: Any, names: Sequence[str], feeds: list[Feeds]) -> list[dict[str, np.ndarray]]:
    # Serialized in memory: writing MiniLM's 90 MB probe to disk first costs more than the runs themselves.
    sess = session(with_outputs(model, names).SerializeToString(), 2)
    want = list(dict.fromkeys(names))
    return [dict(zip(want, sess.run(want, model_feed(sess, f)), strict=True)) for f in feeds]


def weight_matmuls(model: Any, op_types: Sequence[str] = ("MatMul", "Attention")) -> list[Any]:
    """Nodes of ``op_types`` whose input 1 is a 2-D FP32 initializer (the weights a quantizer turns into int8)."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in op_types and len(n.input) > 1 and n.input[1] in inits:
            init = inits[n.input[1]]
            if init.data_type == TensorProto.FLOAT and len(init.dims) == 2:
                out.append(n)
    return out


def smooth_activations(model: Any, feeds: list[Feeds], alpha: float) -> int:
    """SmoothQuant (Xiao et al. 2023) in place: move activation outliers into the weights before int8.

    Per-tensor int8 activations lose the small channels next to BERT's few huge ones (MiniLM's worst cosine
    drops to ~0.97 on short inputs). For ``y = x @ W`` we feed ``x / s`` and use ``diag(s) @ W`` with
    ``s = max|x|^alpha / max|W|^(1-alpha)`` per input channel; the ``Mul`` that divides costs one elementwise op.
    Returns the number of activations smoothed.
    """
    from onnx import helper, numpy_helper

    nodes = weight_matmuls(model)
    acts = sorted({n.input[0] for n in nodes})
    if not acts or not feeds:
        return 0
    values = run_tensors(model, acts, feeds)
    inits = {i.name: i for i in model.graph.initializer}
    graph = model.graph
    for act in acts:
        amax = np.max([np.abs(v[act]).reshape(-1, v[act].shape[-1]).max(axis=0) for v in values], axis=0)
        users = [n for n in nodes if n.input[0] == act]
        weights = {n.input[1]: numpy_helper.to_array(inits[n.input[1]]) for n in users}
        if any(w.shape[0] != amax.shape[0] for w in weights.values()):
            continue
        wmax = np.max([np.abs(w).max(axis=1) for w in weights.values()], axis=0)
        scale = (np.maximum(amax, 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)).astype(np.float32)
        scale = np.clip(scale, 1e-2, 1e2)  # keep both sides in a sane range where a channel is almost silent
        inv = f"{act}_smooth_inv"
        out = f"{act}_smoothed"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inv))
        first = min(list(graph.node).index(n) for n in users)
        graph.node.insert(first, helper.make_node("Mul", [act, inv], [out], name=f"{act}_smooth"))
        for name, w in weights.items():
            # a weight shared by several users is scaled once: all its users read the same smoothed activation
            inits[name].CopyFrom(numpy_helper.from_array((w * scale[:, None]).astype(np.float32), name))
        for n in users:
            n.input[0] = out
    return len(acts)


def added_errors(
    fp32_model: Any, quant_model: Any, nodes: Sequence[tuple[str, str, str]], feeds: list[Feeds]
) -> dict[str, float]:
    """The relative error each node adds: err(output) - err(input), from one run of each model.

    ``nodes`` is ``(name, float input tensor or "", output tensor)``; the tensor names exist in both models (the
    quantizers keep the original names around the quantized nodes). A node whose tensors the quantizer renamed
    cannot be measured and gets -inf (ranked last, never fallen back first).
    """

    def produced(m: Any) -> set[str]:
        return {o for n in m.graph.node for o in n.output} | {i.name for i in m.graph.input}

    both = produced(fp32_model) & produced(quant_model)
    unmeasured = [name for name, i, o in nodes if o not in both or (i and i not in both)]
    nodes = [(name, i, o) for name, i, o in nodes if name not in unmeasured]
    tensors = sorted({t for _, i, o in nodes for t in (i, o) if t})
    ref = run_tensors(fp32_model, tensors, feeds)
    cand = run_tensors(quant_model, tensors, feeds)

    def rel(t: str) -> float:
        errs = []
        for r, c in zip(ref, cand, strict=True):
            a, b = r[t].astype(np.float64), c[t].astype(np.float64)
            errs.append(float(np.linalg.norm(a - b) / max(float(np.linalg.norm(a)), 1e-12)))
        return float(np.mean(errs))

    added = {name: rel(o) - (rel(i) if i else 0.0) for name, i, o in nodes}
    added.update({name: float("-inf") for name in unmeasured})
    return added


def rank(added: dict[str, float], cost_bytes: dict[str, int] | None = None, cost_floor: int = 1 << 16) -> list[str]:
    """Node names, worst first. With ``cost_bytes`` (FP32 weight bytes a node's fallback brings back) the error is
    divided by that cost (at least ``cost_floor``): accuracy is bought where it is cheapest — nodes whose fallback
    restores no weights first, a 47 MB embedding table last."""
    score = dict(added)
    if cost_bytes is not None:
        score = {n: e / max(cost_bytes.get(n, 0), cost_floor) if e > 0 else e for n, e in added.items()}
    return sorted(score, key=lambda n: -score[n])


def weight_bytes(model: Any, nodes: Sequence[Any]) -> dict[str, int]:
    """FP32 bytes of the weight/table initializers (2-D or more) each node reads in ``model``."""
    import onnx

    sizes = {}
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) >= 2:
            sizes[init.name] = 4 * int(np.prod(init.dims))
    return {n.name: sum(sizes.get(i, 0) for i in set(n.input)) for n in nodes}


@dataclass
class SearchResult:
    path: Path
    fallback: list[str]
    metrics: dict[str, Any]
    gates: list[dict[str, Any]]
    passed: bool
    probes: list[dict[str, Any]] = field(default_factory=list)


def search_fallback(
    ranking: list[str],
    build: Callable[[list[str]], Path],
    evaluator: Evaluator,
    max_count: int,
    initial: tuple[Path, dict[str, Any], list[dict[str, Any]]] | None = None,
    progress: Callable[[str, float, float | None], None] | None = None,
) -> SearchResult:
    """Fewest worst-ranked nodes to return to FP32 so the gates hold (exponential, then binary search)."""
    probes: list[dict[str, Any]] = []
    cache: dict[int, SearchResult] = {}

    def probe(k: int) -> SearchResult:
        if k in cache:
            return cache[k]
        start = time.perf_counter()
        if k == 0 and initial is not None:
            path, metrics, gates = initial
        else:
            path = build(ranking[:k])
            metrics, gates = evaluator.evaluate(path)
        res = SearchResult(path, ranking[:k], metrics, gates, gates_hold(gates))
        cache[k] = res
        probes.append(
            {
                "fallback_count": k,
                "passed": res.passed,
                "cosine_mean": metrics.get("cosine_mean"),
                "cosine_min": metrics.get("cosine_min"),
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
        if progress is not None:
            progress(f"fallback probe: {k} node(s) in FP32", len(probes), None)
        return res

    max_count = min(max_count, len(ranking))
    best = probe(0)
    if best.passed:
        best.probes = probes
        return best
    lo, hi = 0, None  # lo fails; hi passes
    k = 1
    while k <= max_count:
        if probe(k).passed:
            hi = k
            break
        lo = k
        if k == max_count:
            break
        k = min(k * 2, max_count)
    if hi is None:
        # Nothing within the cap passes: keep every node quantized (the size win is certain, the accuracy win
        # was not enough) and let the pipeline's gate check report the miss.
        best.probes = probes
        return best
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid).passed:
            hi = mid
        else:
            lo = mid
    result = cache[hi]
    result.probes = probes
    return result


def qdq_restore_float(
    model: Any, node_names: Sequence[str], originals: dict[str, Any], renamed: dict[str, str] | None = None
) -> Any:
    """A copy of a QDQ model where ``node_names`` read FP32 again: weights from ``originals`` (initializers of the
    FP32 model by name; ``renamed`` maps quantized weight names that do not follow ORT's ``_quantized`` suffix to
    their FP32 name), activations from before their QuantizeLinear. Unused Q/DQ nodes are dropped."""
    import onnx
    from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX

    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name for i in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    wanted = set(node_names)
    for node in graph.node:
        if node.name not in wanted:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            src = dq.input[0]
            if src in inits:
                if renamed and src in renamed:
                    orig = renamed[src]
                elif src.endswith(TENSOR_NAME_QUANT_SUFFIX):
                    orig = src[: -len(TENSOR_NAME_QUANT_SUFFIX)]
                else:
                    continue
                if orig in originals:
                    # The FP32 name may still be defined in the QDQ graph (an initializer, or a node output such as
                    # a folded Conv bias): redefining it makes an invalid model, so add it only when it is absent.
                    if orig not in inits and orig not in producer and orig not in graph_inputs:
                        graph.initializer.append(originals[orig])
                        inits.add(orig)
                    node.input[i] = orig
            else:
                q = producer.get(src)
                if q is not None and q.op_type == "QuantizeLinear":
                    node.input[i] = q.input[0]
    _prune(m)
    return m


def _prune(model: Any) -> None:
    """Drop nodes and initializers nothing reads any more (after rewiring)."""
    graph = model.graph
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
