"""Profiles: the shipped eight, extends:, strict validation, and the CLI around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.errors import ConfigError
from edgepack.profiles import available, load, load_file
from tests.conftest import run_cli

SHIPPED = [
    "rpi-zero-2w",
    "rpi-3b",
    "rpi-4b",
    "rpi-5",
    "jetson-nano",
    "jetson-orin-nano",
    "generic-aarch64",
    "generic-x86_64",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name: str) -> None:
    p = load(name)
    assert p.name == name
    assert p.device.arch in ("aarch64", "x86_64")


def test_honest_isa_values() -> None:
    assert "dotprod" not in load("rpi-4b").device.isa
    assert load("rpi-4b").device.cpu == "cortex-a72"
    assert "dotprod" in load("rpi-5").device.isa
    assert load("rpi-5").device.cpu == "cortex-a76"
    assert load("rpi-zero-2w").device.memory_mb == 512
    assert load("jetson-nano").device.glibc == "2.27"


def test_extends_inherits_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("extends: rpi-5\nname: mine\nruntime: {threads: 2}\n")
    p = load_file(f)
    assert p.runtime.threads == 2
    assert p.device.cpu == "cortex-a76"  # inherited


BAD = [
    ("unknown top key", "extends: rpi-5\nname: x\ncolour: red\n", "unknown key 'colour'"),
    ("unknown nested key", "extends: rpi-5\nname: x\ndevice: {ram: 3}\n", "unknown key 'device.ram'"),
    ("wrong type", "extends: rpi-5\nname: x\ndevice: {memory_mb: lots}\n", "device.memory_mb"),
    ("bad enum", "extends: rpi-5\nname: x\nquantization: {default: int3}\n", "quantization.default"),
    ("unknown parent", "extends: rpi-99\nname: x\n", "unknown profile 'rpi-99'"),
    ("not yaml", "device: [\n", "not valid YAML"),
]


@pytest.mark.parametrize(("label", "text", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_profiles_name_file_and_key(tmp_path: Path, label: str, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_file(f)
    assert needle in str(e.value)
    assert "bad.yaml" in str(e.value)
    r = run_cli(["profiles", "validate", str(f)])
    assert r.returncode == 2
    assert r.stderr.startswith("edgepack: error: ") and len(r.stderr.strip().splitlines()) == 1


def test_cli_list_json_and_unknown_profile() -> None:
    r = run_cli(["profiles", "list", "--json"])
    assert r.returncode == 0
    names = [p["name"] for p in json.loads(r.stdout)]
    assert set(SHIPPED) <= set(names)
    assert set(available()) == set(names)
    r = run_cli(["profiles", "show", "no-such-profile"])
    assert r.returncode == 2
    assert "rpi-5" in r.stderr  # lists the known ones


def test_show_is_resolved() -> None:
    r = run_cli(["profiles", "show", "rpi-4b", "--json"])
    doc = json.loads(r.stdout)
    assert doc["runtime"]["onnxruntime"] == "1.32.0"  # from generic-aarch64
    assert doc["device"]["cpu"] == "cortex-a72"
