"""Packaging: real models through the real pipeline; bad input gives one line, exit 2 and leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgepack.bundle import read_manifest, read_member, verify
from tests.conftest import ROOT, run_cli


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("edgepack: error: ")
    assert " — " in lines[0]
    return lines[0]


def _assert_empty(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == []


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# ---- bad input --------------------------------------------------------------------------------------------------


def test_nonexistent_source(out_dir: Path) -> None:
    r = run_cli(["package", "/no/such/model", "--profile", "rpi-4b", "-o", str(out_dir / "x.edgepack")])
    assert r.returncode == 2
    assert "does not exist" in _one_error_line(r.stderr)
    _assert_empty(out_dir)


def test_folder_that_is_not_a_model(tmp_path: Path, out_dir: Path) -> None:
    junk = tmp_path / "notamodel"
    junk.mkdir()
    (junk / "README.md").write_text("hello")
    r = run_cli(["package", str(junk), "--profile", "rpi-4b", "-o", str(out_dir / "x.edgepack")])
    assert r.returncode == 2
    assert "not a model folder" in _one_error_line(r.stderr)
    _assert_empty(out_dir)


@pytest.mark.parametrize("kind", ["truncated", "random"])
def test_truncated_or_corrupt_onnx(tmp_path: Path, out_dir: Path, silero_onnx: Path, kind: str) -> None:
    data = silero_onnx.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2] if kind == "truncated" else np.random.default_rng(1).bytes(4000))
    r = run_cli(["package", str(bad), "--profile", "rpi-4b", "-o", str(out_dir / "x.edgepack")])
    assert r.returncode == 2
    assert "not a valid ONNX model" in _one_error_line(r.stderr)
    _assert_empty(out_dir)


def test_unknown_profile_lists_known(out_dir: Path, silero_onnx: Path) -> None:
    r = run_cli(["package", str(silero_onnx), "--profile", "rpi-99", "-o", str(out_dir / "x.edgepack")])
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "rpi-99" in line and "rpi-zero-2w" in line
    _assert_empty(out_dir)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("extends: rpi-5\nname: bad\ncolour: red\n", "unknown key 'colour'"),
        ("extends: rpi-5\nname: bad\nruntime: {threads: many}\n", "runtime.threads"),
    ],
)
def test_bad_profile_file(tmp_path: Path, out_dir: Path, silero_onnx: Path, text: str, needle: str) -> None:
    prof = tmp_path / "bad.yaml"
    prof.write_text(text)
    r = run_cli(["package", str(silero_onnx), "--profile", str(prof), "-o", str(out_dir / "x.edgepack")])
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert needle in line and "bad.yaml" in line
    _assert_empty(out_dir)


def test_calibration_of_wrong_shape(tmp_path: Path, out_dir: Path, silero_onnx: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    np.savez(
        calib / "0.npz",
        input=np.zeros((1, 3, 7), np.float32),
        state=np.zeros((2, 1, 128), np.float32),
        sr=np.array(16000, np.int64),
    )
    r = run_cli(
        [
            "package",
            str(silero_onnx),
            "--profile",
            "rpi-zero-2w",
            "--calibration",
            str(calib),
            "-o",
            str(out_dir / "x.edgepack"),
        ]
    )
    assert r.returncode == 2
    assert "has shape [1, 3, 7]" in _one_error_line(r.stderr)
    _assert_empty(out_dir)


def test_output_in_missing_folder(tmp_path: Path, silero_onnx: Path) -> None:
    r = run_cli(["package", str(silero_onnx), "--profile", "rpi-zero-2w", "-o", str(tmp_path / "nope" / "x.edgepack")])
    assert r.returncode == 2
    assert "does not exist" in _one_error_line(r.stderr)
    assert not (tmp_path / "nope").exists()


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs (root only): read-only or tiny, to provoke EROFS / ENOSPC for real."""
    if (
        shutil.which("mount") is None
        or subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0"
    ):
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_output_in_read_only_folder(small_mount: Path, silero_onnx: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(small_mount)], check=True)
    r = run_cli(["package", str(silero_onnx), "--profile", "rpi-zero-2w", "-o", str(small_mount / "x.edgepack")])
    assert r.returncode == 2
    assert "not writable" in _one_error_line(r.stderr)
    _assert_empty(small_mount)


def test_disk_fills_while_writing(small_mount: Path, silero_onnx: Path) -> None:
    # 2 MB: the VAD bundle (model 1.3 MB + 27 MB runtime library) cannot fit.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small_mount)], check=True)
    r = run_cli(["package", str(silero_onnx), "--profile", "rpi-zero-2w", "-o", str(small_mount / "x.edgepack")])
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "cannot write bundle" in line and "space" in line.lower()
    _assert_empty(small_mount)


