"""Accuracy and latency metrics, exactly as docs/bundle-internals.md defines them (the C# host mirrors this)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def top1_agree(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(
        np.argmax(np.asarray(a), axis=-1).ravel().tolist() == np.argmax(np.asarray(b), axis=-1).ravel().tolist()
    )


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(s)))
    return float(s[rank - 1])


def accuracy(
    references: Sequence[np.ndarray], candidates: Sequence[np.ndarray], kinds: Sequence[str]
) -> dict[str, Any]:
    """Metrics over samples: ``kinds`` ⊆ {cosine, top1, max_abs_error}. Also returns per-sample cosine."""
    out: dict[str, Any] = {}
    if "cosine" in kinds:
        cos = [cosine(a, b) for a, b in zip(references, candidates, strict=True)]
        out["cosine_mean"] = float(np.mean(cos))
        out["cosine_min"] = float(np.min(cos))
        out["per_sample_cosine"] = cos
    if "top1" in kinds:
        agree = [top1_agree(a, b) for a, b in zip(references, candidates, strict=True)]
        out["top1_agreement"] = float(np.mean(agree))
    out["max_abs_error"] = max(max_abs(a, b) for a, b in zip(references, candidates, strict=True))
    return out


GATE_METRICS: dict[str, tuple[str, str]] = {
    "cosine_mean_min": ("cosine_mean", ">="),
    "cosine_min_min": ("cosine_min", ">="),
    "top1_agreement_min": ("top1_agreement", ">="),
    "max_abs_error_max": ("max_abs_error", "<="),
    "latency_ms_p90_max": ("latency_ms.p90", "<="),
    "peak_rss_mb_max": ("peak_rss_mb", "<="),
}


def _lookup(metrics: dict[str, Any], dotted: str) -> float | None:
    cur: Any = metrics
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, (int, float)) else None


def apply_gates(gates: dict[str, float | None], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{name, threshold, value, passed}]`` for each set gate whose metric is present."""
    results = []
    for name, threshold in gates.items():
        if threshold is None or name not in GATE_METRICS:
            continue
        key, op = GATE_METRICS[name]
        value = _lookup(metrics, key)
        if value is None:
            continue
        passed = value >= threshold if op == ">=" else value <= threshold
        results.append({"name": name, "threshold": threshold, "value": value, "passed": bool(passed)})
    return results
