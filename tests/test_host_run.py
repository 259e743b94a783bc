"""The C# host runs real bundles: same embeddings as Python, `run`/`check`/`serve` as DESIGN.md says, bad input
gives one line and exit 2, and `serve` does not leak."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgepack.checks import metrics
from edgepack.runtime.host import host_command, run_host
from tests.test_host_support import (  # noqa: F401
    host_built_fixture,
    minilm_fp32_x86_fixture,
    minilm_int8_x86_fixture,
)
from tests.test_host_tokenizers import make_texts

pytestmark = pytest.mark.usefixtures("host_built")

SENTENCES = [
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "Edge devices run small models.",
    "Über naïve café — 東京 🤩",
    "",
]


def variant(bundle: Path, dest: Path, edit: Callable[[Path], None]) -> Path:
    """A cheap copy (hard links) of an extracted bundle; ``edit`` must replace files, never write into them."""
    shutil.copytree(bundle, dest, copy_function=os.link)
    edit(dest)
    return dest


def replace_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.unlink()  # break the hard link before writing
    path.write_text(json.dumps(doc), encoding="utf-8")


class Server:
    """`serve` as a subprocess speaking JSON lines."""

    def __init__(self, bundle: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            host_command(["serve", "--bundle-dir", str(bundle), *extra]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def raw(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        assert out, self.proc.stderr.read() if self.proc.stderr else "server closed"
        doc: dict[str, Any] = json.loads(out)
        return doc

    def ask(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.raw(json.dumps(req))

    def close(self) -> int:
        self.ask({"op": "shutdown"})
        return self.proc.wait(timeout=30)


def describe(cos: list[float]) -> str:
    return f"cosine min {min(cos):.9f} mean {np.mean(cos):.9f} (1 - min = {1 - min(cos):.2e})"


def host_embeddings(bundle: Path, texts: list[str]) -> np.ndarray:
    srv = Server(bundle)
    try:
        r = srv.ask({"id": 1, "op": "embed", "texts": texts})
        assert r["ok"], r
        return np.asarray(r["embeddings"], dtype=np.float64)
    finally:
        assert srv.close() == 0


def test_fp32_embeddings_match_sentence_transformers(minilm_fp32_x86: Path, minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = SENTENCES + make_texts(120, seed=7)
    want = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, batch_size=16)
    got = host_embeddings(minilm_fp32_x86, texts)
    cos = [metrics.cosine(a, b) for a, b in zip(want, got, strict=True)]
    print(f"FP32 host vs sentence-transformers, {len(texts)} texts: {describe(cos)}")
    assert min(cos) >= 0.9999


def test_host_pooling_matches_when_graph_has_no_pooled_output(
    minilm_fp32_x86: Path, minilm_dir: Path, tmp_path: Path
) -> None:
    """Without a `sentence_embedding` output the host pools token embeddings itself (mean + L2, from the ST config)."""
    import onnx
    from sentence_transformers import SentenceTransformer

    def drop_pooled(d: Path) -> None:
        model = onnx.load(str(d / "model" / "model.onnx"))
        keep = [o for o in model.graph.output if o.name != "sentence_embedding"]
        del model.graph.output[:]
        model.graph.output.extend(keep)
        (d / "model" / "model.onnx").unlink()
        onnx.save(model, str(d / "model" / "model.onnx"))
        (d / "reference" / "index.json").unlink()

    b = variant(minilm_fp32_x86, tmp_path / "nopool", drop_pooled)
    texts = SENTENCES + make_texts(40, seed=8)
    want = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts)
    got = host_embeddings(b, texts)
    cos = [metrics.cosine(a, b) for a, b in zip(want, got, strict=True)]
    print(f"host-side mean pooling vs sentence-transformers, {len(texts)} texts: {describe(cos)}")
    assert min(cos) >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_embeddings_match_python_onnxruntime(minilm_int8_x86: Path) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    texts = SENTENCES + make_texts(120, seed=9)
    tok = Tokenizer.from_file(str(minilm_int8_x86 / "model" / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(minilm_int8_x86 / "model" / "model.onnx"), opts)
    names = {i.name for i in sess.get_inputs()}
    want = []
    for t in texts:
        e = tok.encode(t)
        feeds = {
            "input_ids": np.array([e.ids], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids], dtype=np.int64),
        }
        want.append(sess.run(["sentence_embedding"], {k: v for k, v in feeds.items() if k in names})[0][0])
    got = host_embeddings(minilm_int8_x86, texts)
    cos = [metrics.cosine(a, b) for a, b in zip(want, got, strict=True)]
    print(f"int8 host vs Python onnxruntime, {len(texts)} texts: {describe(cos)}")
    assert min(cos) >= 0.9999


def test_run_writes_npy_equal_to_python(minilm_int8_x86: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    index = json.loads((minilm_int8_x86 / "reference" / "index.json").read_text())
    sample = index["samples"][3]
    args = ["run", "--bundle-dir", str(minilm_int8_x86), "--output-dir", str(tmp_path / "out")]
    feeds = {}
    for name, rel in sample["inputs"].items():
        path = minilm_int8_x86 / "reference" / rel
        args += ["--input", f"{name}={path}"]
        feeds[name] = np.load(path)
    r = run_host(args)
    assert r.returncode == 0, r.stderr
    sess = ort.InferenceSession(str(minilm_int8_x86 / "model" / "model.onnx"))
    for o, want in zip(sess.get_outputs(), sess.run(None, feeds), strict=True):
        got = np.load(tmp_path / "out" / f"{o.name}.npy")
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.max(np.abs(got - want)) <= 1e-5


def test_check_document_and_metrics_agree_with_python(minilm_int8_x86: Path) -> None:
    r = run_host(["check", "--bundle-dir", str(minilm_int8_x86), "--json"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"target", "bundle_id", "host_kind", "arch", "samples", "metrics", "gates", "passed"}
    manifest = json.loads((minilm_int8_x86 / "manifest.json").read_text())
    assert doc["bundle_id"] == manifest["id"] and doc["host_kind"] == "dotnet-iot" and doc["arch"] == "x86_64"
    index = json.loads((minilm_int8_x86 / "reference" / "index.json").read_text())
    assert doc["samples"] == len(index["samples"])
    m = doc["metrics"]
    assert set(m["latency_ms"]) == {"p50", "p90", "p99"} and 0 < m["latency_ms"]["p50"] <= m["latency_ms"]["p99"]
    assert 20 < m["peak_rss_mb"] < 2000
    # The same metrics computed in Python from the same reference data and the same model.
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(minilm_int8_x86 / "model" / "model.onnx"), opts)
    refs, cands = [], []
    for s in index["samples"]:
        feeds = {k: np.load(minilm_int8_x86 / "reference" / v) for k, v in s["inputs"].items()}
        refs.append(np.load(minilm_int8_x86 / "reference" / s["outputs"][index["compare_output"]]))
        cands.append(sess.run([index["compare_output"]], feeds)[0])
    py = metrics.accuracy(refs, cands, index["metrics"])
    assert abs(m["cosine_mean"] - py["cosine_mean"]) < 1e-6
    assert abs(m["cosine_min"] - py["cosine_min"]) < 1e-6
    assert abs(m["max_abs_error"] - py["max_abs_error"]) < 1e-5
    names = {g["name"] for g in doc["gates"]}
    assert names == {k for k, v in manifest["profile"]["gates"].items() if v is not None and k != "top1_agreement_min"}
    assert doc["passed"] is all(g["passed"] for g in doc["gates"]) is True


def test_check_exits_1_when_a_gate_fails(minilm_int8_x86: Path, tmp_path: Path) -> None:
    def strict(d: Path) -> None:
        replace_json(d / "manifest.json", lambda m: m["profile"]["gates"].update(cosine_mean_min=0.99999))

    b = variant(minilm_int8_x86, tmp_path / "strict", strict)
    r = run_host(["check", "--bundle-dir", str(b), "--json", "--repeats", "5"])
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    gate = next(g for g in doc["gates"] if g["name"] == "cosine_mean_min")
    assert gate["passed"] is False and gate["threshold"] == 0.99999 and doc["passed"] is False


def test_serve_protocol_and_bad_requests(minilm_int8_x86: Path) -> None:
    srv = Server(minilm_int8_x86)
    try:
        info = srv.ask({"id": 1, "op": "info"})
        assert info["ok"] and info["id"] == 1 and info["onnxruntime"] == "1.32.0"
        ids = [101, 7592, 2088, 102]
        req: dict[str, Any] = {
            "id": 2,
            "op": "run",
            "inputs": {
                "input_ids": {"dtype": "int64", "shape": [1, 4], "data": ids},
                "attention_mask": {"dtype": "int64", "shape": [1, 4], "data": [1, 1, 1, 1]},
            },
        }
        input_names = {i["name"] for i in info["inputs"]}
        if "token_type_ids" in input_names:
            req["inputs"]["token_type_ids"] = {"dtype": "int64", "shape": [1, 4], "data": [0, 0, 0, 0]}
        out = srv.ask(req)
        assert out["ok"], out
        emb = out["outputs"]["sentence_embedding"]
        assert emb["dtype"] == "float32" and emb["shape"] == [1, 384] and len(emb["data"]) == 384
        bad = [
            "this is not json",
            '{"id": 3, "op": "fly"}',
            '{"id": 4}',
            json.dumps({"id": 5, "op": "run", "inputs": {"nope": {"dtype": "int64", "shape": [1], "data": [1]}}}),
            json.dumps(
                {
                    **req,
                    "id": 6,
                    "inputs": {**req["inputs"], "input_ids": {"dtype": "int32", "shape": [1, 4], "data": ids}},
                }
            ),
            json.dumps(
                {
                    **req,
                    "id": 7,
                    "inputs": {**req["inputs"], "input_ids": {"dtype": "int64", "shape": [1, 5], "data": ids}},
                }
            ),
            json.dumps({"id": 8, "op": "embed", "texts": [1, 2]}),
            '{"id": 9, "op": "embed", "texts": ["unterminated',
        ]
        for line in bad:
            resp = srv.raw(line)
            assert resp["ok"] is False and resp["error"], resp
            assert "   at " not in resp["error"]
        assert "nope" in srv.raw(bad[3])["error"]
        assert "int32" in srv.raw(bad[4])["error"] and "int64" in srv.raw(bad[4])["error"]
        stats = srv.ask({"op": "stats"})
        assert stats["ok"] and stats["rss_mb"] > 10 and stats["errors"] >= len(bad)
        again = srv.ask(req)  # still serving after all that
        assert again["ok"] and again["outputs"]["sentence_embedding"]["data"] == emb["data"]
    finally:
        assert srv.close() == 0


def test_serve_does_not_leak(minilm_int8_x86: Path) -> None:
    """2,000 `run` calls in one process: RSS after the first 100 grows by < 5 MB (benchmarks/host_overhead.py
    does the 10,000-call version)."""
    srv = Server(minilm_int8_x86)
    try:
        info = srv.ask({"op": "info"})
        n = 16
        inputs = {
            i["name"]: {"dtype": "int64", "shape": [1, n], "data": [101] + [2000 + k for k in range(n - 2)] + [102]}
            if i["name"] == "input_ids"
            else {"dtype": "int64", "shape": [1, n], "data": [1 if i["name"] == "attention_mask" else 0] * n}
            for i in info["inputs"]
        }
        line = json.dumps({"op": "run", "inputs": inputs, "outputs": ["sentence_embedding"]})
        rss = []
        for k in range(2000):
            assert srv.raw(line)["ok"]
            if k + 1 in (100, 2000):
                rss.append(srv.ask({"op": "stats"})["rss_mb"])
        print(f"serve RSS after 100 runs {rss[0]:.1f} MB, after 2000 {rss[1]:.1f} MB (+{rss[1] - rss[0]:.2f})")
        assert rss[1] - rss[0] < 5.0
    finally:
        assert srv.close() == 0
