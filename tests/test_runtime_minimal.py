"""Minimal ONNX Runtime builds (issue 8): bad inputs, the operator-config logic, and one real build + verification.

The real build (``slow``) uses the persistent cache under ``edgepack.paths.cache_dir()``: warm it takes seconds,
cold it creates the trixie chroot and compiles x86_64 ORT (≈20-30 min on 2 cores). Only x86_64 is built cold here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.minimal_runtime import X86_PROFILE, minilm_int8
from edgepack.errors import BuildError, SourceError
from edgepack.paths import cache_dir
from tests.conftest import run_cli

CONFIG_A = """# Generated from model/s:
# - a.ort
ai.onnx;13;Cast{"inputs": {"0": ["float", "int64_t"]}},MatMul{"inputs": {"0": ["float"]}},Unsqueeze
ai.onnx;14;Add{"inputs": {"0": ["float"]}}
com.microsoft;1;BiasGelu,SkipLayerNormalization
"""


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edgepack: error: ") and " — " in lines[0], lines[0]
    return lines[0]


def _lib_entries(root: Path) -> list[Path]:
    lib = root / "ort-build" / "lib"
    return sorted(p for p in lib.iterdir()) if lib.is_dir() else []


# --- fast: operator configs, ninja progress, bad input that needs no build -----------------------------------


def test_opconfig_parse_keeps_types_with_commas():
    from edgepack.runtime.minimal import opconfig

    ops = opconfig.parse(CONFIG_A)
    assert ops[("ai.onnx", 13, "Cast")] == {"inputs": {"0": ["float", "int64_t"]}}
    assert ops[("ai.onnx", 13, "Unsqueeze")] is None
    assert ("com.microsoft", 1, "BiasGelu") in ops
    assert len(ops) == 6


def test_opconfig_missing_names_ops_and_types(tmp_path):
    from edgepack.runtime.minimal import opconfig

    lib = tmp_path / "lib.config"
    lib.write_text(CONFIG_A)
    same = tmp_path / "same.config"
    same.write_text("\n".join(reversed(CONFIG_A.splitlines())))
    assert opconfig.missing(lib, same) == []
    more = tmp_path / "more.config"
    more.write_text(
        CONFIG_A + 'ai.onnx;11;Conv{"inputs": {"0": ["float"]}}\n' + 'ai.onnx;14;Add{"inputs": {"0": ["int64_t"]}}\n'
    )
    gaps = opconfig.missing(lib, more)
    assert any("Conv" in g for g in gaps), gaps
    assert any("Add" in g and "int64_t" in g for g in gaps), gaps


def test_config_hash_ignores_comments_and_order(tmp_path):
    from edgepack.runtime.minimal.cache import config_hash

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(CONFIG_A)
    b.write_text("# other comment\n" + "\n".join(sorted(CONFIG_A.splitlines()[2:], reverse=True)))
    assert config_hash(a) == config_hash(b)
    b.write_text(CONFIG_A.replace("Unsqueeze", "Squeeze"))
    assert config_hash(a) != config_hash(b)


def test_ninja_progress_lines_are_parsed():
    from edgepack.runtime.minimal.build import parse_ninja_line

    assert parse_ninja_line("[12/426] Building CXX object foo.o") == (12, 426)
    assert parse_ninja_line("[426/426] Linking CXX shared library libonnxruntime.so.1.21.0") == (426, 426)
    assert parse_ninja_line("-- Configuring done") is None


def test_aarch64_library_is_built_like_its_reference_and_needs_nothing_beside_it():
    """-O2 as Debian built the full ORT it is verified against (on aarch64 at -O3 GCC drops the fused
    multiply-adds in the layer-norm loops and int8 rounding flips: 0.05 max abs on MiniLM); protobuf-lite static."""
    from edgepack.runtime.minimal.build import flags_for, key_flags

    for arch in ("x86_64", "aarch64"):
        flags = flags_for(arch)
        assert "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" in flags and "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" in flags
        assert any(f.startswith("-DProtobuf_LITE_LIBRARY_RELEASE=") and f.endswith("libprotobuf-lite.a") for f in flags)
        assert not any("static-libstdc++" in f for f in flags)
    assert key_flags("aarch64") != key_flags("x86_64")


def test_fake_cpu_sysfs_lists_one_cpu(tmp_path, monkeypatch):
    from edgepack.runtime.minimal.verify import fake_cpu_sysfs

    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    root = fake_cpu_sysfs()
    cpu = root / "devices" / "system" / "cpu"
    assert {p.name for p in cpu.iterdir()} == {"possible", "present", "online"}
    assert all((cpu / n).read_text() == "0\n" for n in ("possible", "present", "online"))
    assert root.is_relative_to(tmp_path)


def test_runtime_pass_verifies_on_the_reference_inputs_the_model_takes(tmp_path):
    """The runtime pass hands the bundle's reference feeds to the minimal build, minus inputs the model lost."""
    import numpy as np

    from edgepack.checks.reference import ReferenceSample, ReferenceSet
    from edgepack.passes.base import ModelArtifact, PassContext
    from edgepack.passes.runtime import _reference_inputs
    from edgepack.profiles import load

    model = tmp_path / "m.onnx"
    _tiny_model(model)
    feeds: list[dict[str, np.ndarray]] = [
        {"x": np.full((1, 4), k, np.float32), "sr": np.array(16000, np.int64)} for k in range(3)
    ]
    ref = ReferenceSet("generic", "y", [ReferenceSample(f"s{k}", f) for k, f in enumerate(feeds)])
    ctx = PassContext(profile=load("rpi-5"), work_dir=tmp_path, reference=ref)
    got = _reference_inputs(ctx, ModelArtifact(onnx_path=model, task="generic"), tmp_path / "in")
    assert got is not None and len(got) == 3
    for k, sample in enumerate(got):
        assert set(sample) == {"x"}
        np.testing.assert_array_equal(np.load(sample["x"]), feeds[k]["x"])
    assert (
        _reference_inputs(PassContext(profile=load("rpi-5"), work_dir=tmp_path), ModelArtifact(model, "x"), tmp_path)
        is None
    )