def test_budget_exceeded_says_by_how_much(tmp_path: Path, out_dir: Path, silero_onnx: Path) -> None:
    prof = tmp_path / "tiny.yaml"
    prof.write_text("extends: rpi-zero-2w\nname: tiny\nbudgets: {max_model_mb: 0.5}\n")
    r = run_cli(["package", str(silero_onnx), "--profile", str(prof), "-o", str(out_dir / "x.edgepack")])
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "over tiny's max_model_mb 0.5 by 0.8 MB" in line
    _assert_empty(out_dir)


# ---- real bundles -------------------------------------------------------------------------------------------------


def test_vad_bundle_smaller_and_within_1e4(vad_bundle: Path, silero_onnx: Path, tmp_path: Path) -> None:
    """silero-vad for rpi-zero-2w: smaller than the original and within 1e-4 of it on real 16 kHz speech frames."""
    import onnxruntime as ort

    from edgepack.checks.inputs import SPEECH_WAV, read_wav_16k, vad_frames

    m = read_manifest(vad_bundle)
    assert m["profile"]["name"] == "rpi-zero-2w"
    with tarfile.open(vad_bundle) as t:
        t.extractall(tmp_path, filter="data")
    model = tmp_path / m["model"]["member"]
    assert model.stat().st_size < silero_onnx.stat().st_size
    orig = ort.InferenceSession(str(silero_onnx), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in new.get_inputs()] == ["input", "state"]  # sr pinned to 16 kHz
    frames = vad_frames(read_wav_16k(SPEECH_WAV), 200)
    s1 = s2 = np.zeros((2, 1, 128), np.float32)
    worst, speech = 0.0, 0
    for fr in frames:
        p1, s1 = orig.run(None, {"input": fr, "state": s1, "sr": np.array(16000, np.int64)})
        p2, s2 = new.run(None, {"input": fr, "state": s2})
        worst = max(worst, float(np.abs(p1 - p2).max()))
        speech += int(p1.item() > 0.5)
    assert worst <= 1e-4
    assert 20 < speech < len(frames) - 20  # the audio really has speech and pauses
    assert m["metrics"]["host"]["max_abs_error"] <= 1e-4


def test_minilm_bundle_contents_and_metrics(minilm_int8_bundle: Path) -> None:
    m = read_manifest(minilm_int8_bundle)
    assert m["format"] == "edgepack-bundle/1"
    assert [p["name"] for p in m["passes"]] == ["export", "optimize", "quantize", "prune", "runtime"]
    for p in m["passes"]:
        assert set(p) == {"name", "params", "seconds", "size_bytes_after"}
    host = m["metrics"]["host"]
    assert host["size_bytes"] <= 0.26 * host["reference_size_bytes"]
    assert host["cosine_mean"] >= 0.99 and host["cosine_min"] >= 0.98
    names = set(m["files"])
    assert {
        "model/model.onnx",
        "model/required_operators.config",
        "model/tokenizer.json",
        "reference/index.json",
        "reference/texts.txt",
        "runtime/libonnxruntime.so.1.32.0",
        "host/edgepack-host.exe",
        "install.sh",
    } <= names
    index = json.loads(read_member(minilm_int8_bundle, "reference/index.json"))
    assert len(index["samples"]) >= 64
    assert index["compare_output"] == "sentence_embedding"
    assert verify(minilm_int8_bundle).ok


def test_same_inputs_same_bytes(vad_bundle: Path, silero_onnx: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.edgepack"
    r = run_cli(["package", str(silero_onnx), "--profile", "rpi-zero-2w", "-o", str(again)])
    assert r.returncode == 0, r.stderr
    assert again.read_bytes() == vad_bundle.read_bytes()


def test_inspect_and_verify_tampered(vad_bundle: Path, tmp_path: Path) -> None:
    r = run_cli(["inspect", str(vad_bundle), "--json"])
    assert r.returncode == 0
    assert json.loads(r.stdout) == read_manifest(vad_bundle)
    bad = tmp_path / "bad.edgepack"
    bad.write_bytes(vad_bundle.read_bytes())
    with tarfile.open(bad) as t:
        member = next(i for i in t.getmembers() if i.name == "model/model.onnx")
    with bad.open("r+b") as f:
        f.seek(member.offset_data + 100)
        f.write(b"\x00\x01\x02")
    r = run_cli(["verify", str(bad)])
    assert r.returncode == 1
    assert "model/model.onnx" in r.stderr


def test_help_imports_nothing_heavy() -> None:
    """Start-up time lives in benchmarks/startup.py; here: --help must not import the heavy libraries at all."""
    code = (
        "import sys, contextlib, io\nfrom edgepack.cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
        "heavy = {'torch', 'onnxruntime', 'onnx', 'optimum', 'transformers', 'numpy', 'pydantic', 'paramiko', 'rich'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.strip() == "[]"
