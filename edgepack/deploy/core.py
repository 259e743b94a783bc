"""Deploying a bundle to one target: preflight → skip/resume upload → install.sh → (check).

The functions here are what the CLI, the fleet and the pytest plugin call; they return values and raise
``EdgepackError``s, and never print.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgepack.deploy import installer, preflight
from edgepack.deploy.transfer import LocalBundle, prepare, upload
from edgepack.errors import ConfigError, GateFailed
from edgepack.targets import Target, resolve
from edgepack.transports.base import ProgressFn, Transport

DEFAULT_KEEP = 3
Status = Literal["installed", "unchanged", "failed"]


@dataclass
class DeployResult:
    target: str
    bundle_id: str
    status: Status
    bytes_sent: int
    seconds: float
    error: str | None = None
    #: wall time of each phase (preflight, lock, upload, install, check), for the benchmark and --json.
    phases: dict[str, float] = field(default_factory=dict)
    check: dict[str, Any] | None = None
    #: bytes of commands and scripts sent besides the bundle (bytes_sent counts the bundle's bytes only).
    control_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "target": self.target,
            "bundle_id": self.bundle_id,
            "status": self.status,
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "control_bytes": self.control_bytes,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
        }
        if self.check is not None:
            doc["check"] = self.check
        return doc


def _target(target: Target | str) -> Target:
    return target if isinstance(target, Target) else resolve(target)


def _check_hook() -> Any:
    """The on-device check lives in ``edgepack.checks.device`` (written by the check work); absent → clear error."""
    import importlib

    try:
        device = importlib.import_module("edgepack.checks.device")
    except ModuleNotFoundError as e:
        if e.name != "edgepack.checks.device":
            raise
        raise ConfigError(
            "--check needs the on-device check (edgepack.checks.device), which this version lacks",
            "deploy without --check and run 'edgepack check --target NAME' once it is available",
        ) from e
    return device.run_check


def deploy_to(
    target: Target | str,
    bundle: Path | LocalBundle,
    *,
    progress: ProgressFn | None = None,
    keep: int = DEFAULT_KEEP,
    check: bool = False,
    rollback_on_fail: bool = False,
    transport: Transport | None = None,
) -> DeployResult:
    """Install ``bundle`` on ``target`` atomically; ``current`` stays as it was if anything fails."""
    t0 = time.monotonic()
    tgt = _target(target)
    run_check = _check_hook() if check else None
    local = bundle if isinstance(bundle, LocalBundle) else prepare(Path(bundle))
    phases: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.monotonic()
        phases[name] = phases.get(name, 0.0) + now - since
        return now

    step = f"{tgt.name}: "
    own = transport is None
    tr = tgt.connect() if transport is None else transport
    try:
        t = mark("connect", t0)
        b0 = tr.bytes_out
        if progress:
            progress(step + "preflight", 0, None)
        facts = preflight.gather(tr, tgt.root, timeout=max(30.0, tgt.timeout * 2))
        preflight.check(facts, local.manifest, tgt.name)
        root = facts.root
        t = mark("preflight", t)
        with installer.DeployLock(tr, root):
            t = mark("lock", t)
            state = installer.status(tr, root, expect=local.id)
            if state.get("current") == local.id and state.get("healthy"):
                mark("verify", t)
                return DeployResult(
                    tgt.name,
                    local.id,
                    "unchanged",
                    0,
                    time.monotonic() - t0,
                    phases=phases,
                    control_bytes=tr.bytes_out - b0,
                )
            status: Status = "installed"
            sent = 0
            if local.id in state.get("releases", []) and installer.activate(tr, root, local.id, keep=keep).ok:
                t = mark("install", t)  # an intact older release: switch to it, send nothing
            else:
                t = mark("verify", t)
                partial = tr.stat(f"{root}/incoming/{local.id}.edgepack.partial")
                reusable = partial.size if partial is not None and partial.size <= local.size else 0
                # Room for the rest of the upload plus the extracted release, with 1 MB to spare.
                need = local.size - reusable + local.extracted_size + (1 << 20)
                preflight.check(facts, local.manifest, tgt.name, need_disk=need)
                up_progress = (lambda s, d, n: progress(step + "upload", d, n)) if progress else None
                remote, sent, moving = upload(tr, local, f"{root}/incoming", progress=up_progress)
                phases["upload"] = moving
                t = mark("upload_verify", t + moving)
                if progress:
                    progress(step + "install", 0, None)
                installer.install(tr, root, remote, local.id, keep=keep)
                t = mark("install", t)
            installer.cleanup_incoming(tr, root)
            result = DeployResult(
                tgt.name, local.id, status, sent, 0.0, phases=phases, control_bytes=tr.bytes_out - b0 - sent
            )
            if run_check is not None:
                result.check = run_check(tr, tgt, local.manifest)
                t = mark("check", t)
                if not result.check.get("passed", False):
                    if rollback_on_fail:
                        installer.rollback(tr, root)
                    raise GateFailed(
                        f"{tgt.name}: the on-device check failed"
                        f"{' (rolled back to the previous release)' if rollback_on_fail else ''}",
                        "see 'edgepack check --target " + tgt.name + " --json'",
                    )
        result.seconds = time.monotonic() - t0
        return result
    finally:
        if own:
            tr.close()


@dataclass
class StatusResult:
    target: str
    arch: str
    current: str | None
    previous: str | None
    releases: list[str]
    healthy: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "arch": self.arch,
            "current": self.current,
            "previous": self.previous,
            "releases": self.releases,
            "healthy": self.healthy,
        }


def _state(tgt: Target, tr: Transport) -> StatusResult:
    facts = preflight.gather(tr, tgt.root, timeout=max(30.0, tgt.timeout * 2))
    st = installer.status(tr, facts.root)
    return StatusResult(
        tgt.name,
        facts.arch,
        st.get("current"),
        st.get("previous"),
        list(st.get("releases", [])),
        bool(st.get("healthy")),
    )


def status(target: Target | str, *, transport: Transport | None = None) -> StatusResult:
    """What is installed on the target (``current`` is None when nothing is); ``healthy`` = current verifies."""
    tgt = _target(target)
    tr = tgt.connect() if transport is None else transport
    try:
        return _state(tgt, tr)
    finally:
        if transport is None:
            tr.close()


def rollback(target: Target | str, *, transport: Transport | None = None) -> StatusResult:
    """Switch ``current`` back to ``previous`` atomically (``previous`` becomes the release we left)."""
    tgt = _target(target)
    tr = tgt.connect() if transport is None else transport
    try:
        facts = preflight.gather(tr, tgt.root, timeout=max(30.0, tgt.timeout * 2))
        with installer.DeployLock(tr, facts.root):
            installer.rollback(tr, facts.root)
        return _state(tgt, tr)
    finally:
        if transport is None:
            tr.close()
