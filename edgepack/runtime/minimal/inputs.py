"""The model and reference inputs a minimal build is made and verified from: an ``.onnx`` file or a bundle."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from edgepack.errors import BundleError, SourceError

Sample = dict[str, Path]


def model_and_inputs(path: Path, dest: Path) -> tuple[Path, list[Sample] | None]:
    """``(model.onnx, reference samples)``; samples are None for a bare .onnx (then synthesized)."""
    if not path.exists():
        raise SourceError(f"model {path} does not exist", "pass an .onnx file or an .edgepack bundle")
    if path.suffix == ".onnx":
        return path, None
    if not tarfile.is_tarfile(path):
        raise SourceError(f"{path} is neither an .onnx model nor a bundle", "pass an .onnx file or an .edgepack bundle")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "r:") as tar:
        names = set(tar.getnames())
        if "model/model.onnx" not in names:
            raise SourceError(
                f"bundle {path} has no model/model.onnx (only an .ort model), so its operators cannot be re-derived",
                "pass the .onnx model the bundle was made from, or a bundle packaged with --runtime wheel",
            )
        wanted = ["model/model.onnx", *sorted(n for n in names if n.startswith("reference/"))]
        for name in wanted:
            member = tar.getmember(name)
            if not member.isfile():
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            out = dest / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(f.read())
    model = dest / "model" / "model.onnx"
    index_file = dest / "reference" / "index.json"
    if not index_file.is_file():
        return model, None
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        samples = [{name: dest / "reference" / rel for name, rel in s["inputs"].items()} for s in index["samples"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BundleError(f"{path}: reference/index.json is unreadable ({e})", "package the bundle again") from e
    return model, samples or None
