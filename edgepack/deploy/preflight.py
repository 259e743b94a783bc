"""Preflight: read the board's facts, then decide whether the bundle's profile can run there.

Nothing of the bundle moves before this passes. Facts come from one small POSIX command (no Python on the
device): ``uname``, ``getconf``, the aux vector (``LD_SHOW_AUXV=1 /bin/true`` → ``AT_HWCAP``; qemu-user shows the
host's /proc/cpuinfo, so HWCAP is the reliable source, /proc/cpuinfo ``Features`` a fallback), glibc, ``df`` and
``/proc/meminfo``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from edgepack.errors import PreflightFailed
from edgepack.transports.base import Transport, quote

# Linux arm64 HWCAP bits (arch/arm64/include/uapi/asm/hwcap.h) → profile ISA names.
_ARM64_HWCAP = {1: "neon", 10: "fp16", 20: "dotprod", 22: "sve"}
_ARM64_HWCAP2 = {13: "i8mm", 14: "bf16"}
# 32-bit ARM HWCAP: bit 12 = NEON.
_ARM32_HWCAP = {12: "neon"}
# /proc/cpuinfo names → profile ISA names.
_CPUINFO = {
    "asimd": "neon",
    "neon": "neon",
    "asimddp": "dotprod",
    "asimdhp": "fp16",
    "i8mm": "i8mm",
    "sve": "sve",
    "bf16": "bf16",
    "avx2": "avx2",
    "avx512_vnni": "avx512vnni",
    "avx512f": "avx512",
    "fma": "fma",
    "avx_vnni": "avxvnni",
}
_ARCH_ALIASES = {"arm64": "aarch64", "armv8l": "armv7l", "armhf": "armv7l", "amd64": "x86_64"}

_FACTS_SCRIPT = r"""
R=%(root)s
case $R in "~"|"~/"*) R="$HOME${R#\~}" ;; esac
echo "root=$R"
echo "arch=$(uname -m)"
echo "bits=$(getconf LONG_BIT 2>/dev/null)"
LD_SHOW_AUXV=1 /bin/true 2>/dev/null | sed -n 's/^AT_HWCAP:[[:space:]]*/hwcap=/p; s/^AT_HWCAP2:[[:space:]]*/hwcap2=/p'
echo "features=$(grep -m1 -i '^Features' /proc/cpuinfo 2>/dev/null | cut -d: -f2)"
echo "flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2)"
v=$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1)
echo "glibc=$(echo "$v" | grep -o '[0-9][0-9]*\.[0-9][0-9]*' | head -n 1)"
d=$R; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "disk_free_kb=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
echo "mem_available_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null)"
for t in mono dotnet tar sha256sum awk flock; do command -v $t >/dev/null 2>&1 && echo "has_$t=1"; done
true
"""


@dataclass
class Facts:
    """What the board is, as read from it."""

    root: str
    arch: str
    bits: int
    isa: list[str] = field(default_factory=list)
    hwcap: int | None = None
    glibc: str | None = None
    disk_free_bytes: int | None = None
    mem_available_bytes: int | None = None
    tools: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bits(value: int, table: dict[int, str]) -> set[str]:
    return {name for bit, name in table.items() if value >> bit & 1}


def _hex(s: str) -> int | None:
    s = s.strip()
    try:
        return int(s, 16)
    except ValueError:
        return None


def parse_facts(text: str) -> Facts:
    kv: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            kv[k.strip()] = v.strip()
    arch = _ARCH_ALIASES.get(kv.get("arch", ""), kv.get("arch", "unknown"))
    bits_s = kv.get("bits", "")
    bits = int(bits_s) if bits_s.isdigit() else (64 if arch in ("aarch64", "x86_64") else 32)
    if arch == "aarch64" and bits == 32:
        arch = "armv7l"  # a 64-bit kernel with a 32-bit userland runs armv7l binaries only
    isa: set[str] = set()
    hwcap = _hex(kv["hwcap"]) if "hwcap" in kv else None
    hwcap2 = _hex(kv["hwcap2"]) if "hwcap2" in kv else None
    if arch == "aarch64" and hwcap is not None:
        isa |= _bits(hwcap, _ARM64_HWCAP) | _bits(hwcap2 or 0, _ARM64_HWCAP2)
    elif arch == "armv7l" and hwcap is not None:
        isa |= _bits(hwcap, _ARM32_HWCAP)
    # /proc/cpuinfo: Features on ARM (under qemu-user it is the host's file, hence only a fallback), flags on x86.
    words = kv.get("features", "").split() if arch != "x86_64" else kv.get("flags", "").split()
    if arch != "x86_64" and hwcap is not None:
        words = []
    isa |= {_CPUINFO[w] for w in words if w in _CPUINFO}
    disk = kv.get("disk_free_kb", "")
    mem = kv.get("mem_available_kb", "")
    return Facts(
        root=kv.get("root", ""),
        arch=arch,
        bits=bits,
        isa=sorted(isa),
        hwcap=hwcap,
        glibc=kv.get("glibc") or None,
        disk_free_bytes=int(disk) * 1024 if disk.isdigit() else None,
        mem_available_bytes=int(mem) * 1024 if mem.isdigit() else None,
        tools=sorted(k[4:] for k in kv if k.startswith("has_")),
    )


def gather(transport: Transport, root: str, *, timeout: float = 30.0) -> Facts:
    res = transport.run(_FACTS_SCRIPT % {"root": quote(root)}, timeout=timeout)
    res.check(transport.name, "reading the target's facts")
    return parse_facts(res.stdout)


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def fitting_profiles(facts: Facts, exclude: str | None = None) -> list[str]:
    """Shipped/known profiles this board can run, most specific (most ISA features) first."""
    from edgepack.errors import ConfigError
    from edgepack.profiles import available, load

    fits: list[tuple[int, tuple[int, ...], str]] = []
    for name in available():
        if name == exclude:
            continue
        try:
            dev = load(name).device
        except ConfigError:
            continue
        if dev.arch != facts.arch or dev.bits != facts.bits or not set(dev.isa) <= set(facts.isa):
            continue
        if facts.glibc and _version(dev.glibc) > _version(facts.glibc):
            continue
        fits.append((len(dev.isa), _version(dev.glibc), name))
    # Most specific first: more ISA features used, then the newest glibc the board still satisfies.
    ranked = sorted(fits, key=lambda t: (-t[0], tuple(-x for x in t[1]), t[2]))
    return [n for _, _, n in ranked]


def problems(facts: Facts, manifest: dict[str, Any], *, need_disk: int = 0, need_mem: int = 0) -> list[str]:
    """Every way the board falls short of the bundle's profile (empty when it fits)."""
    prof = manifest.get("profile") or {}
    dev = prof.get("device") or {}
    name = prof.get("name", "?")
    out: list[str] = []
    want_arch, want_bits = dev.get("arch"), dev.get("bits")
    if want_arch and want_arch != facts.arch:
        out.append(f"board is {facts.arch} ({facts.bits}-bit) but the bundle's profile {name} is {want_arch}")
    elif want_bits and int(want_bits) != facts.bits:
        out.append(f"board userland is {facts.bits}-bit but the bundle's profile {name} is {want_bits}-bit")
    missing = [i for i in dev.get("isa", []) if i not in facts.isa]
    if missing and not out:
        out.append(
            f"board CPU lacks {', '.join(missing)} (has: {', '.join(facts.isa) or 'none detected'}) "
            f"which profile {name} is tuned for"
        )
    want_glibc = dev.get("glibc")
    if want_glibc:
        if facts.glibc is None:
            out.append(f"no glibc found on the board (musl?) but profile {name} needs glibc ≥ {want_glibc}")
        elif _version(facts.glibc) < _version(want_glibc):
            out.append(f"board glibc {facts.glibc} is older than {want_glibc} needed by profile {name}")
    if need_disk and facts.disk_free_bytes is not None and facts.disk_free_bytes < need_disk:
        out.append(
            f"only {facts.disk_free_bytes / 1e6:.1f} MB free under {facts.root}, the bundle needs "
            f"{need_disk / 1e6:.1f} MB"
        )
    if need_mem and facts.mem_available_bytes is not None and facts.mem_available_bytes < need_mem:
        out.append(
            f"only {facts.mem_available_bytes / 1e6:.0f} MB memory available, the model needs about "
            f"{need_mem / 1e6:.0f} MB"
        )
    files: dict[str, Any] = manifest.get("files", {})
    host = prof.get("host") or {}
    if any(p.startswith("host/") for p in files) and host.get("kind", "dotnet-iot") == "dotnet-iot":
        runtime = host.get("dotnet", "mono")
        if runtime not in facts.tools:
            out.append(f"the device host needs '{runtime}' but it is not installed on the board")
    for tool in ("tar", "sha256sum", "awk"):
        if tool not in facts.tools:
            out.append(f"'{tool}' is missing on the board (install.sh needs it)")
    return out


