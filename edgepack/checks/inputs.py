"""Making model inputs: tokenized texts, audio frames for a VAD, generated tensors, user calibration files."""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import SourceError

_ONNX_TO_NUMPY = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
}
SPEECH_WAV = Path(__file__).parent / "data" / "speech_16k.wav"


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: list[int | str]  # ints for fixed dims, names for dynamic ones

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape}


def value_specs(values: Any) -> list[InputSpec]:
    specs = []
    for v in values:
        t = v.type.tensor_type
        dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        specs.append(InputSpec(v.name, np.dtype(_ONNX_TO_NUMPY.get(t.elem_type, np.float32)).name, dims))
    return specs


def model_io(path: Path) -> tuple[list[InputSpec], list[InputSpec]]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return value_specs([i for i in m.graph.input if i.name not in inits]), value_specs(m.graph.output)


def max_seq_length(tokenizer_dir: Path) -> int:
    """sentence_bert_config.json max_seq_length, then tokenizer_config model_max_length, capped at 512."""
    for fname, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        f = tokenizer_dir / fname
        if f.is_file():
            value = json.loads(f.read_text(encoding="utf-8")).get(key)
            if isinstance(value, int) and value > 0:
                return min(value, 512)
    return 512


def text_feeds(texts: list[str], tokenizer_dir: Path, inputs: list[InputSpec]) -> list[dict[str, np.ndarray]]:
    """One feed per text, batch 1, no padding, truncated to the model's max length (as sentence-transformers)."""
    from tokenizers import Tokenizer

    tok_file = tokenizer_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise SourceError(f"{tokenizer_dir} has no tokenizer.json", "export the tokenizer with the model")
    tok = Tokenizer.from_file(str(tok_file))
    tok.no_padding()
    tok.enable_truncation(max_seq_length(tokenizer_dir))
    feeds = []
    names = {i.name for i in inputs}
    for text in texts:
        enc = tok.encode(text)
        feed: dict[str, np.ndarray] = {}
        ids = np.asarray([enc.ids], dtype=np.int64)
        if "input_ids" in names:
            feed["input_ids"] = ids
        if "attention_mask" in names:
            feed["attention_mask"] = np.asarray([enc.attention_mask], dtype=np.int64)
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.asarray([enc.type_ids], dtype=np.int64)
        missing = names - set(feed)
        if missing:
            raise SourceError(
                f"cannot make text inputs for model inputs {sorted(missing)}",
                "pass --calibration with .npz files that hold every input",
            )
        feeds.append(feed)
    return feeds


def read_wav_16k(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != 16000 or w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SourceError(f"{path} is not 16 kHz mono 16-bit PCM", "convert it: sox IN -r 16000 -c 1 -b 16 OUT")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def vad_frames(audio: np.ndarray, count: int, frame: int = 512, context: int = 64) -> list[np.ndarray]:
    """Windows as silero-vad (v5+) consumes them: ``context`` samples carried over from the previous chunk, then
    ``frame`` new samples (576 at 16 kHz)."""
    n = min(count, len(audio) // frame)
    padded = np.concatenate([np.zeros(context, dtype=np.float32), audio.astype(np.float32)])
    return [padded[i * frame : i * frame + context + frame][None, :].copy() for i in range(n)]


def vad_feeds(model_path: Path, frames: list[np.ndarray], sample_rate: int = 16000) -> list[dict[str, np.ndarray]]:
    """Stateful VAD feeds: each frame gets the recurrent state the FP32 model produced for the frames before it."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    state = np.zeros((2, 1, 128), dtype=np.float32)
    feeds = []
    for fr in frames:
        feed: dict[str, np.ndarray] = {"input": fr.astype(np.float32), "state": state}
        if "sr" in names:
            feed["sr"] = np.array(sample_rate, dtype=np.int64)
        feeds.append(feed)
        _, state = sess.run(None, feed)
        state = np.asarray(state, dtype=np.float32)
    return feeds


def generated_feeds(inputs: list[InputSpec], count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded inputs of the right shape (dynamic dims → 1 for the first axis, 16 elsewhere)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {}
        for spec in inputs:
            shape = [d if isinstance(d, int) and d > 0 else (1 if i == 0 else 16) for i, d in enumerate(spec.shape)]
            dt = np.dtype(spec.dtype)
            if dt.kind == "f":
                feed[spec.name] = rng.standard_normal(shape).astype(dt)
            elif dt.kind == "b":
                feed[spec.name] = rng.integers(0, 2, shape).astype(dt)
            else:
                feed[spec.name] = rng.integers(0, 100, shape).astype(dt)
        feeds.append(feed)
    return feeds


def calibration_texts(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise SourceError(f"--calibration {path} is not UTF-8 text", "give one text a line, UTF-8") from e
    texts = [ln.strip() for ln in lines if ln.strip()]
    if not texts:
        raise SourceError(f"--calibration {path} has no texts", "give one text a line")
    return texts


def calibration_arrays(path: Path, inputs: list[InputSpec]) -> list[dict[str, np.ndarray]]:
    """A folder of .npy (single-input models) or .npz (one array per input name) files, one sample each."""
    files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
    if not files:
        raise SourceError(f"--calibration folder {path} has no .npy or .npz files", "add one file a sample")
    feeds = []
    for f in files:
        try:
            if f.suffix == ".npy":
                if len(inputs) != 1:
                    raise SourceError(
                        f"{f}: .npy samples only work for single-input models (this one has "
                        f"{[i.name for i in inputs]})",
                        "use .npz files with one array per input",
                    )
                feed = {inputs[0].name: np.load(f, allow_pickle=False)}
            else:
                with np.load(f, allow_pickle=False) as z:
                    feed = {k: z[k] for k in z.files}
        except (ValueError, OSError) as e:
            raise SourceError(f"{f}: not a readable NumPy file ({e})", "save samples with numpy.save/savez") from e
        for spec in inputs:
            if spec.name not in feed:
                raise SourceError(f"{f}: missing input '{spec.name}'", f"include arrays for {[i.name for i in inputs]}")
            arr = feed[spec.name]
            if len(arr.shape) != len(spec.shape) or any(
                isinstance(d, int) and d > 0 and d != a for d, a in zip(spec.shape, arr.shape, strict=True)
            ):
                raise SourceError(
                    f"{f}: input '{spec.name}' has shape {list(arr.shape)}, the model takes {spec.shape}",
                    "save one sample per file with the model's input shape (batch 1)",
                )
            feed[spec.name] = arr.astype(np.dtype(spec.dtype), copy=False)
        feeds.append(feed)
    return feeds
