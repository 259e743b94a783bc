"""What a hardware-in-the-loop test holds: one target, with typed ``run``, ``deploy``, ``check`` and ``status``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.deploy.core import DeployResult, StatusResult
from edgepack.targets import Target, resolve
from edgepack.transports.base import Result, Transport


@dataclass(frozen=True)
class Gate:
    name: str
    threshold: float
    value: float
    passed: bool


@dataclass(frozen=True)
class CheckResult:
    """The on-device check (DESIGN.md ``check --json``) as a typed value."""

    target: str
    bundle_id: str
    arch: str
    samples: int
    metrics: dict[str, Any]
    gates: list[Gate]
    passed: bool
    document: dict[str, Any] = field(repr=False)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> CheckResult:
        return cls(
            target=str(doc.get("target")),
            bundle_id=str(doc.get("bundle_id")),
            arch=str(doc.get("arch")),
            samples=int(doc.get("samples", 0)),
            metrics=dict(doc.get("metrics", {})),
            gates=[
                Gate(g["name"], float(g["threshold"]), float(g["value"]), bool(g["passed"]))
                for g in doc.get("gates", [])
            ],
            passed=bool(doc.get("passed")),
            document=doc,
        )

    @property
    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]


class TargetHandle:
    """An open connection to one target for a test; the fixture closes it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._transport: Transport | None = None

    @classmethod
    def open(cls, name: str) -> TargetHandle:
        return cls(resolve(name))

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = self.target.connect()
        return self._transport

    def run(self, command: str, *, timeout: float = 120.0) -> Result:
        """Run a shell command on the target; the result carries stdout, stderr and the exit code."""
        return self.transport.run(command, timeout=timeout)

    def deploy(self, bundle: Path | str, *, check: bool = False, rollback_on_fail: bool = False) -> DeployResult:
        from edgepack.deploy.core import deploy_to

        return deploy_to(
            self.target, Path(bundle), transport=self.transport, check=check, rollback_on_fail=rollback_on_fail
        )

    def check(self, bundle: Path | str | None = None) -> CheckResult:
        """Check the installed release (deploying ``bundle`` first when given)."""
        from edgepack.checks.device import run_check

        manifest = None
        if bundle is not None:
            from edgepack.bundle import read_manifest

            self.deploy(bundle)
            manifest = read_manifest(Path(bundle))
        return CheckResult.from_document(run_check(self.transport, self.target, manifest))

    def status(self) -> StatusResult:
        from edgepack.deploy.core import status

        return status(self.target, transport=self.transport)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