def test_armv7l_profile_has_no_toolchain(tmp_path):
    prof = tmp_path / "pi-armv7.yaml"
    prof.write_text(
        "extends: rpi-3b\nname: pi-armv7\ndevice:\n  arch: armv7l\n  bits: 32\n  memory_mb: 1024\n  storage_mb: 8000\n"
    )
    _tiny_model(tmp_path / "m.onnx")
    proc = run_cli(["runtime", "build", "--profile", str(prof), "--model", str(tmp_path / "m.onnx")], timeout=120)
    line = _one_error_line(proc)
    assert "armv7l" in line and "aarch64" in line


def test_missing_source_file_is_one_line_and_leaves_no_library(tmp_path, monkeypatch, capsys):
    """A pinned Debian file the signed index no longer lists: one line naming it and the fix, exit 2."""
    from edgepack.cli.main import main
    from edgepack.runtime.minimal import sources

    gone = sources.PinnedFile(
        "onnxruntime_1.21.0+dfsg-0gone.debian.tar.xz", "onnxruntime", "1.21.0+dfsg-0gone", "trixie", "0" * 64, 1
    )
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "ORT_DEBIAN", gone)
    monkeypatch.setattr(sources, "PINNED", (sources.ORT_ORIG, gone, sources.ONNX_ORIG))
    model = tmp_path / "m.onnx"
    _tiny_model(model)
    rc = main(["runtime", "build", "--profile", "generic-x86_64", "--model", str(model)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and gone.name in err[0] and "--ort-source" in err[0], err
    assert _lib_entries(tmp_path / "cache") == []


def test_pool_file_gone_from_mirror(tmp_path, monkeypatch):
    """The mirror answers 404 for a pinned pool file: SourceError naming the file, no partial download left."""
    from edgepack.runtime.minimal import sources

    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path))
    pin = sources.PinnedFile("onnx_0.0.0.orig.tar.gz", "onnx", "0.0.0-1", "trixie", "0" * 64, 1)
    dest = tmp_path / pin.name
    with pytest.raises(SourceError) as e:
        sources._download(f"{sources.MIRROR}/{pin.pool_path}", dest, pin)
    assert pin.name in str(e.value) and "--ort-source" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_ort_source_that_is_not_ort(tmp_path):
    from edgepack.runtime.minimal.sources import user_tree

    with pytest.raises(SourceError, match="not an ONNX Runtime source tree"):
        user_tree(tmp_path)


