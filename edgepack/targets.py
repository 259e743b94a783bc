"""Targets: plain data saying where a device is (DESIGN.md "Targets"), resolved by name to a transport.

Search order for ``NAME`` (first hit wins): the built-in ``local``; ``$EDGEPACK_TARGETS`` (os.pathsep list of
folders); ``./targets/`` under the working directory; the project's ``targets/``; boards registered by
``edgepack board up`` under ``state_dir()/targets``. In a folder, ``NAME.yaml`` or any YAML whose ``name`` is NAME.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from edgepack.errors import ConfigError
from edgepack.paths import project_root, state_dir

if TYPE_CHECKING:
    from edgepack.transports.base import Transport

LOCAL = "local"
DEFAULT_ROOT = "~/edgepack"


class Target(BaseModel):
    """One device. ``host`` is required except for the built-in ``local``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    host: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    identity: str | None = None
    known_hosts: str | None = None
    profile: str | None = None
    root: str = DEFAULT_ROOT
    cpu: str | None = None
    kind: str | None = None
    #: seconds of silence after which a link counts as dead (TCP_USER_TIMEOUT, keepalive, connect).
    timeout: float = Field(default=15.0, gt=0, le=600)

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL or (self.name == LOCAL and self.host is None)

    def connect(self) -> Transport:
        """Open a transport to this target (raises ``ConnectError``/``HostKeyError``, exit 3)."""
        if self.is_local:
            from edgepack.transports.local import LocalTransport

            return LocalTransport(self.name)
        from edgepack.transports.ssh import SshTransport

        assert self.host is not None
        return SshTransport(
            self.name,
            self.host,
            port=self.port,
            user=self.user,
            identity=self.identity,
            known_hosts=self.known_hosts,
            timeout=self.timeout,
        ).connect()


def local_target() -> Target:
    return Target(name=LOCAL, kind=LOCAL, profile=None)


def target_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("EDGEPACK_TARGETS", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "targets", project_root() / "targets", state_dir() / "targets"]
    seen: list[Path] = []
    for d in dirs:
        if d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def _read(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"target file {path} cannot be read ({str(e).splitlines()[0]})", "fix the YAML") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a target must be a mapping of keys", "see targets/example-pi5.yaml")
    data.setdefault("name", path.stem)
    return data


def load_file(path: Path) -> Target:
    from pydantic import ValidationError

    data = _read(path)
    try:
        t = Target.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden":
            raise ConfigError(
                f"{path}: unknown key '{key}'",
                "allowed: name, host, port, user, identity, known_hosts, profile, root, cpu, kind, timeout",
            ) from e
        raise ConfigError(f"{path}: key '{key}': {first['msg']}", "fix the value") from e
    if t.host is None and not t.is_local:
        raise ConfigError(f"{path}: target '{t.name}' has no host", "add host: ADDRESS")
    return t


def available() -> dict[str, Path]:
    """Every target name found on the search path (the first definition of a name wins)."""
    found: dict[str, Path] = {}
    for d in target_dirs():
        if not d.is_dir():
            continue
        for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            try:
                name = str(_read(f).get("name", f.stem))
            except ConfigError:
                name = f.stem
            found.setdefault(name, f)
    return found


def resolve(name: str) -> Target:
    """``NAME`` → Target. Unknown names are a ConfigError listing the known ones."""
    if name == LOCAL:
        return local_target()
    path = available().get(name)
    if path is None:
        known = ", ".join([LOCAL, *sorted(available())])
        raise ConfigError(
            f"unknown target '{name}'",
            f"use one of: {known} (or add targets/{name}.yaml, or start it with 'edgepack board up')",
        )
    return load_file(path)


def resolve_many(spec: str) -> list[Target]:
    """``a,b,c`` → targets, in order, without duplicates."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError("--target is empty", "name at least one target, e.g. --target local")
    out: list[Target] = []
    for n in dict.fromkeys(names):
        out.append(resolve(n))
    return out
