"""Faults against a real sshd: after each, `current` is the old or the new release and intact, the next deploy
succeeds, and it leaves no temp files. (Fault kinds: tampered, truncated, '..', absolute, symlink and hardlink
members; install.sh SIGKILLed after extract and before the swap; the deployer SIGKILLed mid-upload; the link cut
mid-transfer; the board's disk full; two deploys at once; unknown and changed host keys.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgepack.deploy import deploy_to, status
from edgepack.deploy.installer import script
from edgepack.errors import PreflightFailed, TransferError
from edgepack.targets import Target
from tests import sshd as sshd_mod
from tests.conftest import ROOT
from tests.deploy_bundles import evil_bundle, make_bundle, tamper, truncate
from tests.sshd import Sshd
from tests.test_deploy import assert_clean

pytestmark = pytest.mark.skipif(sshd_mod.available() is not None, reason=str(sshd_mod.available()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with Sshd(tmp_path_factory.mktemp("sshd")) as s:
        yield s


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """sshd in its own network namespace behind a veth throttled to 80 Mbit/s, so uploads can be interrupted."""
    why = sshd_mod.netns_available()
    if why:
        pytest.skip(why)
    with Sshd(tmp_path_factory.mktemp("sshd-ns"), netns=True, rate="80mbit") as s:
        yield s


def target(s: Sshd, root: Path, name: str = "board", **kw: Any) -> Target:
    return Target(**s.target(name, root, **kw))


def board_state(root: Path) -> dict[str, Any]:
    """The board's own view (install.sh --status), read directly so a broken transport cannot hide anything."""
    p = subprocess.run(
        ["sh", "-s", "--", "--status", "--root", str(root)], input=script(), capture_output=True, timeout=60, check=True
    )
    doc: dict[str, Any] = json.loads(p.stdout)
    return doc


def assert_intact(root: Path, *allowed: str) -> None:
    st = board_state(root)
    assert st["current"] in allowed and st["healthy"] is True, st


def settle_then_redeploy(t: Target, bundle: Path, root: Path, new_id: str) -> int:
    r = deploy_to(t, bundle)
    assert r.status in ("installed", "unchanged") and r.bundle_id == new_id
    assert_intact(root, new_id)
    assert_clean(root)
    return r.bytes_sent


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgepack", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def targets_env(tmp_path: Path, *docs: dict[str, Any]) -> dict[str, str]:
    d = tmp_path / "targets"
    d.mkdir(exist_ok=True)
    for doc in docs:
        (d / f"{doc['name']}.yaml").write_text(yaml.safe_dump(doc))
    return {"EDGEPACK_TARGETS": str(d), "EDGEPACK_STATE": str(tmp_path / "state")}


