"""Locating and running the C# device host (``build/host/edgepack-host.exe``) from Python."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgepack.errors import ConfigError
from edgepack.paths import project_root


def host_exe() -> Path:
    """The built host; it is not built on demand because that needs mcs and takes seconds."""
    exe = project_root() / "build" / "host" / "edgepack-host.exe"
    if not exe.is_file():
        raise ConfigError(f"the C# device host {exe} is not built", "run 'make host'")
    return exe


def mono() -> str:
    found = shutil.which("mono")
    if found is None:
        raise ConfigError("mono is not installed, so the C# device host cannot run here", "install mono-runtime")
    return found


def host_command(args: Sequence[str], exe: Path | None = None) -> list[str]:
    """argv that runs the host with ``args`` under Mono."""
    return [mono(), str(exe or host_exe()), *args]


def run_host(
    args: Sequence[str],
    ort_lib: Path | None = None,
    timeout: float = 600,
    input_text: str | None = None,
    exe: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs the host to completion; returns the completed process (exit 0 ok, 1 gate failed, 2 bad input).

    ``ort_lib`` is passed as EDGEPACK_ORT_LIB, which the host uses when a bundle ships no runtime/.
    """
    env = dict(os.environ)
    if ort_lib is not None:
        env["EDGEPACK_ORT_LIB"] = str(ort_lib)
    return subprocess.run(
        host_command(args, exe),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=env,
        input=input_text,
        check=False,
    )
