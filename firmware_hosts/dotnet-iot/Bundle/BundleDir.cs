using System;
using System.Collections.Generic;
using System.IO;
using Edgepack.Host.Json;
using Edgepack.Host.Ort;

namespace Edgepack.Host.Bundle
{
    /// <summary>An extracted bundle (docs/bundle-internals.md): manifest, model/, runtime/, reference/.</summary>
    public sealed class BundleDir
    {
        public readonly string Dir;
        public readonly Dictionary<string, object> Manifest;
        public readonly Dictionary<string, object> Profile;
        public readonly Dictionary<string, object> Reference;   // reference/index.json, or null

        public BundleDir(string dir)
        {
            Dir = dir;
            if (!Directory.Exists(dir))
                throw new HostError("bundle directory " + dir + " does not exist", "pass the extracted bundle (releases/<id>/)");
            string mpath = Path.Combine(dir, "manifest.json");
            if (!File.Exists(mpath))
                throw new HostError(dir + " has no manifest.json, so it is not an extracted bundle", "pass the folder install.sh extracted");
            Manifest = Parse(mpath);
            Profile = J.GetObj(Manifest, "profile") ?? J.NewObj();
            string ipath = Path.Combine(dir, "reference", "index.json");
            if (File.Exists(ipath)) Reference = Parse(ipath);
        }

        static Dictionary<string, object> Parse(string path)
        {
            try { return J.Obj(JsonReader.ParseFile(path), path); }
            catch (JsonException e) { throw new HostError(e.Message, "repackage the bundle"); }
        }

        public string Id { get { return J.GetString(Manifest, "id", ""); } }
        public string HostKind { get { return J.GetString(J.GetObj(Profile, "host"), "kind", "dotnet-iot"); } }
        public string ModelDir { get { return Path.Combine(Dir, "model"); } }

        /// <summary>The model member to run: what reference/index.json names, else model.onnx, else model.ort.</summary>
        public string ModelPath
        {
            get
            {
                string member = J.GetString(Reference, "model_member", null);
                if (member != null) return Path.Combine(Dir, member);
                string onnx = Path.Combine(ModelDir, "model.onnx");
                if (File.Exists(onnx)) return onnx;
                string ort = Path.Combine(ModelDir, "model.ort");
                if (File.Exists(ort)) return ort;
                throw new HostError("bundle " + Dir + " has neither model/model.onnx nor model/model.ort", "repackage the bundle");
            }
        }

        /// <summary>The ORT library: the bundle's runtime/ first, else --ort-lib, else EDGEPACK_ORT_LIB.</summary>
        public string FindOrtLibrary(string ortLibOption)
        {
            string rt = Path.Combine(Dir, "runtime");
            if (Directory.Exists(rt))
            {
                var libs = Directory.GetFiles(rt, "libonnxruntime.so*");
                Array.Sort(libs, StringComparer.Ordinal);
                // Prefer the fully versioned file (libonnxruntime.so.1.32.0) over symlink-style short names.
                if (libs.Length > 0) return libs[libs.Length - 1];
            }
            string lib = Program.OrtLibFromOptions(ortLibOption);
            if (lib == null)
                throw new HostError("bundle " + Dir + " ships no ONNX Runtime library in runtime/ and none was given",
                    "pass --ort-lib PATH or set EDGEPACK_ORT_LIB");
            return lib;
        }

        /// <summary>Refuses a library older than the one the bundle was made for, naming both versions.</summary>
        public void CheckRuntimeVersion(OrtRuntime rt)
        {
            string wanted = J.GetString(J.GetObj(Manifest, "runtime"), "onnxruntime", null)
                ?? J.GetString(J.GetObj(Profile, "runtime"), "onnxruntime", null);
            if (wanted == null) return;
            if (CompareVersions(wanted, rt.Version) > 0)
                throw new HostError("bundle " + Dir + " was made for ONNX Runtime " + wanted + " but the library " + rt.Api.LibraryPath +
                    " is ONNX Runtime " + rt.Version, "use an ONNX Runtime library " + wanted + " or newer, or repackage for " + rt.Version);
        }

        public static int CompareVersions(string a, string b)
        {
            string[] pa = a.Split('.', '-', '+'), pb = b.Split('.', '-', '+');
            for (int i = 0; i < Math.Max(pa.Length, pb.Length); i++)
            {
                int x = 0, y = 0;
                if (i < pa.Length) int.TryParse(pa[i], out x);
                if (i < pb.Length) int.TryParse(pb[i], out y);
                if (x != y) return x.CompareTo(y);
            }
            return 0;
        }

        /// <summary>Session options from profile.runtime; reference/index.json's threads wins for check.</summary>
        public SessionConfig SessionConfig(int threadsOverride)
        {
            var cfg = new SessionConfig();
            var runtime = J.GetObj(Profile, "runtime");
            cfg.IntraOpThreads = (int)J.GetDouble(runtime, "threads", 0);
            if (Reference != null) cfg.IntraOpThreads = (int)J.GetDouble(Reference, "threads", cfg.IntraOpThreads);
            if (threadsOverride > 0) cfg.IntraOpThreads = threadsOverride;
            // Not a profile key today; honoured when a manifest carries it (e.g. "basic" for a pre-optimized .ort).
            string level = J.GetString(runtime, "graph_optimization_level", "all");
            switch (level)
            {
                case "disable": cfg.GraphOptimizationLevel = 0; break;
                case "basic": cfg.GraphOptimizationLevel = 1; break;
                case "extended": cfg.GraphOptimizationLevel = 2; break;
                case "all": cfg.GraphOptimizationLevel = 99; break;
                default: throw new HostError("runtime.graph_optimization_level '" + level + "' is unknown", "use disable, basic, extended or all");
            }
            var eps = J.GetList(runtime, "execution_providers");
            if (eps != null)
            {
                cfg.ExecutionProviders.Clear();
                foreach (var e in eps) if (e is string) cfg.ExecutionProviders.Add((string)e);
            }
            return cfg;
        }
    }
}
