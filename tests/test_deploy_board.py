"""Deploying to a virtual arm64 board (real aarch64 userland under qemu, its own sshd, disk and network namespace):
preflight against the board's real HWCAP, install, skip-unchanged, a cut link, a full disk, and recovery.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgepack.deploy import deploy_to, status
from edgepack.errors import ConnectError, PreflightFailed
from edgepack.targets import Target, resolve
from tests.deploy_bundles import make_bundle


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "virtual boards need root"
    missing = [
        t for t in ("qemu-aarch64-static", "debootstrap", "unshare", "ssh-keygen", "zstd", "ip") if not shutil.which(t)
    ]
    if missing:
        return f"missing {', '.join(missing)} (make sysdeps)"
    if tuple(int(x) for x in os.uname().release.split(".")[:2]) < (6, 7):
        return "Linux < 6.7 has no binfmt_misc per user namespace"
    return None


pytestmark = [pytest.mark.board, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]
NAME = "dep-a72"


@pytest.fixture(scope="module")
def pi4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A Pi 4 lookalike (Cortex-A72: no dotprod) with a 40 MB install disk, behind its own veth."""
    from edgepack.boards import board

    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEPACK_STATE", str(tmp_path_factory.mktemp("deploy-board-state")))
    try:
        board.up(NAME, cpu="cortex-a72", storage_mb=40, use_netns=True)
        yield resolve(NAME).model_copy(update={"timeout": 5.0})
    finally:
        board.down(NAME)
        mp.undo()


def wait_reachable(t: Target, timeout: float = 30) -> None:
    """After the link comes back, neighbour discovery takes a moment before the board answers again."""
    import socket

    assert t.host is not None
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((t.host, t.port), timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def leftovers(t: Target) -> list[str]:
    """Anything under the install root that is not the layout (temp uploads, partial releases, temp links)."""
    tr = t.connect()
    try:
        out = tr.run(f"cd {t.root} && ls -A . incoming releases", timeout=60).check(t.name, "listing").stdout
    finally:
        tr.close()
    allowed = {".deploy.lock", ".install.lock", "current", "previous", "state.json", "incoming", "releases", ""}
    bad = []
    for line in out.splitlines():
        name = line.strip()
        if name.endswith(":") or name in allowed or (len(name) == 64 and all(c in "0123456789abcdef" for c in name)):
            continue
        bad.append(name)
    return bad


def test_deploy_to_a_pi4_board(pi4: Target, tmp_path: Path) -> None:
    # A Pi 5 bundle (dotprod) is refused from the board's own HWCAP, naming the fact and a profile that fits.
    pi5_bundle, _ = make_bundle(tmp_path / "pi5.edgepack", profile="rpi-5", tag="pi5")
    with pytest.raises(PreflightFailed) as e:
        deploy_to(pi4, pi5_bundle)
    assert "lacks dotprod" in str(e.value) and "rpi-4b" in str(e.value).split("—")[-1]
    assert status(pi4).current is None

    old, om = make_bundle(tmp_path / "old.edgepack", profile="rpi-4b", tag="old", size=2 << 20)
    r = deploy_to(pi4, old)
    assert (r.status, r.bytes_sent) == ("installed", old.stat().st_size)
    again = deploy_to(pi4, old)
    assert again.status == "unchanged" and again.bytes_sent == 0
    assert again.bytes_sent + again.control_bytes <= 0.01 * old.stat().st_size
    st = status(pi4)
    assert (st.arch, st.current, st.healthy) == ("aarch64", om["id"], True)

    # Too big for the board's 40 MB disk: refused before sending.
    huge, _ = make_bundle(tmp_path / "huge.edgepack", profile="rpi-4b", tag="huge", size=24 << 20)
    with pytest.raises(PreflightFailed, match="MB free"):
        deploy_to(pi4, huge)

    # The link is cut mid-upload: reported within the link timeout, the board keeps the old release.
    from edgepack.boards import netns

    new, nm = make_bundle(tmp_path / "new.edgepack", profile="rpi-4b", tag="new", size=8 << 20)
    netns.set_bandwidth(NAME, "8mbit")
    cut_at: list[float] = []

    def cutter(step: str, done: float, total: float | None) -> None:
        if "upload" in step and done >= (2 << 20) and not cut_at:
            netns.cut_link(NAME)
            cut_at.append(time.monotonic())

    try:
        with pytest.raises(ConnectError, match=NAME):
            deploy_to(pi4, new, progress=cutter)
        took = time.monotonic() - cut_at[0]
    finally:
        netns.restore_link(NAME)
        netns.clear_bandwidth(NAME)
    assert took <= pi4.timeout + 6, f"a dead link took {took:.1f} s to notice"
    wait_reachable(pi4)
    st = status(pi4)
    assert (st.current, st.healthy) == (om["id"], True)

    # The next deploy resumes, succeeds and leaves nothing behind.
    r = deploy_to(pi4, new)
    assert r.status == "installed" and 0 < r.bytes_sent < new.stat().st_size
    st = status(pi4)
    assert (st.current, st.previous, st.healthy) == (nm["id"], om["id"], True)
    assert leftovers(pi4) == []
