"""The typed device profile (DESIGN.md "Profiles"). Unknown keys are errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Arch = Literal["aarch64", "armv7l", "x86_64"]
QuantMode = Literal["none", "int8-dynamic", "int8-static", "int4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Device(_Strict):
    arch: Arch
    bits: Literal[32, 64]
    cpu: str | None = Field(default=None, description="CPU core, e.g. cortex-a76 (used for virtual boards)")
    isa: list[str] = Field(default_factory=list)
    glibc: str = "2.31"
    memory_mb: int = Field(gt=0)
    storage_mb: int = Field(gt=0)
    accelerator: Literal["none", "cuda", "tensorrt"] = "none"


class Runtime(_Strict):
    onnxruntime: str = "1.32.0"
    execution_providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    source: Literal["wheel", "path", "minimal-build"] = "wheel"
    threads: int = Field(default=1, ge=0)
    opset: int = Field(default=17, ge=11, le=23)
    path: str | None = None


class Quantization(_Strict):
    default: QuantMode = "int8-dynamic"
    weight_type: Literal["QInt8", "QUInt8"] = "QInt8"
    per_channel: bool = True
    exclude_ops: list[str] = Field(default_factory=list)
    int4_block_size: int = Field(default=32, ge=16)
    int4_quantize_embeddings: bool = True
    fallback: bool = True


class Budgets(_Strict):
    max_model_mb: float | None = Field(default=None, gt=0)
    max_runtime_mb: float | None = Field(default=None, gt=0)
    max_peak_rss_mb: float | None = Field(default=None, gt=0)


class Gates(_Strict):
    cosine_mean_min: float | None = Field(default=None, ge=-1, le=1)
    cosine_min_min: float | None = Field(default=None, ge=-1, le=1)
    top1_agreement_min: float | None = Field(default=None, ge=0, le=1)
    max_abs_error_max: float | None = Field(default=None, ge=0)
    latency_ms_p90_max: float | None = Field(default=None, gt=0)
    peak_rss_mb_max: float | None = Field(default=None, gt=0)


class Host(_Strict):
    kind: Literal["dotnet-iot", "python"] = "dotnet-iot"
    dotnet: Literal["mono", "dotnet"] = "mono"


class Profile(_Strict):
    name: str
    description: str = ""
    device: Device
    runtime: Runtime = Field(default_factory=Runtime)
    quantization: Quantization = Field(default_factory=Quantization)
    budgets: Budgets = Field(default_factory=Budgets)
    gates: Gates = Field(default_factory=Gates)
    host: Host = Field(default_factory=Host)
