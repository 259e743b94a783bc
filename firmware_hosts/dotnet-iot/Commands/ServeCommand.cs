using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Edgepack.Host.Bundle;
using Edgepack.Host.Interop;
using Edgepack.Host.Json;
using Edgepack.Host.Ort;

namespace Edgepack.Host.Commands
{
    /// <summary>`serve --bundle-dir DIR`: one JSON request a line on stdin, one JSON response a line on stdout
    /// (the same framing works over a serial line). Ops: embed, run, info, stats, shutdown. A bad request gets
    /// {"id", "ok": false, "error"} and the server keeps serving.</summary>
    public static class ServeCommand
    {
        public static int Run(Options opts, TextWriter stdout)
        {
            using (var ctx = new HostContext(opts, "serve"))
            using (var stdin = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false)))
            {
                var state = new State { Ctx = ctx };
                string line;
                while ((line = stdin.ReadLine()) != null)
                {
                    if (line.Trim().Length == 0) continue;
                    var response = Handle(state, line);
                    stdout.WriteLine(JsonWriter.Write(response));
                    stdout.Flush();
                    if (state.Stop) break;
                    // Mono's SGen lets request garbage pile up in the major heap for thousands of requests
                    // (+15 MB RSS measured) before a major collection; a small device wants RSS flat instead.
                    // A full collection of this small heap takes about a millisecond, after the response is out.
                    if (state.Requests % CollectEvery == 0) GC.Collect();
                }
            }
            return 0;
        }

        const int CollectEvery = 100;

        sealed class State
        {
            public HostContext Ctx;
            public Embedder Embedder;
            public long Requests, Errors;
            public bool Stop;
        }

        static Dictionary<string, object> Handle(State st, string line)
        {
            st.Requests++;
            object id = null;
            var resp = J.NewObj();
            try
            {
                var req = J.Obj(JsonReader.Parse(line), "a request");
                id = J.Get(req, "id");
                resp["id"] = id;
                string op = J.GetString(req, "op", null);
                if (op == null) throw new HostError("the request has no \"op\"", "use embed, run, info, stats or shutdown");
                resp["ok"] = true;
                switch (op)
                {
                    case "embed": Embed(st, req, resp); break;
                    case "run": RunOp(st, req, resp); break;
                    case "info": Info(st, resp); break;
                    case "stats": Stats(st, resp); break;
                    case "shutdown": st.Stop = true; break;
                    default: throw new HostError("unknown op '" + op + "'", "use embed, run, info, stats or shutdown");
                }
                return resp;
            }
            catch (Exception e)
            {
                st.Errors++;
                int code;
                var err = J.NewObj();
                err["id"] = id;
                err["ok"] = false;
                err["error"] = Program.Describe(e, out code);
                if (code == 70) Console.Error.WriteLine("edgepack-host: serve: " + e);
                return err;
            }
        }

        static void Embed(State st, Dictionary<string, object> req, Dictionary<string, object> resp)
        {
            var texts = J.GetList(req, "texts");
            if (texts == null) throw new HostError("embed needs \"texts\": [strings]");
            if (st.Embedder == null) st.Embedder = new Embedder(st.Ctx.Session, st.Ctx.Bundle.ModelDir);
            var result = new List<object>();
            foreach (var t in texts)
            {
                var s = t as string;
                if (s == null) throw new HostError("every entry of \"texts\" must be a string");
                var v = st.Embedder.Embed(s);
                var row = new List<object>(v.Length);
                foreach (float f in v) row.Add((double)f);
                result.Add(row);
            }
            resp["embeddings"] = result;
        }

        static void RunOp(State st, Dictionary<string, object> req, Dictionary<string, object> resp)
        {
            var inputs = J.GetObj(req, "inputs");
            if (inputs == null) throw new HostError("run needs \"inputs\": {name: {dtype, shape, data}}");
            var feeds = new Dictionary<string, TensorData>(StringComparer.Ordinal);
            foreach (var kv in inputs)
            {
                var spec = J.Obj(kv.Value, "input " + kv.Key);
                var shapeList = J.GetList(spec, "shape");
                var data = J.GetList(spec, "data");
                string dtype = J.GetString(spec, "dtype", null);
                if (shapeList == null || data == null || dtype == null)
                    throw new HostError("input '" + kv.Key + "' needs dtype, shape and data");
                var shape = new long[shapeList.Count];
                for (int i = 0; i < shape.Length; i++)
                {
                    if (!(shapeList[i] is double) || (double)shapeList[i] < 0) throw new HostError("input '" + kv.Key + "' has a bad shape");
                    shape[i] = (long)(double)shapeList[i];
                }
                feeds[kv.Key] = TensorData.FromDoubles(ElementTypes.Parse(dtype), shape, data);
            }
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var outputs = st.Ctx.Session.Run(feeds);
            resp["run_ms"] = sw.Elapsed.TotalMilliseconds;
            var wanted = J.GetList(req, "outputs");
            var outDoc = J.NewObj();
            foreach (var kv in outputs)
            {
                if (wanted != null && !wanted.Contains(kv.Key)) continue;
                var o = J.NewObj();
                o["dtype"] = ElementTypes.Name(kv.Value.Type);
                o["shape"] = kv.Value.Shape;
                o["data"] = kv.Value.ToJsonValues();
                outDoc[kv.Key] = o;
            }
            resp["outputs"] = outDoc;
        }

        static List<object> Nodes(List<NodeInfo> nodes)
        {
            var list = new List<object>();
            foreach (var n in nodes)
            {
                var d = J.NewObj();
                d["name"] = n.Name;
                d["dtype"] = ElementTypes.Name(n.Type);
                d["shape"] = n.Shape;
                list.Add(d);
            }
            return list;
        }

        static void Info(State st, Dictionary<string, object> resp)
        {
            resp["host_version"] = Program.Version;
            resp["arch"] = NativeLib.ProcessArch();
            resp["onnxruntime"] = st.Ctx.Runtime.Version;
            resp["bundle_id"] = st.Ctx.Bundle.Id;
            resp["inputs"] = Nodes(st.Ctx.Session.Inputs);
            resp["outputs"] = Nodes(st.Ctx.Session.Outputs);
            resp["execution_providers"] = st.Ctx.Session.Providers;
            resp["threads"] = st.Ctx.Config.IntraOpThreads;
        }

        static void Stats(State st, Dictionary<string, object> resp)
        {
            resp["rss_mb"] = Program.ProcStatusMb("VmRSS");
            resp["peak_rss_mb"] = Program.ProcStatusMb("VmHWM");
            resp["requests"] = st.Requests;
            resp["errors"] = st.Errors;
            resp["managed_heap_mb"] = GC.GetTotalMemory(false) / 1048576.0;
            resp["gc_collections"] = GC.CollectionCount(GC.MaxGeneration);
        }
    }
}
