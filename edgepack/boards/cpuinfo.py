"""A ``/proc/cpuinfo`` for a board, matching the CPU qemu emulates for it.

qemu-user does not emulate ``/proc/cpuinfo`` (a board would see the host's x86 file). Tools and scripts that read
it to decide what a device can run (lscpu, installers, preflights written for real Pis) should see the board's
CPU, so each board gets a generated file bind-mounted over it. Its ``Features`` come from the aux vector qemu
gives that CPU (measured, not assumed), in the kernel's order and spelling (arch/arm64/kernel/cpuinfo.c).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from edgepack.errors import BoardError

# Bit i of AT_HWCAP, then of AT_HWCAP2, as /proc/cpuinfo names them (one string each: easy to check against the
# kernel's table).
HWCAP_NAMES = (  # noqa: SIM905
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 "
    "sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg"
).split()
HWCAP2_NAMES = (  # noqa: SIM905
    "dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 i8mm bf16 "
    "dgh rng bti mte ecv afp rpres mte3 sme smei16i64 smef64f64 smei8i32 smef16f32 smeb16f32 smef32f32 smefa64 wfxt "
    "ebf16"
).split()
# MIDR fields of the cores qemu models: (implementer, variant, part, revision). The Pi 4 is r0p3, the Pi 5 r4p1;
# qemu's "max" calls itself implementer 0 (software), part 0x051 ('Q').
MIDR = {
    "cortex-a53": (0x41, 0x0, 0xD03, 4),
    "cortex-a57": (0x41, 0x1, 0xD07, 1),
    "cortex-a72": (0x41, 0x0, 0xD08, 3),
    "cortex-a76": (0x41, 0x4, 0xD0B, 1),
    "neoverse-n1": (0x41, 0x4, 0xD0C, 1),
    "max": (0x00, 0x0, 0x051, 0),
}


def measure_hwcaps(qemu: Path, cpu: str, rootfs: Path) -> tuple[int, int]:
    """AT_HWCAP and AT_HWCAP2 as qemu hands them to a program on ``cpu`` (runs the userland's /usr/bin/true)."""
    r = subprocess.run(
        [str(qemu), "-cpu", cpu, "-L", str(rootfs), str(rootfs / "usr/bin/true")],
        env={"LD_SHOW_AUXV": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    caps = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(":")
        if key in ("AT_HWCAP", "AT_HWCAP2"):
            caps[key] = int(value.strip(), 16)
    if r.returncode != 0 or "AT_HWCAP" not in caps:
        raise BoardError(
            f"cannot read the aux vector of qemu's {cpu} ({r.stderr.strip()[-200:]})",
            "check qemu-user-static and the cached userland",
        )
    return caps["AT_HWCAP"], caps.get("AT_HWCAP2", 0)


def features(hwcap: int, hwcap2: int) -> list[str]:
    names = [n for i, n in enumerate(HWCAP_NAMES) if hwcap >> i & 1]
    return names + [n for i, n in enumerate(HWCAP2_NAMES) if hwcap2 >> i & 1]


def text(cpu: str, hwcap: int, hwcap2: int, cores: int = 4) -> str:
    """The file, in the layout of an arm64 kernel's (one block a core; the Pi's firmware lines left out)."""
    impl, variant, part, rev = MIDR.get(cpu, MIDR["max"])
    block = (
        "BogoMIPS\t: 108.00\n"
        f"Features\t: {' '.join(features(hwcap, hwcap2))}\n"
        f"CPU implementer\t: {impl:#04x}\n"
        "CPU architecture: 8\n"
        f"CPU variant\t: {variant:#x}\n"
        f"CPU part\t: {part:#05x}\n"
        f"CPU revision\t: {rev}\n"
    )
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(cores))


def write_for(cpu: str, qemu: Path, rootfs: Path, cache: Path) -> Path:
    """The cpuinfo file for ``cpu``, generated once into ``cache`` (shared by every board with that CPU)."""
    st = qemu.stat()
    cores = os.cpu_count() or 1  # as many as the board's nproc shows
    # Keyed by the qemu build (its CPU models may change) and the core count.
    out = cache / f"cpuinfo-{cpu}-{cores}-{st.st_size:x}{st.st_mtime_ns:x}"
    if out.is_file():
        return out
    hwcap, hwcap2 = measure_hwcaps(qemu, cpu, rootfs)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".cpuinfo-{cpu}.{os.getpid()}"
    tmp.write_text(text(cpu, hwcap, hwcap2, cores))
    tmp.replace(out)
    return out