def estimated_memory(manifest: dict[str, Any]) -> int:
    """Model + runtime bytes, twice over for the loaded session, plus 32 MB for the host process."""
    files: dict[str, Any] = manifest.get("files", {})
    model = sum(int(f["size"]) for p, f in files.items() if p.startswith(("model/", "runtime/")))
    return 2 * model + (32 << 20) if model else 0


def check(facts: Facts, manifest: dict[str, Any], target: str, *, need_disk: int = 0) -> None:
    """Raise PreflightFailed naming the first facts that do not fit, and the profiles that would."""
    found = problems(facts, manifest, need_disk=need_disk, need_mem=estimated_memory(manifest))
    if not found:
        return
    prof = (manifest.get("profile") or {}).get("name")
    fits = fitting_profiles(facts, exclude=prof)
    only_space = all(p.startswith(("only ", "'", "the device host")) for p in found)
    if only_space:
        fix = "free space/memory or install the missing tools on the board, then deploy again"
    elif fits:
        fix = f"package the model for a profile that fits this board: {', '.join(fits[:3])}"
    else:
        fix = (
            "no shipped profile fits this board; write one (edgepack profiles show generic-aarch64) and package for it"
        )
    raise PreflightFailed(f"{target}: preflight failed, nothing was sent: {'; '.join(found)}", fix)
