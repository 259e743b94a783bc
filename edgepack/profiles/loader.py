"""Loading profiles from YAML, resolving ``extends:``, and turning validation errors into one line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgepack.errors import ConfigError
from edgepack.paths import project_root
from edgepack.profiles.model import Profile


def profile_dirs() -> list[Path]:
    """Search path: $EDGEPACK_PROFILES (os.pathsep-separated), then the shipped profiles/."""
    dirs = [Path(p) for p in os.environ.get("EDGEPACK_PROFILES", "").split(os.pathsep) if p]
    dirs.append(project_root() / "profiles")
    return dirs


def available() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(profile_dirs()):
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")):
                found[f.stem] = f
    return dict(sorted(found.items()))


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"profile file {path} does not exist", "check the path") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})", "fix the YAML syntax") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a profile must be a mapping of keys", "see profiles/generic-aarch64.yaml")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _resolve_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        chain = " → ".join(p.stem for p in (*seen, path))
        raise ConfigError(f"{path}: 'extends' forms a cycle ({chain})", "remove one of the extends: lines")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: key 'extends' must be a profile name", "write extends: OTHER-PROFILE")
    sibling = path.parent / f"{parent}.yaml"
    parent_path = sibling if sibling.exists() else available().get(parent)
    if parent_path is None:
        raise ConfigError(f"{path}: extends unknown profile '{parent}'", f"use one of: {', '.join(available())}")
    base = _resolve_raw(parent_path, (*seen, path))
    base.pop("name", None)
    base.pop("description", None)
    return _merge(base, data)


def _explain(path: Path, err: Any) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        what = f"{path}: unknown key '{key}'"
        fix = "remove it or fix its spelling (see DESIGN.md 'Profiles' for the allowed keys)"
    elif kind == "missing":
        what = f"{path}: missing required key '{key}'"
        fix = "add it"
    else:
        allowed = first.get("ctx", {}).get("expected")
        what = f"{path}: key '{key}': {first['msg']} (got {first.get('input')!r})"
        fix = f"allowed: {allowed}" if allowed else "fix the value"
    return ConfigError(what, fix)


def load_file(path: Path) -> Profile:
    from pydantic import ValidationError

    raw = _resolve_raw(path.resolve())
    raw.setdefault("name", path.stem)
    try:
        return Profile.model_validate(raw)
    except ValidationError as e:
        raise _explain(path, e) from e


def load(name_or_path: str) -> Profile:
    """A shipped/known profile by name, or a profile YAML file by path."""
    p = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or p.is_file():
        return load_file(p)
    known = available()
    if name_or_path not in known:
        raise ConfigError(f"unknown profile '{name_or_path}'", f"use one of: {', '.join(known)}")
    return load_file(known[name_or_path])
