"""Reference data: inputs for a model, the FP32 model's outputs on them, and how they are stored in a bundle.

The on-disk format is docs/bundle-internals.md ("reference/index.json"); the C# host reads the same files.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import SourceError

REFERENCE_FORMAT = "edgepack-reference/1"
# Timed runs per on-device check (after the accuracy pass over every sample, which doubles as warm-up): enough
# for a stable p90 while an emulated board (~1 s a MiniLM run under qemu) still checks in a couple of minutes.
LATENCY_REPEATS = 30

METRIC_KINDS = {
    "feature-extraction": ["cosine", "max_abs_error"],
    "text-classification": ["top1", "max_abs_error"],
    "image-classification": ["top1", "max_abs_error"],
}


def metric_kinds_for(task: str) -> list[str]:
    return METRIC_KINDS.get(task, ["max_abs_error"])


@dataclass
class ReferenceSample:
    id: str
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    text: str | None = None


@dataclass
class ReferenceSet:
    task: str
    compare_output: str
    samples: list[ReferenceSample]
    postprocess: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})

    @property
    def metric_kinds(self) -> list[str]:
        return metric_kinds_for(self.task)

    def compare_values(
        self, outputs: list[dict[str, np.ndarray]], feeds: list[dict[str, np.ndarray]] | None = None
    ) -> list[np.ndarray]:
        """The compared output of each sample after the postprocess step (mean pooling where asked)."""
        feeds = feeds or [s.feeds for s in self.samples]
        return [postprocess(o[self.compare_output], f, self.postprocess) for o, f in zip(outputs, feeds, strict=True)]

    def references(self) -> list[np.ndarray]:
        return self.compare_values([s.outputs for s in self.samples])

    def files(self, input_names: list[str], model_member: str, threads: int) -> dict[str, bytes]:
        """The ``reference/`` members (path relative to the bundle root → bytes) for a model with these inputs."""
        out: dict[str, bytes] = {}
        index_samples = []
        for s in self.samples:
            inputs = {}
            for name in input_names:
                if name not in s.feeds:
                    raise SourceError(f"reference sample {s.id} has no input '{name}'", "report this as a bug")
                rel = f"inputs/{s.id}.{name}.npy"
                out[f"reference/{rel}"] = npy_bytes(s.feeds[name])
                inputs[name] = rel
            rel_out = f"outputs/{s.id}.{self.compare_output}.npy"
            out[f"reference/{rel_out}"] = npy_bytes(s.outputs[self.compare_output].astype(np.float32))
            entry: dict[str, Any] = {"id": s.id, "inputs": inputs, "outputs": {self.compare_output: rel_out}}
            if s.text is not None:
                entry["text"] = s.text
            index_samples.append(entry)
        index = {
            "format": REFERENCE_FORMAT,
            "task": self.task,
            "model_member": model_member,
            "compare_output": self.compare_output,
            "postprocess": self.postprocess,
            "metrics": self.metric_kinds,
            "threads": threads,
            "latency_repeats": LATENCY_REPEATS,
            "samples": index_samples,
        }
        out["reference/index.json"] = (json.dumps(index, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
        texts = [s.text for s in self.samples if s.text is not None]
        if texts:
            out["reference/texts.txt"] = ("\n".join(t.replace("\n", " ") for t in texts) + "\n").encode()
        return out


def postprocess(value: np.ndarray, feeds: dict[str, np.ndarray], spec: dict[str, Any]) -> np.ndarray:
    if spec.get("kind", "none") == "none":
        return np.asarray(value, dtype=np.float32)
    if spec["kind"] == "mean_pooling":
        mask = feeds[spec.get("mask_input", "attention_mask")].astype(np.float32)[..., None]
        pooled = (value * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if spec.get("normalize"):
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
        return np.asarray(pooled, dtype=np.float32)
    raise SourceError(f"unknown postprocess kind {spec['kind']!r}", "use none or mean_pooling")


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def load_reference_dir(root: Path) -> ReferenceSet:
    """Read an extracted bundle's ``reference/`` folder back (used by tests and the Python host)."""
    index = json.loads((root / "index.json").read_text(encoding="utf-8"))
    samples = []
    for e in index["samples"]:
        feeds = {k: np.load(root / v) for k, v in e["inputs"].items()}
        outputs = {k: np.load(root / v) for k, v in e["outputs"].items()}
        samples.append(ReferenceSample(e["id"], feeds, outputs, e.get("text")))
    return ReferenceSet(index["task"], index["compare_output"], samples, index.get("postprocess", {"kind": "none"}))
