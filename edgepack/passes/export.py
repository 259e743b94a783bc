"""export: a local HF / Sentence-Transformers folder → ONNX with optimum-onnx (offline); an .onnx → checked and
shape-inferred."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

from edgepack.errors import SourceError
from edgepack.passes.base import ModelArtifact, Pass, PassConfig, PassContext


class ExportConfig(PassConfig):
    opset: int = 17
    task: str = "feature-extraction"
    library: str = "auto"  # auto | transformers | sentence_transformers


def is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        (path / w).is_file() for w in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    )


def load_checked_onnx(path: Path) -> Any:
    """Load + check an .onnx, turning every way it can be broken into one SourceError."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises DecodeError, ValidationError, OSError... all mean "not a usable model"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SourceError(
            f"{path} is not a valid ONNX model ({first[:160]})", "re-export it, or check the file is complete"
        ) from e
    return model


class ExportPass(Pass[ExportConfig]):
    name: ClassVar[str] = "export"
    Config: ClassVar[type[PassConfig]] = ExportConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        out_dir = ctx.work_dir / "export"
        out_dir.mkdir(parents=True, exist_ok=True)
        src = artifact.onnx_path
        if src.suffix == ".onnx":
            return self._from_onnx(src, out_dir, artifact)
        return self._from_folder(src, out_dir, artifact, ctx)

    def _from_onnx(self, src: Path, out_dir: Path, artifact: ModelArtifact) -> ModelArtifact:
        import onnx

        model = load_checked_onnx(src)
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception as e:  # shape inference failing is a property of the model, not a crash of ours
            raise SourceError(
                f"{src}: ONNX shape inference failed ({str(e).splitlines()[0][:160]})", "fix or re-export the model"
            ) from e
        dest = out_dir / "model.onnx"
        onnx.save(inferred, str(dest))
        self.extra_params = {"source_kind": "onnx", "opset_in": _opset(inferred)}
        return ModelArtifact(onnx_path=dest, task=artifact.task, source_dir=None, notes=dict(artifact.notes))

    def _from_folder(self, src: Path, out_dir: Path, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        cfg: ExportConfig = self.config
        library = cfg.library
        if library == "auto":
            library = "sentence_transformers" if (src / "modules.json").is_file() else "transformers"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        ctx.report("export", 0, 1)
        import logging
        import warnings

        from optimum.exporters.onnx import main_export

        logging.getLogger("optimum").setLevel(logging.ERROR)
        logging.getLogger("transformers").setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                main_export(
                    str(src),
                    output=str(out_dir),
                    task=cfg.task,
                    opset=cfg.opset,
                    library_name=library,
                    do_validation=False,
                    device="cpu",
                    local_files_only=True,
                )
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise SourceError(
                f"cannot export {src} to ONNX ({str(e).strip().splitlines()[0][:200]})",
                "give a Hugging Face model folder (config.json + weights) or an .onnx file",
            ) from e
        dest = out_dir / "model.onnx"
        if not dest.is_file():
            raise SourceError(f"optimum wrote no model.onnx for {src}", "check the model folder and --task")
        for extra in out_dir.glob("*.onnx_data"):
            raise SourceError(
                f"{src} exported with external data ({extra.name}); models over 2 GB are not supported",
                "use a smaller model",
            )
        ctx.report("export", 1, 1)
        self.extra_params = {"source_kind": "folder", "library": library}
        shutil.rmtree(out_dir / "__pycache__", ignore_errors=True)
        return ModelArtifact(onnx_path=dest, task=artifact.task, source_dir=src, notes=dict(artifact.notes))


def _opset(model: object) -> int:
    for imp in model.opset_import:  # type: ignore[attr-defined]
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0
