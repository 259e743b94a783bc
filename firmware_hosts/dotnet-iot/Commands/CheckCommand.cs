using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using Edgepack.Host.Bundle;
using Edgepack.Host.Interop;
using Edgepack.Host.Json;
using Edgepack.Host.Npy;
using Edgepack.Host.Ort;

namespace Edgepack.Host.Commands
{
    /// <summary>`check --bundle-dir DIR [--json] [--details]`: runs every reference input, compares with the reference outputs,
    /// times the Run call, reads the peak RSS, applies the profile's gates (exit 1 if one fails).</summary>
    public static class CheckCommand
    {
        static readonly string[,] gateMetrics = {
            { "cosine_mean_min", "cosine_mean", ">=" },
            { "cosine_min_min", "cosine_min", ">=" },
            { "top1_agreement_min", "top1_agreement", ">=" },
            { "max_abs_error_max", "max_abs_error", "<=" },
            { "latency_ms_p90_max", "latency_ms.p90", "<=" },
            { "peak_rss_mb_max", "peak_rss_mb", "<=" },
        };

        sealed class Sample
        {
            public string Id;
            public string Text;
            public Dictionary<string, TensorData> Inputs;
            public float[] Reference;
            public int[] Mask;
        }

        public static int Run(Options opts, TextWriter stdout)
        {
            using (var ctx = new HostContext(opts, "check"))
            {
                var index = ctx.Bundle.Reference;
                if (index == null)
                    throw new HostError("bundle " + ctx.Bundle.Dir + " has no reference/index.json", "repackage it with reference data");
                string refDir = Path.Combine(ctx.Bundle.Dir, "reference");
                string compare = J.GetString(index, "compare_output", null);
                var post = J.GetObj(index, "postprocess");
                string postKind = J.GetString(post, "kind", "none");
                if (postKind != "none" && postKind != "mean_pooling")
                    throw new HostError("reference postprocess '" + postKind + "' is not supported", "use none or mean_pooling");
                bool postNormalize = J.GetBool(post, "normalize", false);
                string maskInput = J.GetString(post, "mask_input", "attention_mask");
                var kinds = new HashSet<string>();
                var kindList = J.GetList(index, "metrics");
                if (kindList != null) foreach (var k in kindList) if (k is string) kinds.Add((string)k);
                kinds.Add("max_abs_error");

                var samples = new List<Sample>();
                var list = J.GetList(index, "samples") ?? new List<object>();
                foreach (var o in list)
                {
                    var s = J.Obj(o, "reference sample");
                    var sample = new Sample { Id = J.GetString(s, "id", "?"), Text = J.GetString(s, "text", null), Inputs = new Dictionary<string, TensorData>(StringComparer.Ordinal) };
                    foreach (var kv in J.GetObj(s, "inputs") ?? J.NewObj())
                        sample.Inputs[kv.Key] = NpyFile.Read(Path.Combine(refDir, (string)kv.Value));
                    var outs = J.GetObj(s, "outputs") ?? J.NewObj();
                    string refPath = J.GetString(outs, compare ?? "", null);
                    if (refPath == null)
                        foreach (var kv in outs) { refPath = (string)kv.Value; if (compare == null) compare = kv.Key; break; }
                    if (refPath == null) throw new HostError("reference sample " + sample.Id + " has no outputs");
                    TensorData mask;
                    if (sample.Inputs.TryGetValue(maskInput, out mask)) sample.Mask = Array.ConvertAll(mask.ToFloats(), f => (int)f);
                    TensorData r = NpyFile.Read(Path.Combine(refDir, refPath));
                    sample.Reference = Post(r, postKind, postNormalize, sample.Mask);
                    samples.Add(sample);
                }
                if (samples.Count == 0) throw new HostError("reference/index.json lists no samples", "repackage the bundle with reference data");

                var cosines = new List<double>();
                int agree = 0;
                double maxAbs = 0;
                int lastDim = 0;
                var perSample = new List<object>();
                foreach (var s in samples)
                {
                    // The first run of each sample is also its warm-up (docs: one warm-up per sample).
                    var outputs = ctx.Session.Run(s.Inputs);
                    float[] cand = Candidate(outputs, compare, postKind, postNormalize, s.Mask, out lastDim);
                    if (cand.Length != s.Reference.Length)
                        throw new HostError("output " + compare + " of sample " + s.Id + " has " + cand.Length + " values but the reference has " +
                            s.Reference.Length, "repackage the bundle");
                    double cos = Metrics.Cosine(s.Reference, cand);
                    bool top1 = Metrics.Top1(s.Reference, cand, lastDim);
                    double abs = Metrics.MaxAbs(s.Reference, cand);
                    cosines.Add(cos);
                    if (top1) agree++;
                    maxAbs = Math.Max(maxAbs, abs);
                    var entry = J.NewObj();
                    entry["id"] = s.Id;
                    if (kinds.Contains("cosine")) entry["cosine"] = cos;
                    if (kinds.Contains("top1")) entry["top1"] = top1;
                    entry["max_abs_error"] = abs;
                    if (s.Text != null) entry["text"] = s.Text;
                    perSample.Add(entry);
                }

                int repeats = opts.GetInt("--repeats", (int)J.GetDouble(index, "latency_repeats", 20));
                var times = new List<double>();
                var sw = new Stopwatch();
                for (int i = 0; i < repeats; i++)
                {
                    var s = samples[i % samples.Count];
                    sw.Restart();
                    ctx.Session.Run(s.Inputs);
                    sw.Stop();
                    times.Add(sw.Elapsed.TotalMilliseconds);
                }

                var metrics = J.NewObj();
                if (kinds.Contains("cosine"))
                {
                    double sum = 0, min = double.PositiveInfinity;
                    foreach (double c in cosines) { sum += c; min = Math.Min(min, c); }
                    metrics["cosine_mean"] = sum / cosines.Count;
                    metrics["cosine_min"] = min;
                }
                if (kinds.Contains("top1")) metrics["top1_agreement"] = (double)agree / samples.Count;
                metrics["max_abs_error"] = maxAbs;
                if (times.Count > 0)
                {
                    var lat = J.NewObj();
                    lat["p50"] = Metrics.Percentile(times, 50);
                    lat["p90"] = Metrics.Percentile(times, 90);
                    lat["p99"] = Metrics.Percentile(times, 99);
                    metrics["latency_ms"] = lat;
                }
                metrics["peak_rss_mb"] = Program.ProcStatusMb("VmHWM");

                var gates = new List<object>();
                bool passed = true;
                var profileGates = J.GetObj(ctx.Bundle.Profile, "gates") ?? J.NewObj();
                for (int g = 0; g < gateMetrics.GetLength(0); g++)
                {
                    object th;
                    if (!profileGates.TryGetValue(gateMetrics[g, 0], out th) || !(th is double)) continue;
                    double? value = Lookup(metrics, gateMetrics[g, 1]);
                    if (value == null) continue;   // the metric does not apply to this bundle
                    double threshold = (double)th;
                    bool ok = gateMetrics[g, 2] == ">=" ? value.Value >= threshold : value.Value <= threshold;
                    passed &= ok;
                    var entry = J.NewObj();
                    entry["name"] = gateMetrics[g, 0];
                    entry["threshold"] = threshold;
                    entry["value"] = value.Value;
                    entry["passed"] = ok;
                    gates.Add(entry);
                }

                var doc = J.NewObj();
                doc["target"] = null;   // filled in by the Python side, which knows the target's name
                doc["bundle_id"] = ctx.Bundle.Id;
                doc["host_kind"] = "dotnet-iot";
                doc["arch"] = NativeLib.ProcessArch();
                doc["samples"] = samples.Count;
                doc["metrics"] = metrics;
                doc["gates"] = gates;
                doc["passed"] = passed;
                doc["onnxruntime"] = ctx.Runtime.Version;
                doc["threads"] = ctx.Config.IntraOpThreads;
                doc["latency_repeats"] = repeats;
                // Every timed run, for benchmarks that pool runs across processes (benchmarks/host_overhead.py).
                if (opts.Flags.Contains("--timings")) doc["latency_samples_ms"] = times;
                // Per-sample accuracy and every timed run, for the HTML report (edgepack check --report).
                if (opts.Flags.Contains("--details"))
                {
                    var details = J.NewObj();
                    details["per_sample"] = perSample;
                    details["latency_ms_samples"] = times;
                    doc["details"] = details;
                }
                if (opts.Json) stdout.WriteLine(JsonWriter.Write(doc));
                else
                {
                    stdout.WriteLine("bundle " + ctx.Bundle.Id + " on " + doc["arch"] + ", ONNX Runtime " + ctx.Runtime.Version + ", " + samples.Count + " samples");
                    foreach (var kv in metrics) stdout.WriteLine("  " + kv.Key + ": " + JsonWriter.Write(kv.Value));
                    foreach (Dictionary<string, object> g in gates)
                        stdout.WriteLine("  gate " + g["name"] + " " + JsonWriter.Write(g["value"]) + " vs " + JsonWriter.Write(g["threshold"]) +
                            ": " + ((bool)g["passed"] ? "passed" : "FAILED"));
                    stdout.WriteLine(passed ? "passed" : "FAILED");
                }
                return passed ? 0 : 1;
            }
        }

