"""What a pass is: a typed config, a ``run(artifact, context) -> artifact`` and a log entry.

The pipeline chains passes and writes each ``PassRecord`` into the manifest's ``passes`` list.
Heavy libraries (torch, optimum, onnxruntime.quantization) are imported inside ``run``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from edgepack.profiles import Profile

ProgressFn = Callable[[str, float, float | None], None]


class PassConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class ModelArtifact:
    """The model as it moves through the pipeline."""

    onnx_path: Path  # current model file (external data not used: models here fit in 2 GB)
    task: str  # feature-extraction | text-classification | audio-vad | generic
    source_dir: Path | None = None  # HF / ST folder for text models (tokenizer files come from here)
    ort_path: Path | None = None  # .ort made by the prune pass
    operators_config: Path | None = None
    runtime_files: list[Path] = field(default_factory=list)  # libraries for the bundle's runtime/
    runtime_version: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # facts passes leave for later passes / the manifest


@dataclass
class PassContext:
    """What every pass may read: the profile, a scratch folder, reference data for accuracy loops."""

    profile: Profile
    work_dir: Path
    reference: Any = None  # edgepack.checks.reference.ReferenceSet once the pipeline made it
    calibration: Any = None  # list[dict[str, np.ndarray]] for static quantization
    progress: ProgressFn | None = None

    def report(self, step: str, done: float, total: float | None = None) -> None:
        if self.progress is not None:
            self.progress(step, done, total)


@dataclass
class PassRecord:
    name: str
    params: dict[str, Any]
    seconds: float
    size_bytes_after: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "seconds": round(self.seconds, 3),
            "size_bytes_after": self.size_bytes_after,
        }


C = TypeVar("C", bound=PassConfig)


class Pass(Generic[C]):
    """Subclasses set ``name`` and ``Config`` and implement ``run``."""

    name: ClassVar[str]
    Config: ClassVar[type[PassConfig]]

    def __init__(self, config: C) -> None:
        self.config = config
        self.extra_params: dict[str, Any] = {}  # facts found while running (e.g. nodes that fell back)

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        raise NotImplementedError

    def execute(self, artifact: ModelArtifact, ctx: PassContext) -> tuple[ModelArtifact, PassRecord]:
        start = time.perf_counter()
        out = self.run(artifact, ctx)
        seconds = time.perf_counter() - start
        size = out.onnx_path.stat().st_size
        params = {**self.config.model_dump(mode="json"), **self.extra_params}
        return out, PassRecord(self.name, params, seconds, size)
