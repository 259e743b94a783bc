"""Building the reference set for a model: which inputs, which output is compared, FP32 outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepack.checks.inputs import (
    SPEECH_WAV,
    InputSpec,
    calibration_arrays,
    calibration_texts,
    generated_feeds,
    model_io,
    read_wav_16k,
    text_feeds,
    vad_feeds,
    vad_frames,
)
from edgepack.checks.reference import ReferenceSample, ReferenceSet
from edgepack.checks.sentences import REFERENCE_SENTENCES
from edgepack.errors import SourceError
from edgepack.runtime.session import make_session, run_all

# ORT's type strings for the element types checks.inputs knows (anything else reads as float32 there too).
_ORT_TO_NUMPY = {
    f"tensor({t})": n
    for t, n in {
        "float": "float32",
        "uint8": "uint8",
        "int8": "int8",
        "int16": "int16",
        "int32": "int32",
        "int64": "int64",
        "bool": "bool",
        "float16": "float16",
        "double": "float64",
    }.items()
}
TEXT_TASKS = {"feature-extraction", "text-classification", "sentence-similarity"}
VAD_FRAMES = 64
GENERATED_SAMPLES = 32


def detect_task(source: Path) -> str:
    import json

    if source.is_dir():
        if (source / "modules.json").is_file():
            return "feature-extraction"
        cfg = json.loads((source / "config.json").read_text(encoding="utf-8"))
        if any(str(a).endswith("ForSequenceClassification") for a in cfg.get("architectures") or []):
            return "text-classification"
        return "feature-extraction"
    from edgepack.passes.export import load_checked_onnx

    load_checked_onnx(source)  # a broken file is reported as such before anything reads its inputs
    inputs, _ = model_io(source)
    if {"input", "state", "sr"} <= {i.name for i in inputs}:
        return "audio-vad"
    return "generic"


def compare_output(task: str, outputs: list[str], source_dir: Path | None) -> tuple[str, dict[str, object]]:
    """The output the accuracy metrics use, and the postprocess applied to it first."""
    if task in ("feature-extraction", "sentence-similarity"):
        if "sentence_embedding" in outputs:
            return "sentence_embedding", {"kind": "none"}
        for name in ("last_hidden_state", "token_embeddings"):
            if name in outputs:
                normalize = source_dir is not None and "Normalize" in (
                    (source_dir / "modules.json").read_text(encoding="utf-8")
                    if (source_dir / "modules.json").is_file()
                    else ""
                )
                return name, {"kind": "mean_pooling", "normalize": normalize, "mask_input": "attention_mask"}
    if task == "text-classification" and "logits" in outputs:
        return "logits", {"kind": "none"}
    if task == "audio-vad" and "output" in outputs:
        return "output", {"kind": "none"}
    return outputs[0], {"kind": "none"}


def build_feeds(
    task: str, model: Path, inputs: list[InputSpec], tokenizer_dir: Path | None, calibration: Path | None
) -> tuple[list[dict[str, np.ndarray]], list[str | None], list[dict[str, np.ndarray]]]:
    """(reference feeds, their texts, calibration feeds)."""
    if task in TEXT_TASKS:
        if tokenizer_dir is None:
            raise SourceError(f"task {task} needs a tokenizer", "package the model folder, not a bare .onnx")
        if calibration is not None and calibration.is_dir():
            raise SourceError(
                f"--calibration {calibration} is a folder; text models take a text file",
                "give a UTF-8 file with one text a line",
            )
        user = calibration_texts(calibration) if calibration is not None else []
        texts = list(REFERENCE_SENTENCES) + user
        feeds = text_feeds(texts, tokenizer_dir, inputs)
        calib = feeds
        return feeds, list(texts), calib
    if calibration is not None:
        if not calibration.is_dir():
            raise SourceError(
                f"--calibration {calibration} must be a folder of .npy/.npz files for this model",
                "put one sample a file in a folder",
            )
        feeds = calibration_arrays(calibration, inputs)
        return feeds, [None] * len(feeds), feeds
    if task == "audio-vad":
        frames = vad_frames(read_wav_16k(SPEECH_WAV), VAD_FRAMES)
        feeds = vad_feeds(model, frames)
        return feeds, [None] * len(feeds), feeds
    feeds = generated_feeds(inputs, GENERATED_SAMPLES)
    return feeds, [None] * len(feeds), feeds


def session_io(session: Any) -> tuple[list[InputSpec], list[str]]:
    """The inputs ``checks.inputs.model_io`` reads from the model file (as declared) and the output names, from a
    session already open on it: parsing MiniLM's 90 MB again just for them costs a fifth of a second."""
    inputs = [
        InputSpec(a.name, _ORT_TO_NUMPY.get(a.type, "float32"), [_dim(d) for d in a.shape])
        for a in session.get_inputs()
    ]
    return inputs, [o.name for o in session.get_outputs()]


def _dim(d: Any) -> int | str:
    return d if isinstance(d, int | str) else "?"  # ORT gives None for a dim with neither value nor name


def build_reference(
    task: str, model: Path, tokenizer_dir: Path | None, calibration: Path | None, session: Any = None
) -> tuple[ReferenceSet, list[dict[str, np.ndarray]]]:
    """The reference set and calibration feeds; ``session``: a 1-thread session on ``model`` to run (one is made if
    not given), so that the caller can time the FP32 model on it later without loading it again."""
    session = session or make_session(model, threads=1)
    inputs, outputs = session_io(session)
    feeds, texts, calib = build_feeds(task, model, inputs, tokenizer_dir, calibration)
    name, post = compare_output(task, outputs, tokenizer_dir)
    try:
        results = run_all(session, feeds, [name])
    except Exception as e:  # onnxruntime's exception types; a failing run means the inputs do not fit the model
        raise SourceError(
            f"the model does not run on the reference inputs ({str(e).splitlines()[0][:200]})",
            "check --calibration shapes and dtypes against the model inputs",
        ) from e
    samples = [
        ReferenceSample(f"s{i:03d}", f, r, t) for i, (f, r, t) in enumerate(zip(feeds, results, texts, strict=True))
    ]
    return ReferenceSet(task=task, compare_output=name, samples=samples, postprocess=post), calib
