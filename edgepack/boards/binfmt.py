"""binfmt_misc for virtual boards: the host's aarch64 handler, and each board's private one.

The host handler (flag ``F``) lets debootstrap run arm64 binaries while it builds the userland. A running board
does not use it: it gets a binfmt_misc instance of its own inside its user namespace (Linux ≥ 6.7), whose handler
is a tiny static wrapper that runs ``qemu-aarch64-static -cpu CPU``. sshd strips ``QEMU_CPU`` from the sessions it
starts, so an environment variable cannot pin the CPU; a handler can, and no process in the board can escape it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from edgepack.errors import BoardError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
QEMU = "qemu-aarch64-static"
# ELF64 little-endian, e_machine 183 (EM_AARCH64): the magic and mask Debian's qemu-user-static registers.
AARCH64_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
SETUP_FIX = (
    "run edgepack as root on a Linux ≥ 6.7 host with qemu-user-static, debootstrap and binfmt-support"
    " installed (make sysdeps)"
)


def qemu_path() -> Path:
    """The host's static qemu for aarch64 (copied into each board so the wrapper can exec it after chroot)."""
    found = shutil.which(QEMU)
    if not found:
        raise BoardError(f"{QEMU} is not installed", "run: apt-get install qemu-user-static (or make sysdeps)")
    return Path(found)


def require_root() -> None:
    if os.geteuid() != 0:
        raise BoardError(
            "virtual boards need root (namespaces, mounts, binfmt_misc)",
            "run `sudo edgepack board up ...`, or deploy to a real device from targets/*.yaml",
        )


DEBIAN_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


def host_handler_line(interpreter: Path) -> str:
    """binfmt_misc register line for the host: ``F`` opens qemu now, so chroots need no copy of it.

    Debian's own line is preferred (its ``P`` flag goes with the ``aarch64-binfmt-P`` name qemu checks for);
    without it, no ``P``: qemu only knows argv0 is preserved when started under that name.
    """
    if DEBIAN_CONF.is_file():
        line = DEBIAN_CONF.read_text().strip()
        if line.startswith(":qemu-aarch64:"):
            return line
    return f":qemu-aarch64:M::{AARCH64_MAGIC}:{AARCH64_MASK}:{interpreter}:OCF"


def ensure_host_binfmt() -> None:
    """Mount binfmt_misc and register the aarch64 handler when missing; a clear BoardError when that cannot work."""
    require_root()
    qemu = qemu_path()
    if not (BINFMT_DIR / "register").exists():
        r = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], capture_output=True, text=True
        )
        if r.returncode != 0 and not (BINFMT_DIR / "register").exists():
            raise BoardError(
                f"binfmt_misc is not mounted and cannot be ({r.stderr.strip() or 'mount failed'})",
                "load the binfmt_misc module (modprobe binfmt_misc) or " + SETUP_FIX,
            )
    handler = BINFMT_DIR / "qemu-aarch64"
    if handler.exists():
        text = handler.read_text()
        if text.startswith("enabled"):
            return
        # A disabled handler blocks re-registration under the same name: enable it instead.
        handler.write_text("1")
        return
    try:
        (BINFMT_DIR / "register").write_text(host_handler_line(qemu))
    except OSError as e:
        raise BoardError(f"cannot register the aarch64 binfmt handler ({e})", SETUP_FIX) from e


WRAPPER_C = r"""
/* binfmt_misc interpreter for one board (flags P and F): runs the aarch64 program under qemu with a fixed CPU.
   argv: [wrapper, /full/path/of/program, original argv0, original args...] (P keeps argv0). */
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 127;
    char **a = calloc((size_t)argc + 6, sizeof(char *));
    if (!a) return 127;
    int n = 0;
    a[n++] = "/usr/bin/qemu-aarch64-static";
    a[n++] = "-cpu";
    a[n++] = EDGEPACK_CPU;
    a[n++] = "-0";
    a[n++] = argv[2];
    a[n++] = argv[1];
    for (int i = 3; i < argc; i++) a[n++] = argv[i];
    a[n] = NULL;
    execv(a[0], a);
    return 127;
}
"""


def wrapper_for(cpu: str, cache: Path) -> Path:
    """A static x86 binary that execs ``qemu-aarch64-static -cpu CPU``; built once per CPU into the cache."""
    if not cpu.replace("-", "").isalnum():
        raise BoardError(f"bad CPU name {cpu!r}", "use one of cortex-a72, cortex-a76, max")
    out = cache / f"qemu-wrap-{cpu}"
    if out.is_file():
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise BoardError("no C compiler for the board's binfmt wrapper", "run: apt-get install gcc libc6-dev")
    cache.mkdir(parents=True, exist_ok=True)
    src = cache / f".qemu-wrap-{cpu}.{os.getpid()}.c"
    tmp = cache / f".qemu-wrap-{cpu}.{os.getpid()}"
    src.write_text(WRAPPER_C)
    try:
        r = subprocess.run(
            [cc, "-static", "-O2", f'-DEDGEPACK_CPU="{cpu}"', "-o", str(tmp), str(src)], capture_output=True, text=True
        )
        if r.returncode != 0:
            raise BoardError(
                f"cannot build the binfmt wrapper: {r.stderr.strip()[-300:]}", "install gcc and libc6-dev (static libc)"
            )
        tmp.replace(out)
    finally:
        src.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return out


def board_handler_line(wrapper: Path) -> str:
    """Register line for a board's private binfmt_misc: ``P`` keeps argv0, ``F`` opens the host-side wrapper now."""
    return f":edgepack-aarch64:M::{AARCH64_MAGIC}:{AARCH64_MASK}:{wrapper}:PF"
