"""Running models with the Python onnxruntime on this machine: sessions, outputs, timed runs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def make_session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def input_names(session: Any) -> list[str]:
    return [i.name for i in session.get_inputs()]


def run_all(
    session: Any, feeds: Sequence[dict[str, np.ndarray]], outputs: list[str] | None = None
) -> list[dict[str, np.ndarray]]:
    names = input_names(session)
    out_names = outputs or [o.name for o in session.get_outputs()]
    results = []
    for feed in feeds:
        values = session.run(out_names, {k: v for k, v in feed.items() if k in names})
        results.append(dict(zip(out_names, values, strict=True)))
    return results


def interleaved_latency(
    sessions: Sequence[Any], feeds: Sequence[dict[str, np.ndarray]], repeats: int = 40
) -> list[list[float]]:
    """Per-session run times in ms, measured alternately (A, B, A, B …) so load on the machine hits all alike."""
    names = [input_names(s) for s in sessions]
    prepared = [[{k: v for k, v in f.items() if k in n} for f in feeds] for n in names]
    for s, fs in zip(sessions, prepared, strict=True):
        s.run(None, fs[0])  # warm-up: first run allocates arenas
    times: list[list[float]] = [[] for _ in sessions]
    for r in range(repeats):
        for i, s in enumerate(sessions):
            feed = prepared[i][r % len(feeds)]
            t0 = time.perf_counter()
            s.run(None, feed)
            times[i].append((time.perf_counter() - t0) * 1000.0)
    return times
