"""On-device checks through the real C# host on the `local` target (this x86 machine): gates, reports, the
pytest plugin. The arm64 board runs of the same code are in tests/test_hil_example.py (run by .ci/run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgepack.bundle import Member, read_manifest, write_bundle
from tests.conftest import run_cli


@pytest.fixture
def local_target(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A `local`-kind target whose install root is a temp folder (the built-in `local` uses ~/edgepack)."""
    tdir = tmp_path / "targets"
    tdir.mkdir()
    (tdir / "here.yaml").write_text(f"name: here\nkind: local\nroot: {tmp_path / 'device'}\n")
    return "here", {"EDGEPACK_TARGETS": str(tdir)}


def _deploy(bundle: Path, target: str, env: dict[str, str]) -> None:
    r = run_cli(["deploy", str(bundle), "--target", target, "--json"], env=env)
    assert r.returncode == 0, r.stderr


def test_check_passes_and_matches_packaging(
    minilm_x86_bundle: Path, local_target: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    name, env = local_target
    _deploy(minilm_x86_bundle, name, env)
    report = tmp_path / "report"
    r = run_cli(["check", "--target", name, "--json", "--report", str(report)], env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {"target", "bundle_id", "host_kind", "arch", "samples", "metrics", "gates", "passed"} <= set(doc)
    assert doc["target"] == name and doc["arch"] == "x86_64" and doc["passed"] is True
    host = read_manifest(minilm_x86_bundle)["metrics"]["host"]
    assert abs(doc["metrics"]["cosine_mean"] - host["cosine_mean"]) < 1e-3
    assert (
        doc["metrics"]["latency_ms"]["p50"]
        <= doc["metrics"]["latency_ms"]["p90"]
        <= doc["metrics"]["latency_ms"]["p99"]
    )
    assert doc["metrics"]["peak_rss_mb"] > 10
    page = (report / "index.html").read_text()
    assert "ALL GATES PASSED" in page and "cosine_mean_min" in page and "data:image/png;base64," in page
    assert (report / "latency.png").stat().st_size > 5000
    assert (report / "accuracy.png").stat().st_size > 5000
    assert len(doc["details"]["per_sample"]) == doc["samples"] >= 64
    assert "Least accurate samples" in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_impossible_latency_gate_fails(
    silero_onnx: Path, local_target: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    name, env = local_target
    prof = tmp_path / "impossible.yaml"
    prof.write_text("extends: generic-x86_64\nname: impossible\ngates: {latency_ms_p90_max: 0.0001}\n")
    bundle = tmp_path / "vad.edgepack"
    r = run_cli(["package", str(silero_onnx), "--profile", str(prof), "-o", str(bundle)])
    assert r.returncode == 0, r.stderr
    _deploy(bundle, name, env)
    r = run_cli(["check", "--target", name, "--json"], env=env)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    failed = [g["name"] for g in doc["gates"] if not g["passed"]]
    assert failed == ["latency_ms_p90_max"]
    assert "latency_ms_p90_max" in r.stderr


def _swap_model(bundle: Path, out: Path, work: Path) -> None:
    """Rebuild the bundle with a different model of the same signature (weights scrambled), re-hashed, so only
    the on-device measurement can tell."""
    import onnx
    from onnx import numpy_helper

    with tarfile.open(bundle) as t:
        t.extractall(work, filter="data")
    manifest = json.loads((work / "manifest.json").read_text())
    model_path = work / manifest["model"]["member"]
    model = onnx.load(str(model_path))
    rng = np.random.default_rng(7)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 16:
            init.CopyFrom(numpy_helper.from_array(rng.permutation(arr.ravel()).reshape(arr.shape), init.name))
    onnx.save(model, str(model_path))
    members = [Member(p, source=work / p, executable=p.endswith(".sh")) for p in manifest["files"]]
    manifest.pop("files")
    write_bundle(out, manifest, members)


def test_swapped_model_fails_accuracy_gate(
    minilm_x86_bundle: Path, local_target: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    name, env = local_target
    swapped = tmp_path / "swapped.edgepack"
    _swap_model(minilm_x86_bundle, swapped, tmp_path / "x")
    assert run_cli(["verify", str(swapped)]).returncode == 0  # hashes are consistent: only accuracy can tell
    _deploy(swapped, name, env)
    r = run_cli(["check", "--target", name, "--json"], env=env)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    failed = {g["name"] for g in doc["gates"] if not g["passed"]}
    assert "cosine_mean_min" in failed
    assert doc["metrics"]["cosine_mean"] < 0.9


def test_unreachable_target_exits_3(tmp_path: Path) -> None:
    tdir = tmp_path / "t"
    tdir.mkdir()
    known = tmp_path / "known_hosts"
    known.write_text("")
    (tdir / "gone.yaml").write_text(
        f"name: gone\nhost: 127.0.0.1\nport: 9\nuser: root\nknown_hosts: {known}\ntimeout: 3\n"
    )
    r = run_cli(["check", "--target", "gone"], env={"EDGEPACK_TARGETS": str(tdir)})
    assert r.returncode == 3
    assert "gone" in r.stderr and len(r.stderr.strip().splitlines()) == 1


PLUGIN_TEST = """
def test_uses_target(edgepack_target):
    r = edgepack_target.run("uname -m")
    assert r.exit_code == 0 and r.stdout.strip()
"""


def test_plugin_skips_without_option_and_runs_with_it(tmp_path: Path) -> None:
    (tmp_path / "test_hil_probe.py").write_text(PLUGIN_TEST)
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path / "test_hil_probe.py")]
    r = subprocess.run(base, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert "1 skipped" in r.stdout and "no --edgepack-target given" in r.stdout
    verbose = [a for a in base if a != "-q"] + ["-v", "--edgepack-target", "local"]
    r = subprocess.run(verbose, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert "test_uses_target[local] PASSED" in r.stdout


def test_python_host_kind(silero_onnx: Path, local_target: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """A profile with host.kind: python gets the standalone Python host, and check runs it on the device."""
    name, env = local_target
    prof = tmp_path / "py.yaml"
    prof.write_text("extends: generic-x86_64\nname: py-host\nhost: {kind: python}\n")
    bundle = tmp_path / "vad-py.edgepack"
    r = run_cli(["package", str(silero_onnx), "--profile", str(prof), "-o", str(bundle)])
    assert r.returncode == 0, r.stderr
    assert "host/edgepack_host.py" in read_manifest(bundle)["files"]
    # The "device" is this machine: its python3 must have numpy + onnxruntime, as the venv's has.
    env = {**env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    _deploy(bundle, name, env)
    r = run_cli(["check", "--target", name, "--json"], env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["host_kind"] == "python" and doc["passed"]
    assert doc["metrics"]["max_abs_error"] <= 1e-4
    assert len(doc["details"]["per_sample"]) == doc["samples"] == 64
