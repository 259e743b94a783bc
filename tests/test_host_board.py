"""The same host exe on arm64: Debian's arm64 Mono under qemu-user on a virtual board (`edgepack board up`),
the bundle deployed with `edgepack deploy`, the aarch64 ORT library from the bundle's runtime/."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgepack.checks import metrics
from tests.conftest import run_cli
from tests.test_host_support import host_built_fixture, minilm_int8_aarch64_fixture  # noqa: F401


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "virtual boards need root"
    missing = [t for t in ("qemu-aarch64-static", "unshare", "zstd") if not shutil.which(t)]
    return f"missing {', '.join(missing)} (make sysdeps)" if missing else None


pytestmark = [
    pytest.mark.board,
    pytest.mark.slow,
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
    pytest.mark.usefixtures("host_built"),
]

BOARD = "host-a76"
EXE = "mono host/edgepack-host.exe"


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("host-board-state")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEPACK_STATE", str(state))
    try:
        r = run_cli(["board", "up", BOARD, "--cpu", "cortex-a76", "--json"], timeout=1800)
        assert r.returncode == 0, r.stderr
        doc: dict[str, Any] = yaml.safe_load((state / "targets" / f"{BOARD}.yaml").read_text())
        yield doc
    finally:
        run_cli(["board", "down", BOARD])
        mp.undo()


def ssh(t: dict[str, Any], command: str, timeout: float) -> tuple[int, str, str]:
    from edgepack.boards.sshd import Endpoint, run

    ep = Endpoint(t["host"], int(t["port"]), t["user"], Path(t["identity"]), Path(t["known_hosts"]))
    return run(ep, command, timeout=timeout)


def test_host_on_arm64_board(board: dict[str, Any], minilm_int8_aarch64: Path) -> None:
    bundle = minilm_int8_aarch64.parent / "bundle.edgepack"
    r = run_cli(["deploy", str(bundle), "--target", BOARD, "--json"], timeout=900)
    assert r.returncode == 0, r.stderr
    host = f"cd {board['root']}/current && {EXE}"

    code, out, err = ssh(board, f"{host} info --json --bundle-dir .", timeout=300)
    assert code == 0, err
    info = json.loads(out)
    print(f"arm64 info: arch {info['arch']}, onnxruntime {info['onnxruntime']}, {info['clr']}")
    assert info["arch"] == "aarch64"
    assert info["onnxruntime"] == "1.32.0"
    assert info["ort_library"].endswith("/runtime/libonnxruntime.so.1.32.0")

    # All reference samples for accuracy; few timed repeats, since emulated latency means nothing.
    code, out, err = ssh(board, f"{host} check --json --bundle-dir . --repeats 5", timeout=1500)
    assert code in (0, 1), err
    doc = json.loads(out)
    manifest = json.loads((minilm_int8_aarch64 / "manifest.json").read_text())
    print(f"arm64 check: {json.dumps(doc['metrics'])} passed={doc['passed']}")
    assert doc["arch"] == "aarch64" and doc["bundle_id"] == manifest["id"]
    assert doc["samples"] == len(json.loads((minilm_int8_aarch64 / "reference" / "index.json").read_text())["samples"])
    assert {g["name"] for g in doc["gates"]} >= {"cosine_mean_min", "cosine_min_min"}
    assert code == 0 and doc["passed"] is True, doc["gates"]
    # The same accuracy the packager measured with Python onnxruntime on x86 (ORT arm64 vs x86: equal to ~1e-6).
    assert abs(doc["metrics"]["cosine_mean"] - manifest["metrics"]["host"]["cosine_mean"]) < 1e-4

    # serve on arm64: native tokenizer + the graph's pooled output, against the FP32 reference embedding.
    index = json.loads((minilm_int8_aarch64 / "reference" / "index.json").read_text())
    s0 = index["samples"][0]
    lines = [{"id": 1, "op": "embed", "texts": [s0["text"]]}, {"id": 2, "op": "stats"}, {"op": "shutdown"}]
    payload = base64.b64encode("".join(json.dumps(x) + "\n" for x in lines).encode()).decode()
    here = f"cd {board['root']}/current"
    code, out, err = ssh(board, f"{here} && echo {payload} | base64 -d | {EXE} serve --bundle-dir .", timeout=300)
    assert code == 0, err
    embed, stats, _ = (json.loads(line) for line in out.splitlines())
    ref = np.load(minilm_int8_aarch64 / "reference" / s0["outputs"][index["compare_output"]]).ravel()
    cos = metrics.cosine(ref, np.asarray(embed["embeddings"][0]))
    print(f"arm64 serve embed vs FP32 reference: cosine {cos:.6f}, rss {stats['rss_mb']:.1f} MB")
    assert cos >= 0.98 and stats["rss_mb"] > 10
