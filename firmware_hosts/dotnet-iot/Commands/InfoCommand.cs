using System;
using System.IO;
using System.Collections.Generic;
using Edgepack.Host.Bundle;
using Edgepack.Host.Interop;
using Edgepack.Host.Json;
using Edgepack.Host.Ort;

namespace Edgepack.Host.Commands
{
    /// <summary>`info [--json]`: host version, ORT version, arch, execution providers.</summary>
    public static class InfoCommand
    {
        public static int Run(Options opts, TextWriter stdout)
        {
            string lib;
            string bundleDir = opts.Get("--bundle-dir");
            if (bundleDir != null) lib = new BundleDir(bundleDir).FindOrtLibrary(opts.Get("--ort-lib"));
            else
            {
                lib = Program.OrtLibFromOptions(opts.Get("--ort-lib"));
                if (lib == null) throw new HostError("no ONNX Runtime library given", "pass --ort-lib PATH, set EDGEPACK_ORT_LIB or --bundle-dir DIR");
            }
            using (var rt = OrtRuntime.Load(lib))
            {
                var doc = J.NewObj();
                doc["host"] = "edgepack-host";
                doc["host_version"] = Program.Version;
                doc["arch"] = NativeLib.ProcessArch();
                doc["onnxruntime"] = rt.Version;
                doc["ort_api_version"] = (int)OrtApi.ApiVersion;
                doc["ort_library"] = Path.GetFullPath(lib);
                doc["execution_providers"] = rt.AvailableProviders();
                doc["ort_build_info"] = rt.BuildInfo();
                doc["clr"] = Type.GetType("Mono.Runtime") != null ? "mono " + MonoVersion() : ".NET " + Environment.Version;
                doc["os"] = Environment.OSVersion.ToString();
                doc["processors"] = Environment.ProcessorCount;
                if (opts.Json) stdout.WriteLine(JsonWriter.Write(doc));
                else
                {
                    stdout.WriteLine("edgepack-host " + Program.Version + " (" + doc["clr"] + ")");
                    stdout.WriteLine("arch: " + doc["arch"]);
                    stdout.WriteLine("onnxruntime: " + rt.Version + " (" + doc["ort_library"] + ")");
                    stdout.WriteLine("execution providers: " + string.Join(", ", rt.AvailableProviders()));
                }
            }
            return 0;
        }

        static string MonoVersion()
        {
            var t = Type.GetType("Mono.Runtime");
            var m = t == null ? null : t.GetMethod("GetDisplayName", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static);
            return m == null ? "" : (string)m.Invoke(null, null);
        }
    }
}
