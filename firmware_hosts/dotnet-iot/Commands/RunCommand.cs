using System;
using System.Collections.Generic;
using System.IO;
using Edgepack.Host.Npy;
using Edgepack.Host.Ort;

namespace Edgepack.Host.Commands
{
    /// <summary>`run --bundle-dir DIR --input NAME=FILE.npy ... --output-dir DIR`: one inference, every output
    /// written as OUTPUT_DIR/NAME.npy.</summary>
    public static class RunCommand
    {
        public static int Run(Options opts, TextWriter stdout)
        {
            string outDir = opts.Require("--output-dir", "run");
            if (opts.Inputs.Count == 0) throw new HostError("run needs at least one --input NAME=FILE.npy", "run edgepack-host --help");
            var feeds = new Dictionary<string, TensorData>(StringComparer.Ordinal);
            foreach (string spec in opts.Inputs)
            {
                int eq = spec.IndexOf('=');
                if (eq <= 0) throw new HostError("--input '" + spec + "' is not NAME=FILE.npy");
                string name = spec.Substring(0, eq);
                if (feeds.ContainsKey(name)) throw new HostError("input '" + name + "' is given twice");
                feeds[name] = NpyFile.Read(spec.Substring(eq + 1));
            }
            using (var ctx = new HostContext(opts, "run"))
            {
                var outputs = ctx.Session.Run(feeds);
                Directory.CreateDirectory(outDir);
                foreach (var kv in outputs)
                {
                    string path = Path.Combine(outDir, SafeName(kv.Key) + ".npy");
                    NpyFile.Write(path, kv.Value);
                    stdout.WriteLine(kv.Key + " " + ElementTypes.Name(kv.Value.Type) + TensorData.ShapeString(kv.Value.Shape) + " -> " + path);
                }
            }
            return 0;
        }

        // Output names may hold '/' or ':' (graph-internal names); keep the file inside the output folder.
        static string SafeName(string name)
        {
            foreach (char c in Path.GetInvalidFileNameChars()) name = name.Replace(c, '_');
            return name.Replace('/', '_');
        }
    }
}