def wait_for_partial(root: Path, at_least: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = list((root / "incoming").glob("*.partial")) if (root / "incoming").is_dir() else []
        if parts and parts[0].stat().st_size >= at_least:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the upload never started")


@pytest.fixture
def installed(server: Sshd, tmp_path: Path) -> tuple[Target, Path, str]:
    """A board (the sshd) with an 'old' release already current."""
    root = tmp_path / "root"
    old, m = make_bundle(tmp_path / "old.edgepack", tag="old")
    t = target(server, root)
    assert deploy_to(t, old).status == "installed"
    return t, root, str(m["id"])


# -- bad bundles handed to install.sh on the board by hand (deploy refuses them earlier, on this machine) ---------
@pytest.mark.parametrize("kind", ["tampered", "truncated", "dotdot", "absolute", "symlink", "hardlink"])
def test_install_sh_refuses_bad_bundles(kind: str, installed: tuple[Target, Path, str], tmp_path: Path) -> None:
    t, root, old_id = installed
    good, gm = make_bundle(tmp_path / "good.edgepack", tag="good")
    if kind == "tampered":
        bad = tamper(good, "model/model.onnx", tmp_path / "bad.edgepack")
    elif kind == "truncated":
        bad = truncate(good, tmp_path / "bad.edgepack")
    else:
        bad = evil_bundle(tmp_path / "bad.edgepack", kind)
    tr = t.connect()
    try:
        remote = f"{root}/incoming/by-hand.edgepack"
        tr.put(bad, remote)
        r = tr.run(f"sh -s -- {remote} --root {root}", stdin=script(), timeout=60)
    finally:
        tr.close()
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "install.sh: error:" in r.stderr
    assert not list(tmp_path.rglob("escaped*")) and not list(root.rglob("etc")) and not list(root.rglob("passwd"))
    assert_intact(root, old_id)
    (root / "incoming" / "by-hand.edgepack").unlink()
    settle_then_redeploy(t, good, root, gm["id"])


@pytest.mark.parametrize("point", ["after-extract", "before-swap"])
def test_install_sh_killed_between_extract_and_swap(
    point: str, installed: tuple[Target, Path, str], tmp_path: Path
) -> None:
    t, root, old_id = installed
    new, nm = make_bundle(tmp_path / "new.edgepack", tag="new")
    tr = t.connect()
    try:
        remote = f"{root}/incoming/{nm['id']}.edgepack"
        tr.put(new, remote)
        r = tr.run(f"EDGEPACK_INSTALL_FAULT={point} sh -s -- {remote} --root {root}", stdin=script(), timeout=60)
    finally:
        tr.close()
    # -1: killed by a signal (sshd reports exit-signal, not a status)
    assert r.exit_code in (-1, 128 + signal.SIGKILL), (r.stdout, r.stderr)
    assert_intact(root, old_id)
    if point == "after-extract":
        assert (root / "releases" / f"{nm['id']}.partial").is_dir()  # the kill really landed mid-install
    settle_then_redeploy(t, new, root, nm["id"])


# -- the deployer and the link --------------------------------------------------------------------------------------
def _slow_setup(
    slow_server: Sshd, tmp_path: Path, timeout: float = 15
) -> tuple[dict[str, str], Target, Path, str, Path, str]:
    root = tmp_path / "root"
    doc = slow_server.target("slowboard", root, timeout=timeout)
    env = targets_env(tmp_path, doc)
    t = Target(**doc)
    old, om = make_bundle(tmp_path / "old.edgepack", tag="old")
    assert deploy_to(t, old).status == "installed"
    new, nm = make_bundle(tmp_path / "new.edgepack", tag="new", size=24 << 20)
    return env, t, root, str(om["id"]), new, str(nm["id"])


def test_deployer_killed_mid_upload_resumes(slow_server: Sshd, tmp_path: Path) -> None:
    env, t, root, old_id, new, new_id = _slow_setup(slow_server, tmp_path)
    proc = cli(["deploy", str(new), "--target", "slowboard", "--json"], env)
    wait_for_partial(root, 4 << 20, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert_intact(root, old_id)
    sent = settle_then_redeploy(t, new, root, new_id)
    assert 0 < sent < new.stat().st_size - (3 << 20), "the second deploy should resume, not start over"


def test_link_cut_is_reported_within_the_timeout(slow_server: Sshd, tmp_path: Path) -> None:
    link_timeout = 4.0
    env, t, root, old_id, new, new_id = _slow_setup(slow_server, tmp_path, timeout=link_timeout)
    proc = cli(["deploy", str(new), "--target", "slowboard"], env)
    wait_for_partial(root, 2 << 20, proc)
    slow_server.link(False)
    cut = time.monotonic()
    try:
        _, err = proc.communicate(timeout=link_timeout + 30)
        took = time.monotonic() - cut
    finally:
        slow_server.link(True)
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "slowboard" in lines[0] and "lost" in lines[0], err
    assert took <= link_timeout + 6, f"a dead link took {took:.1f} s to notice"
    assert_intact(root, old_id)
    settle_then_redeploy(t, new, root, new_id)


# -- the board -------------------------------------------------------------------------------------------------------
def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _ballast(root: Path, leave: int) -> None:
    with (root / "ballast").open("wb") as f:
        todo = _free(root) - leave
        while todo > 0:
            n = f.write(b"\0" * min(todo, 1 << 20))
            todo -= n


def test_disk_full_on_the_board(server: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(root)], check=True)
    try:
        t = target(server, root)
        old, om = make_bundle(tmp_path / "old.edgepack", tag="old")
        assert deploy_to(t, old).status == "installed"
        new, nm = make_bundle(tmp_path / "new.edgepack", tag="new", size=8 << 20)
        # 1. too little room up front: preflight refuses, nothing is sent.
        _ballast(root, 10 << 20)
        with pytest.raises(PreflightFailed, match="MB free"):
            deploy_to(t, new)
        assert list((root / "incoming").iterdir()) == []
        (root / "ballast").unlink()

        # 2. the disk fills up during the upload (another process writes): a clear error, current untouched.
        def filler(step: str, done: float, total: float | None) -> None:
            if "upload" in step and not (root / "ballast").exists():
                _ballast(root, 256 << 10)

        with pytest.raises(TransferError, match="No space left"):
            deploy_to(t, new, progress=filler)
        assert_intact(root, om["id"])
        (root / "ballast").unlink()
        # 3. space again: the next deploy succeeds and cleans up.
        settle_then_redeploy(t, new, root, nm["id"])
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_two_deploys_to_one_board_at_once(server: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "root"
    doc = server.target("board", root)
    env = targets_env(tmp_path, doc)
    a, am = make_bundle(tmp_path / "a.edgepack", tag="a", size=4 << 20)
    b, bm = make_bundle(tmp_path / "b.edgepack", tag="b", size=4 << 20)
    procs = [cli(["deploy", str(x), "--target", "board", "--json"], env) for x in (a, b)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert json.loads(out)["results"][0]["status"] == "installed"
    st = board_state(root)
    assert {st["current"], st["previous"]} == {am["id"], bm["id"]} and st["healthy"]
    assert_clean(root)
    assert status(Target(**doc)).current == st["current"]


@pytest.mark.parametrize("kind", ["unknown", "changed"])
def test_deploy_refuses_unknown_and_changed_host_keys(kind: str, server: Sshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    if kind == "unknown":
        kh.write_text("")
    else:
        other = tmp_path / "k"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        kt, key = other.with_suffix(".pub").read_text().split()[:2]
        kh.write_text(f"[{server.host}]:{server.port} {kt} {key}\n")
    before = kh.read_text()
    root = tmp_path / "root"
    env = targets_env(tmp_path, server.target("board", root, known_hosts=str(kh)))
    a, _ = make_bundle(tmp_path / "a.edgepack")
    p = cli(["deploy", str(a), "--target", "board"], env)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 3
    assert "board" in err and ("unknown" if kind == "unknown" else "CHANGED") in err
    assert kh.read_text() == before and not root.exists()
