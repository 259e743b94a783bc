"""The on-device check: run the device host's ``check`` on the installed release and gate its metrics.

Metrics are computed on the device by the host from the bundle's ``reference/`` data; here we only start it
over the target's transport, read its ``check --json`` document, and apply the bundle profile's gates.
"""

from __future__ import annotations

import json
from typing import Any

from edgepack.checks.metrics import apply_gates
from edgepack.errors import CommandFailed, ConfigError
from edgepack.targets import Target, resolve
from edgepack.transports.base import Transport, quote

CHECK_TIMEOUT = 900.0


def host_command(manifest: dict[str, Any], bundle_dir: str) -> str:
    """The shell command that runs the bundle's host ``check`` on the device."""
    host = manifest.get("profile", {}).get("host", {})
    kind = host.get("kind", "dotnet-iot")
    if kind == "dotnet-iot":
        if host.get("dotnet", "mono") != "mono":
            # Bundles carry the Mono-built exe; a `dotnet publish` output is the user's own build, not shipped.
            raise ConfigError(
                "the bundle's host runs under Mono; host.dotnet: dotnet is not shipped in bundles",
                "set host.dotnet: mono in the profile and install mono-runtime on the device",
            )
        return f"cd {quote(bundle_dir)} && mono host/edgepack-host.exe check --bundle-dir . --json --details"
    if kind == "python":
        return f"cd {quote(bundle_dir)} && python3 host/edgepack_host.py check --bundle-dir . --json"
    raise ConfigError(f"unknown host kind {kind!r} in the bundle's profile", "use dotnet-iot or python")


def _current_manifest(transport: Transport, bundle_dir: str, target: str) -> dict[str, Any]:
    r = transport.run(f"cat {quote(bundle_dir)}/manifest.json", timeout=60)
    if not r.ok:
        raise ConfigError(
            f"{target}: no bundle is installed", f"deploy one first: edgepack deploy BUNDLE --target {target}"
        )
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def run_check(
    transport: Transport, target: Target, manifest: dict[str, Any] | None = None, *, timeout: float = CHECK_TIMEOUT
) -> dict[str, Any]:
    """Run the check on ``target``'s current release; returns DESIGN's ``check --json`` document."""
    return check_installed(transport, target, manifest, timeout=timeout)[0]


def check_installed(
    transport: Transport, target: Target, manifest: dict[str, Any] | None = None, *, timeout: float = CHECK_TIMEOUT
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(check document, manifest of the installed release)."""
    from edgepack.deploy import preflight

    facts = preflight.gather(transport, target.root, timeout=max(30.0, target.timeout * 2))
    bundle_dir = f"{facts.root}/current"
    installed = _current_manifest(transport, bundle_dir, target.name)
    if manifest is not None and manifest.get("id") != installed.get("id"):
        raise ConfigError(
            f"{target.name}: the installed bundle is {installed.get('id', '?')[:12]}, not "
            f"{manifest.get('id', '?')[:12]}",
            "deploy the bundle before checking it",
        )
    command = host_command(installed, bundle_dir)
    r = transport.run(command, timeout=timeout)
    if r.exit_code == 2 and "--details" in r.stderr:
        # A host from an older bundle has no per-sample details: its metrics are still the device's own.
        r = transport.run(command.replace(" --details", ""), timeout=timeout)
    if r.exit_code == 2:
        lines = (r.stderr.strip() or r.stdout.strip()).splitlines()
        detail = lines[-1] if lines else "exit status 2"
        raise ConfigError(f"{target.name}: the device host refused the check: {detail}", "see the host's message")
    if r.exit_code != 1:  # 1 = a gate failed, which the document below reports
        r.check(target.name, "the device host's check")
    try:
        doc: dict[str, Any] = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise CommandFailed(
            f"{target.name}: the device host printed no check document ({e})",
            "run the host's check by hand on the device",
            stdout=r.stdout,
            stderr=r.stderr,
        ) from e
    doc["target"] = target.name
    doc["bundle_id"] = installed.get("id")
    doc.setdefault("arch", facts.arch)
    # The profile inside the installed bundle is the one that gates it (the host applies the same rules).
    doc["gates"] = apply_gates(installed.get("profile", {}).get("gates", {}), doc.get("metrics", {}))
    doc["passed"] = all(g["passed"] for g in doc["gates"])
    return doc, installed


def check_target(name: str, *, timeout: float = CHECK_TIMEOUT) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connect to the target by name and check its current release: (check document, installed manifest)."""
    target = resolve(name)
    transport = target.connect()
    try:
        return check_installed(transport, target, timeout=timeout)
    finally:
        transport.close()
