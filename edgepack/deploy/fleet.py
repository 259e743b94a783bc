"""Deploying one bundle to many targets at once, with a bounded pool and one result per target."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgepack.deploy.core import DeployResult, deploy_to
from edgepack.deploy.transfer import LocalBundle, prepare
from edgepack.errors import EdgepackError
from edgepack.targets import Target
from edgepack.transports.base import ProgressFn

MAX_PARALLEL = 8


def deploy_many(
    targets: list[Target],
    bundle: Path | LocalBundle,
    *,
    progress: ProgressFn | None = None,
    parallel: int = MAX_PARALLEL,
    check: bool = False,
    rollback_on_fail: bool = False,
    keep: int = 3,
) -> list[DeployResult]:
    """Deploy to every target (at most ``parallel`` at a time); a failure on one never stops the others."""
    local = bundle if isinstance(bundle, LocalBundle) else prepare(Path(bundle))

    def one(tgt: Target) -> DeployResult:
        t0 = time.monotonic()
        try:
            return deploy_to(tgt, local, progress=progress, keep=keep, check=check, rollback_on_fail=rollback_on_fail)
        except EdgepackError as e:
            # Recorded per target (status: failed); the caller turns any failure into exit 3.
            return DeployResult(tgt.name, local.id, "failed", 0, time.monotonic() - t0, error=str(e))

    if len(targets) == 1 or parallel <= 1:
        return [one(t) for t in targets]
    with ThreadPoolExecutor(max_workers=min(parallel, len(targets)), thread_name_prefix="deploy") as pool:
        return list(pool.map(one, targets))