        static double? Lookup(Dictionary<string, object> metrics, string dotted)
        {
            object cur = metrics;
            foreach (string part in dotted.Split('.'))
            {
                var d = cur as Dictionary<string, object>;
                if (d == null || !d.TryGetValue(part, out cur)) return null;
            }
            if (cur is double && !double.IsNaN((double)cur)) return (double)cur;
            return null;
        }

        static float[] Post(TensorData t, string kind, bool normalize, int[] mask)
        {
            if (kind == "mean_pooling" && t.Shape.Length == 3)
            {
                if (mask == null) throw new HostError("mean pooling needs the attention mask input");
                return Embedder.PoolTokens(t.ToFloats(), t.Shape, mask, "mean", normalize);
            }
            return t.ToFloats();
        }

        static float[] Candidate(Dictionary<string, TensorData> outputs, string compare, string kind, bool normalize, int[] mask, out int lastDim)
        {
            TensorData t;
            if (!outputs.TryGetValue(compare, out t))
            {
                // compare_output may name the pooled result of a graph that only outputs token embeddings.
                if (!(kind == "mean_pooling" && (outputs.TryGetValue("last_hidden_state", out t) || outputs.TryGetValue("token_embeddings", out t))))
                    throw new HostError("the model has no output '" + compare + "'", "its outputs are: " + string.Join(", ", outputs.Keys));
            }
            float[] v = Post(t, kind, normalize, mask);
            lastDim = t.Shape.Length > 0 && !(kind == "mean_pooling" && t.Shape.Length == 3) ? (int)t.Shape[t.Shape.Length - 1] : v.Length;
            return v;
        }
    }
}
