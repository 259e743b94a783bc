"""Reading ORT's ``required_operators_and_types.config`` and deciding whether one covers another.

A line is ``DOMAIN;OPSET;Op1{"inputs": {"0": ["float"]}},Op2,...``; the ``{...}`` (type reduction) is optional.
A library built from config L can run a model needing config M when every (domain, opset, op) of M is in L and,
where L restricts an op's types, M's types for it are among them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OpKey = tuple[str, int, str]


def parse(text: str) -> dict[OpKey, dict[str, Any] | None]:
    """``{(domain, opset, op): type restrictions or None (all types)}``."""
    ops: dict[OpKey, dict[str, Any] | None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        domain, opset, rest = line.split(";", 2)
        for name, types in _split_ops(rest):
            key = (domain, int(opset), name)
            prev = ops.get(key)
            ops[key] = None if (key in ops and prev is None) or types is None else _merge(prev or {}, types)
    return ops


def _split_ops(rest: str) -> list[tuple[str, dict[str, Any] | None]]:
    out: list[tuple[str, dict[str, Any] | None]] = []
    i, n = 0, len(rest)
    while i < n:
        j = i
        while j < n and rest[j] not in ",{":
            j += 1
        name = rest[i:j].strip()
        types: dict[str, Any] | None = None
        if j < n and rest[j] == "{":
            depth, k = 0, j
            while k < n:
                depth += {"{": 1, "}": -1}.get(rest[k], 0)
                k += 1
                if depth == 0:
                    break
            types = json.loads(rest[j:k])
            j = k
        if name:
            out.append((name, types))
        i = j + 1  # skip the comma
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(a))
    for section, idx in b.items():
        if isinstance(idx, dict):
            dst = out.setdefault(section, {})
            for k, v in idx.items():
                dst[k] = sorted(set(dst.get(k, [])) | set(v))
        else:
            out[section] = sorted(set(out.get(section, [])) | set(idx))
    return out


def missing(library_config: Path, model_config: Path) -> list[str]:
    """What the model needs that the library's config lacks, as readable strings; empty when covered."""
    have = parse(library_config.read_text())
    need = parse(model_config.read_text())
    gaps: list[str] = []
    for key, types in sorted(need.items()):
        domain, opset, op = key
        if key not in have:
            gaps.append(f"{domain}:{op} (opset {opset})")
            continue
        lib_types = have[key]
        if lib_types is None:
            continue
        if types is None:
            gaps.append(f"{domain}:{op} (opset {opset}) with all types")
            continue
        for section, idx in types.items():
            if isinstance(idx, dict):
                for k, v in idx.items():
                    extra = set(v) - set(lib_types.get(section, {}).get(k, []))
                    if extra and k in lib_types.get(section, {}):
                        gaps.append(f"{domain}:{op} {section}[{k}] types {sorted(extra)}")
    return gaps
