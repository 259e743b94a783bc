"""Deploying over the built-in local transport: install, skip-unchanged, rollback, pruning, preflight, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgepack.deploy import deploy_many, deploy_to, rollback, status
from edgepack.deploy import preflight as pf
from edgepack.errors import ConfigError, PreflightFailed, VerifyFailed
from edgepack.targets import Target, resolve
from tests.conftest import run_cli
from tests.deploy_bundles import make_bundle, tamper

ALLOWED_TOP = {".deploy.lock", ".install.lock", "current", "previous", "state.json", "incoming", "releases"}


def local(root: Path, name: str = "here") -> Target:
    return Target(name=name, kind="local", root=str(root))


def assert_clean(root: Path) -> None:
    """Only the layout is left: no partial uploads, temp links or half-extracted releases."""
    assert {p.name for p in root.iterdir()} <= ALLOWED_TOP
    assert list((root / "incoming").iterdir()) == []
    for r in (root / "releases").iterdir():
        assert len(r.name) == 64 and all(c in "0123456789abcdef" for c in r.name), r.name


def test_install_unchanged_and_rollback(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a, ma = make_bundle(tmp_path / "a.edgepack", tag="a", size=4 << 20)
    b, mb = make_bundle(tmp_path / "b.edgepack", tag="b", size=256 * 1024)
    r1 = deploy_to(local(root), a)
    assert (r1.status, r1.bundle_id) == ("installed", ma["id"])
    assert r1.bytes_sent == a.stat().st_size
    assert os.readlink(root / "current") == f"releases/{ma['id']}"
    assert (root / "current" / "model" / "model.onnx").read_bytes() == (tmp_path / "a.model.bin").read_bytes()
    r2 = deploy_to(local(root), a)
    assert r2.status == "unchanged" and r2.bytes_sent == 0
    # Everything on the wire, commands and install.sh's status call included, stays under 1% of the bundle.
    assert 0 < r2.control_bytes <= 0.01 * a.stat().st_size
    r3 = deploy_to(local(root), b)
    assert r3.status == "installed"
    st = status(local(root))
    assert (st.current, st.previous, st.healthy) == (mb["id"], ma["id"], True)
    state = json.loads((root / "state.json").read_text())
    assert state["current"] == mb["id"] and state["previous"] == ma["id"]
    back = rollback(local(root))
    assert (back.current, back.previous) == (ma["id"], mb["id"])
    # b is still installed and intact: deploying it again switches without sending the bundle.
    r4 = deploy_to(local(root), b)
    assert (r4.status, r4.bytes_sent) == ("installed", 0)
    assert status(local(root)).current == mb["id"]
    assert_clean(root)


def test_keep_prunes_old_releases_but_not_current_or_previous(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ids = []
    for tag in "abcd":
        bundle, m = make_bundle(tmp_path / f"{tag}.edgepack", tag=tag)
        deploy_to(local(root), bundle, keep=2)
        ids.append(m["id"])
    left = sorted(p.name for p in (root / "releases").iterdir())
    assert left == sorted(ids[-2:])
    assert status(local(root)).previous == ids[-2]


def test_damaged_current_is_reinstalled_not_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a, ma = make_bundle(tmp_path / "a.edgepack")
    deploy_to(local(root), a)
    f = root / "releases" / ma["id"] / "model" / "model.onnx"
    f.write_bytes(b"rotten")
    assert status(local(root)).healthy is False
    r = deploy_to(local(root), a)
    assert r.status == "installed" and r.bytes_sent == a.stat().st_size
    assert status(local(root)).healthy is True
    assert_clean(root)


def test_a_tampered_bundle_is_refused_before_sending(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a, _ = make_bundle(tmp_path / "a.edgepack")
    bad = tamper(a, "model/model.onnx", tmp_path / "bad.edgepack")
    with pytest.raises(VerifyFailed, match="sha256 mismatch"):
        deploy_to(local(root), bad)
    assert not (root / "incoming").exists() or list((root / "incoming").iterdir()) == []


def test_check_without_device_check_module_is_a_clear_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    # As on an install without the on-device check: importing it fails.
    monkeypatch.setitem(sys.modules, "edgepack.checks.device", None)
    a, _ = make_bundle(tmp_path / "a.edgepack")
    with pytest.raises(ConfigError, match="on-device check"):
        deploy_to(local(tmp_path / "root"), a, check=True)
    assert not (tmp_path / "root").exists()


# -- preflight: facts as real boards report them ------------------------------------------------------------------
PI4 = (
    "arch=aarch64\nbits=64\nhwcap=0x8fb\nglibc=2.36\ndisk_free_kb=9000000\nmem_available_kb=3000000\n"
    "has_tar=1\nhas_sha256sum=1\nhas_awk=1\nhas_mono=1\nroot=/root/edgepack"
)
PI5 = PI4.replace("hwcap=0x8fb", "hwcap=0x119ffb")
PI_OLD = PI5.replace("glibc=2.36", "glibc=2.28")
PI_32 = PI4.replace("arch=aarch64", "arch=armv7l").replace("bits=64", "bits=32").replace("hwcap=0x8fb", "hwcap=0x1000")
PI_FULL = PI5.replace("disk_free_kb=9000000", "disk_free_kb=1000")
X86 = (
    "arch=x86_64\nbits=64\nflags= fpu sse2 avx2 avx512_vnni\nglibc=2.36\ndisk_free_kb=9000000\n"
    "mem_available_kb=3000000\nhas_tar=1\nhas_sha256sum=1\nhas_awk=1\nroot=/x"
)


def _manifest(profile: str) -> dict[str, Any]:
    from tests.deploy_bundles import base_manifest

    return {**base_manifest(profile, "p"), "files": {"model/model.onnx": {"sha256": "0" * 64, "size": 10 << 20}}}


def test_facts_from_hwcap() -> None:
    assert pf.parse_facts(PI4).isa == ["neon"]
    assert set(pf.parse_facts(PI5).isa) >= {"neon", "dotprod", "fp16"}
    x = pf.parse_facts(X86)
    assert x.arch == "x86_64" and {"avx2", "avx512vnni"} <= set(x.isa)
    assert pf.parse_facts(PI_32).arch == "armv7l" and pf.parse_facts(PI_32).bits == 32


@pytest.mark.parametrize(
    ("facts", "profile", "fact", "suggest"),
    [
        (PI4, "rpi-5", "lacks dotprod", "rpi-4b"),
        (X86, "rpi-5", "board is x86_64", "generic-x86_64"),
        (PI_32, "rpi-4b", "board is armv7l (32-bit)", None),
        (PI_OLD, "rpi-5", "glibc 2.28 is older than 2.36", None),
        (PI_FULL, "rpi-5", "MB free", None),
    ],
)
def test_preflight_names_the_fact_and_a_profile_that_fits(
    facts: str, profile: str, fact: str, suggest: str | None
) -> None:
    f = pf.parse_facts(facts)
    with pytest.raises(PreflightFailed) as e:
        pf.check(f, _manifest(profile), "board1", need_disk=30 << 20)
    msg = str(e.value)
    assert "board1" in msg and fact in msg and "nothing was sent" in msg
    if suggest:
        assert suggest in msg.split("—")[-1]


def test_preflight_passes_a_fitting_board() -> None:
    pf.check(pf.parse_facts(PI5), _manifest("rpi-5"), "board1", need_disk=30 << 20)
    pf.check(pf.parse_facts(PI4), _manifest("rpi-4b"), "board1", need_disk=30 << 20)


def test_preflight_reads_this_machine() -> None:
    from edgepack.transports.local import LocalTransport

    f = pf.gather(LocalTransport(), "~/does-not-exist/edgepack")
    assert f.arch == os.uname().machine and f.bits == 64
    assert f.glibc and f.disk_free_bytes and f.mem_available_bytes
    assert f.root.startswith("/") and f.root.endswith("/does-not-exist/edgepack")


def test_an_arm_bundle_is_refused_by_this_x86_machine(tmp_path: Path) -> None:
    a, _ = make_bundle(tmp_path / "a.edgepack", profile="rpi-5")
    with pytest.raises(PreflightFailed, match="board is x86_64"):
        deploy_to(local(tmp_path / "root"), a)
    assert not (tmp_path / "root" / "releases").exists()


# -- targets and the CLI --------------------------------------------------------------------------------------------
def _targets(tmp_path: Path, docs: list[dict[str, Any]]) -> dict[str, str]:
    d = tmp_path / "targets"
    d.mkdir(exist_ok=True)
    for doc in docs:
        (d / f"{doc['name']}.yaml").write_text(yaml.safe_dump(doc))
    return {"EDGEPACK_TARGETS": str(d), "EDGEPACK_STATE": str(tmp_path / "state")}


def test_target_files_are_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _targets(tmp_path, [{"name": "bad", "host": "h", "colour": "red"}, {"name": "nohost", "port": 22}])
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        resolve("bad")
    with pytest.raises(ConfigError, match="has no host"):
        resolve("nohost")
    with pytest.raises(ConfigError, match="unknown target 'nope'"):
        resolve("nope")
    assert resolve("local").is_local


def test_cli_deploy_json_status_rollback(tmp_path: Path) -> None:
    env = _targets(
        tmp_path,
        [
            {"name": "l1", "kind": "local", "root": str(tmp_path / "r1")},
            {"name": "l2", "kind": "local", "root": str(tmp_path / "r2")},
        ],
    )
    a, ma = make_bundle(tmp_path / "a.edgepack", tag="a")
    b, mb = make_bundle(tmp_path / "b.edgepack", tag="b")
    p = run_cli(["deploy", str(a), "--target", "l1,l2", "--json"], env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [r["target"] for r in doc["results"]] == ["l1", "l2"]
    for r in doc["results"]:
        assert set(r) >= {"target", "bundle_id", "status", "bytes_sent", "seconds", "error"}
        assert (r["status"], r["bundle_id"], r["error"]) == ("installed", ma["id"], None)
    p = run_cli(["deploy", str(b), "--target", "l1"], env=env, timeout=120)
    assert p.returncode == 0 and "installed" in p.stdout
    p = run_cli(["status", "--target", "l1", "--json"], env=env, timeout=60)
    st = json.loads(p.stdout)
    assert st == {
        "target": "l1",
        "arch": os.uname().machine,
        "current": mb["id"],
        "previous": ma["id"],
        "releases": st["releases"],
        "healthy": True,
    }
    assert sorted(st["releases"]) == sorted([ma["id"], mb["id"]])
    p = run_cli(["rollback", "--target", "l1", "--json"], env=env, timeout=60)
    assert p.returncode == 0 and json.loads(p.stdout)["current"] == ma["id"]


def test_cli_failures_exit_3_naming_the_target(tmp_path: Path) -> None:
    env = _targets(
        tmp_path,
        [
            {"name": "ok", "kind": "local", "root": str(tmp_path / "r1")},
            {"name": "dead", "host": "127.0.0.1", "port": 1, "timeout": 3},
        ],
    )
    a, _ = make_bundle(tmp_path / "a.edgepack")
    p = run_cli(["deploy", str(a), "--target", "ok,dead", "--json"], env=env, timeout=60)
    assert p.returncode == 3
    res = {r["target"]: r for r in json.loads(p.stdout)["results"]}
    assert res["ok"]["status"] == "installed" and res["dead"]["status"] == "failed"
    assert "cannot reach" in res["dead"]["error"]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "dead" in lines[0] and lines[0].startswith("edgepack: error:")
    p = run_cli(["deploy", str(a), "--target", "nope"], env=env, timeout=60)
    assert p.returncode == 2 and "unknown target 'nope'" in p.stderr


def test_fleet_runs_in_parallel_and_reports_each(tmp_path: Path) -> None:
    a, _ = make_bundle(tmp_path / "a.edgepack")
    targets = [local(tmp_path / f"r{i}", f"t{i}") for i in range(4)]
    results = deploy_many(targets, a, parallel=4)
    assert [r.target for r in results] == ["t0", "t1", "t2", "t3"]
    assert all(r.status == "installed" for r in results)


def test_progress_reports_uploaded_bytes(tmp_path: Path) -> None:
    a, _ = make_bundle(tmp_path / "a.edgepack", size=3 << 20)
    seen: list[tuple[str, float, float | None]] = []
    deploy_to(local(tmp_path / "root"), a, progress=lambda s, d, t: seen.append((s, d, t)))
    ups = [(d, t) for s, d, t in seen if s == "here: upload"]
    assert ups and ups[-1] == (a.stat().st_size, a.stat().st_size)
    assert [d for d, _ in ups] == sorted(d for d, _ in ups)
    assert {s for s, _, _ in seen} >= {"here: preflight", "here: upload", "here: install"}


def test_install_sh_by_hand(tmp_path: Path) -> None:
    import subprocess

    from tests.deploy_bundles import INSTALL_SH

    a, ma = make_bundle(tmp_path / "a.edgepack", tag="a")
    root = tmp_path / "root"
    p = subprocess.run(["sh", str(INSTALL_SH), str(a), "--root", str(root)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == f"installed {ma['id']}", p.stderr
    st = subprocess.run(
        ["sh", str(root / "current" / "install.sh"), "--status", "--root", str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(st.stdout)["current"] == ma["id"]
    bad = subprocess.run(["sh", str(INSTALL_SH), "--keep", "x", str(a)], capture_output=True, text=True)
    assert bad.returncode == 2 and "--keep needs a number" in bad.stderr
    nothing = subprocess.run(["sh", str(INSTALL_SH), "--rollback", "--root", str(root)], capture_output=True, text=True)
    assert nothing.returncode == 1 and "nothing to roll back to" in nothing.stderr
