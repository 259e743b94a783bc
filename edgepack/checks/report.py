"""A self-contained HTML report of an on-device check: plots as PNG files beside it and inlined into the page,
so ``index.html`` opens anywhere with no network."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1050px;
color:#1f2328;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;
padding-bottom:.3rem}.sub{color:#59636e;margin-top:0}
.verdict{display:inline-block;padding:.35rem .9rem;border-radius:2rem;font-weight:600;color:#fff}
.pass{background:#1a7f37}.fail{background:#cf222e}
table{border-collapse:collapse;margin:.5rem 0;min-width:60%}th,td{border:1px solid #d0d7de;padding:.35rem .7rem;
text-align:left}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.ok{color:#1a7f37;font-weight:600}td.bad{color:#cf222e;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0;flex:1 1 480px}
.plots img{width:100%;border:1px solid #d0d7de;border-radius:6px}figcaption{color:#59636e;font-size:.9rem}
code{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px}.small{color:#59636e;font-size:.85rem}
"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return html.escape(str(v))


def _mb(n: Any) -> str:
    return "—" if n is None else f"{float(n) / 1e6:.1f} MB"


def _plots(out: Path, doc: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []
    details = doc.get("details", {})
    metrics = doc.get("metrics", {})
    lat = metrics.get("latency_ms", {})
    samples = details.get("latency_ms_samples") or []
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    if samples:
        ax.hist(samples, bins=min(40, max(10, len(samples) // 4)), color="#0969da", alpha=0.85)
    for key, color in (("p50", "#1a7f37"), ("p90", "#bf8700"), ("p99", "#cf222e")):
        if key in lat:
            ax.axvline(lat[key], color=color, linestyle="--", label=f"{key} {lat[key]:.2f} ms")
    gate = next((g for g in doc.get("gates", []) if g["name"] == "latency_ms_p90_max"), None)
    if gate:
        ax.axvline(gate["threshold"], color="black", linewidth=2, label=f"gate p90 ≤ {gate['threshold']:g} ms")
    ax.set_xlabel("latency of one model run on the device (ms)")
    ax.set_ylabel("runs")
    ax.set_title(f"Latency on {doc.get('target')} ({len(samples)} timed runs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency.png")
    plt.close(fig)
    made.append(("latency.png", "Latency histogram with p50/p90/p99 and the profile's gate."))

    per = details.get("per_sample") or []
    key = "cosine" if per and "cosine" in per[0] else "max_abs_error"
    if per:
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        values = [float(p.get(key, 0.0)) for p in per]
        ax.bar(range(len(values)), values, color="#0969da", width=0.8)
        if key == "cosine":
            cosine_gates = [g["threshold"] for g in doc.get("gates", []) if g["name"].startswith("cosine_")]
            lo = min([*values, *cosine_gates, 0.98])  # keep every gate line inside the plot
            ax.set_ylim(max(0.0, lo - 0.005), 1.0005)
            for g in doc.get("gates", []):
                if g["name"] in ("cosine_min_min", "cosine_mean_min"):
                    ax.axhline(
                        g["threshold"],
                        color="#cf222e" if g["name"] == "cosine_min_min" else "#bf8700",
                        linestyle="--",
                        label=f"{g['name']} {g['threshold']:g}",
                    )
            ax.set_ylabel("cosine to the FP32 reference")
        else:
            ax.set_ylabel("max |device − FP32 reference|")
        ax.set_xlabel("reference sample")
        ax.set_title(f"Per-sample accuracy on the device ({len(values)} samples)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "accuracy.png")
        plt.close(fig)
        made.append(("accuracy.png", f"Per-sample {key.replace('_', ' ')} of the device's output vs FP32."))
    return made


def render_html(doc: dict[str, Any], manifest: dict[str, Any], images: list[tuple[str, bytes, str]]) -> str:
    m = doc.get("metrics", {})
    host = manifest.get("metrics", {}).get("host", {})
    profile = manifest.get("profile", {})
    passed = bool(doc.get("passed"))
    lat = m.get("latency_ms", {})
    rows = [
        ("model size", _mb(host.get("reference_size_bytes")), _mb(host.get("size_bytes")), _mb(host.get("size_bytes"))),
        ("cosine mean", "1", _fmt(host.get("cosine_mean")), _fmt(m.get("cosine_mean"))),
        ("cosine min", "1", _fmt(host.get("cosine_min")), _fmt(m.get("cosine_min"))),
        ("top-1 agreement", "1", _fmt(host.get("top1_agreement")), _fmt(m.get("top1_agreement"))),
        ("max abs error", "0", _fmt(host.get("max_abs_error"), 6), _fmt(m.get("max_abs_error"), 6)),
        (
            "latency p50",
            _fmt(host.get("reference_latency_ms_p50"), 2) + " ms",
            _fmt(host.get("latency_ms_p50"), 2) + " ms",
            _fmt(lat.get("p50"), 2) + " ms",
        ),
        ("latency p90", "—", "—", _fmt(lat.get("p90"), 2) + " ms"),
        ("latency p99", "—", "—", _fmt(lat.get("p99"), 2) + " ms"),
        ("peak RSS", "—", "—", _fmt(m.get("peak_rss_mb"), 1) + " MB" if m.get("peak_rss_mb") is not None else "—"),
    ]
    rows = [r for r in rows if not (r[2] == "—" and r[3] in ("—", "— ms"))]
    comp = "".join(
        f"<tr><td>{html.escape(a)}</td><td class=num>{b}</td><td class=num>{c}</td><td class=num>{d}</td></tr>"
        for a, b, c, d in rows
    )
    gates = (
        "".join(
            f"<tr><td><code>{html.escape(g['name'])}</code></td>"
            f"<td class=num>{'≥' if g['name'].endswith('_min') else '≤'} "
            f"{g['threshold']:g}</td><td class=num>{_fmt(g['value'])}</td>"
            f"<td class={'ok' if g['passed'] else 'bad'}>{'pass' if g['passed'] else 'FAIL'}</td></tr>"
            for g in doc.get("gates", [])
        )
        or "<tr><td colspan=4>the profile sets no gate that applies</td></tr>"
    )
    figs = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,"
        f"{base64.b64encode(data).decode()}'><figcaption>{html.escape(cap)} (<code>{name}</code>)"
        f"</figcaption></figure>"
        for name, data, cap in images
    )
    worst = ""
    per = doc.get("details", {}).get("per_sample") or []
    if per and "cosine" in per[0]:
        low = sorted(per, key=lambda p: p["cosine"])[:5]
        worst = (
            "<h2>Least accurate samples</h2><table><tr><th>sample</th><th>cosine</th><th>text</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(str(p.get('id')))}</td><td class=num>{p['cosine']:.5f}</td>"
                f"<td>{html.escape(str(p.get('text', ''))[:140])}</td></tr>"
                for p in low
            )
            + "</table>"
        )
    model = manifest.get("model", {})
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>edgepack check · {html.escape(str(doc.get("target")))}</title><style>{_CSS}</style></head><body>
<h1>On-device check: {html.escape(str(model.get("name") or model.get("source", "model")))}
on <code>{html.escape(str(doc.get("target")))}</code></h1>
<p class=sub>profile <b>{html.escape(str(profile.get("name")))}</b> · {html.escape(str(doc.get("arch")))} ·
quantization {html.escape(str(model.get("quantization")))} · ONNX Runtime
{html.escape(str(manifest.get("runtime", {}).get("onnxruntime")))} · host {html.escape(str(doc.get("host_kind")))} ·
{doc.get("samples")} reference samples · bundle <code>{html.escape(str(doc.get("bundle_id"))[:16])}</code></p>
<p><span class="verdict {"pass" if passed else "fail"}">{"ALL GATES PASSED" if passed else "GATE FAILED"}</span></p>
<h2>Profile gates</h2><table><tr><th>gate</th><th>threshold</th><th>measured on the device</th><th>verdict</th></tr>
{gates}</table>
<h2>Packaging host vs device</h2>
<table><tr><th></th><th>FP32 reference</th><th>bundle, measured at packaging</th>
<th>bundle, measured on the device</th></tr>
{comp}</table>
<p class=small>Packaging-time figures come from the bundle manifest (measured on the packaging machine, 1 thread);
device figures were computed by the device host from the bundle's reference data.</p>
<h2>Plots</h2><div class=plots>{figs}</div>
{worst}
<p class=small>Generated by edgepack from <code>check --json</code>. Raw document: <code>check.json</code>.</p>
</body></html>
"""


def write_report(out: Path, doc: dict[str, Any], manifest: dict[str, Any]) -> Path:
    """Write ``index.html``, the PNGs and ``check.json`` into ``out``; returns the index path."""
    out.mkdir(parents=True, exist_ok=True)
    made = _plots(out, doc)
    images = [(name, (out / name).read_bytes(), caption) for name, caption in made]
    (out / "check.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    index = out / "index.html"
    tmp = out / ".index.html.partial"
    tmp.write_text(render_html(doc, manifest, images), encoding="utf-8")
    os.replace(tmp, index)
    return index