def _tiny_model(path: Path, op: str = "Relu") -> None:
    """A one-node model: Relu (in MiniLM's op set? no) or Conv, to need ops a MiniLM build lacks."""
    import onnx
    from onnx import TensorProto, helper

    if op == "Conv":
        w = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 3, 3], [0.1] * 18)
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])
        graph = helper.make_graph([node], "tiny", [x], [y], [w])
    else:
        node = helper.make_node(op, ["x"], ["y"])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
        graph = helper.make_graph([node], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


# --- slow: a real build (or the cached one) and what it must do -------------------------------------------------

# The model and the glibc-2.36 x86_64 profile (generic-x86_64 allows glibc 2.28; the library needs 2.34) are the
# benchmark's, so the test and benchmarks/minimal_runtime.py share one cached library.


@pytest.fixture(scope="module")
def x86_profile(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("profiles") / "x86_64-glibc236.yaml"
    p.write_text(X86_PROFILE)
    return str(p)


@pytest.fixture(scope="module")
def built_x86(minilm_dir, x86_profile, tmp_path_factory):
    """The x86_64 minimal ORT for MiniLM int8 via provide() — from the cache when this machine has it."""
    from edgepack.profiles import load
    from edgepack.runtime.minimal import provide

    model = minilm_int8(minilm_dir)
    steps: list[tuple[str, float, float | None]] = []
    t0 = time.monotonic()
    rt = provide(
        load(x86_profile),
        model,
        tmp_path_factory.mktemp("minimal"),
        progress=lambda s, d, t: steps.append((s, d, t)),
    )
    return rt, model, steps, time.monotonic() - t0


@pytest.mark.slow
def test_build_is_verified_against_full_ort(built_x86):
    rt, _, steps, _ = built_x86
    v = rt.verification
    assert rt.ort_version == "1.21.0" and rt.arch == "x86_64"
    assert v.samples >= 1 and v.max_abs_diff <= 1e-5, v
    assert set(v.outputs) == {"sentence_embedding", "token_embeddings"}
    assert rt.library.name == "libonnxruntime.so.1.21.0" and rt.library.is_file()
    assert rt.extra_libs == []  # protobuf-lite is linked in
    assert "$ORIGIN" in rt.needs["runpath"].split(":")
    # Runs on glibc 2.36 and GCC 12's libstdc++ (Raspberry Pi OS Bookworm, Debian 12), and needs nothing else.
    assert tuple(int(x) for x in rt.needs["glibc"].split(".")) <= (2, 36), rt.needs
    assert tuple(int(x) for x in rt.needs["glibcxx"].split(".")) <= (3, 4, 30), rt.needs
    assert set(rt.needs["needed"]) <= {
        "libstdc++.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "libc.so.6",
        "ld-linux-x86-64.so.2",
    }
    assert rt.ort_model.read_bytes()[4:8] == b"ORTM"
    assert "BiasGelu" in rt.required_operators.read_text()  # made by 1.21's tooling (1.32 writes Gelu)
    assert rt.library.stat().st_size < 4_000_000
    if not rt.cached:  # a cold build must have reported compile progress as N/M
        compiles = [s for s in steps if s[0] == "compile"]
        assert compiles and compiles[-1][2] and compiles[-1][2] > 100


@pytest.mark.slow
def test_second_provide_reuses_the_library_in_seconds(built_x86, x86_profile, tmp_path):
    from edgepack.profiles import load
    from edgepack.runtime.minimal import provide

    rt, model, _, _ = built_x86
    t0 = time.monotonic()
    again = provide(load(x86_profile), model, tmp_path)
    assert again.cached and again.library == rt.library and again.key == rt.key
    assert time.monotonic() - t0 < 90
    assert again.verification.max_abs_diff <= 1e-5


@pytest.mark.slow
def test_cli_runtime_build_prints_library_size_and_needs(built_x86, x86_profile, tmp_path):
    rt, model, _, _ = built_x86
    out = tmp_path / "out"
    proc = run_cli(
        ["runtime", "build", "--profile", x86_profile, "--model", str(model), "-o", str(out), "--json"],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["cached"] is True and doc["library"] == str(rt.library)
    assert doc["library_bytes"] == rt.library.stat().st_size
    assert not any("protobuf" in n for n in doc["needs"]["needed"]) and doc["extra_libs"] == []
    assert doc["verification"]["max_abs_diff"] <= 1e-5
    for name in ("libonnxruntime.so.1.21.0", "required_operators.config", "model.ort"):
        assert (out / name).is_file(), name
    human = run_cli(["runtime", "build", "--profile", x86_profile, "--model", str(model)], timeout=600)
    assert human.returncode == 0, human.stderr[-2000:]
    assert str(rt.library) in human.stdout and "needs" in human.stdout and "max abs diff" in human.stdout


@pytest.mark.slow
def test_model_with_an_op_the_library_lacks(built_x86, x86_profile, tmp_path):
    """--reuse a MiniLM library for a model with Conv: one line naming Conv and the fix, exit 2."""
    rt, _, _, _ = built_x86
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    for f in [rt.library, *rt.extra_libs, rt.required_operators]:
        shutil.copyfile(f, lib_dir / f.name)
    conv = tmp_path / "conv.onnx"
    _tiny_model(conv, "Conv")
    proc = run_cli(
        ["runtime", "build", "--profile", x86_profile, "--model", str(conv), "--reuse", str(lib_dir)], timeout=600
    )
    line = _one_error_line(proc)
    assert "Conv" in line and "without --reuse" in line


@pytest.mark.slow
def test_corrupted_cache_entry_is_reported_not_used(built_x86, x86_profile, tmp_path):
    """A cached library whose bytes changed: exit 2 naming the file and the fix; the entry is not replaced."""
    rt, model, _, _ = built_x86
    cache = tmp_path / "cache"
    real = cache_dir() / "ort-build"
    # Share the (large) build environment, sources and verifier; copy only the library entry.
    for part in ("env", "src", "sources", "verifier", "runtime-libs"):
        (cache / "ort-build").mkdir(parents=True, exist_ok=True)
        os.symlink(real / part, cache / "ort-build" / part)
    entry = cache / "ort-build" / "lib" / rt.key
    shutil.copytree(rt.library.parent, entry)
    lib = entry / rt.library.name
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))
    proc = run_cli(
        ["runtime", "build", "--profile", x86_profile, "--model", str(model)],
        env={"EDGEPACK_CACHE": str(cache)},
        timeout=600,
    )
    line = _one_error_line(proc)
    assert "corrupted" in line and str(entry) in line and "--rebuild" in line
    assert lib.read_bytes() == bytes(data)  # left for the user to look at, never silently used or half-replaced


def test_lookup_detects_corruption(tmp_path, monkeypatch):
    from edgepack.runtime.minimal import cache

    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "libonnxruntime.so.1.21.0").write_bytes(b"\x7fELF" + bytes(100))
    entry = cache.publish(staging, "k1", {"library": "libonnxruntime.so.1.21.0", "extra_libs": []})
    assert cache.lookup("k1") is not None and not staging.exists()
    entry.library.write_bytes(b"\x7fELF" + bytes(99) + b"\x01")
    with pytest.raises(BuildError, match="corrupted"):
        cache.lookup("k1")


def test_glibc_newer_than_the_profile_allows_is_refused():
    from edgepack.profiles import load
    from edgepack.runtime.minimal import _check_glibc

    _check_glibc({"glibc": "2.35"}, load("rpi-5"))  # Bookworm: 2.36
    with pytest.raises(BuildError, match=r"needs glibc 2\.35.*allows glibc 2\.28"):
        _check_glibc({"glibc": "2.35"}, load("generic-x86_64"))
