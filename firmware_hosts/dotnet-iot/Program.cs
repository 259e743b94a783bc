// edgepack-host: the device host of an edgepack bundle (DESIGN.md "Device host").
// Exit codes: 0 ok, 1 a gate failed (check), 2 bad input/usage/configuration, 70 internal error.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Edgepack.Host.Commands;
using Edgepack.Host.Json;
using Edgepack.Host.Ort;

namespace Edgepack.Host
{
    public static class Program
    {
        public const string Version = "0.1.0";

        const string Usage =
            "usage: edgepack-host COMMAND [options]\n" +
            "  info [--json] [--bundle-dir DIR] [--ort-lib PATH]\n" +
            "  tokenize --tokenizer DIR [--max-length N]          texts on stdin, one a line -> JSON id arrays\n" +
            "  run --bundle-dir DIR --input NAME=FILE.npy ... --output-dir DIR [--ort-lib PATH] [--threads N]\n" +
            "  check --bundle-dir DIR [--json] [--repeats N] [--timings] [--details] [--ort-lib PATH] [--threads N]\n" +
            "  serve --bundle-dir DIR [--ort-lib PATH] [--threads N]   JSON lines on stdin/stdout\n" +
            "The ORT library comes from the bundle's runtime/, else --ort-lib PATH, else EDGEPACK_ORT_LIB.\n" +
            "Exit codes: 0 ok, 1 gate failed, 2 bad input, 70 internal error.";

        public static int Main(string[] argv)
        {
            // Consistent number formatting and UTF-8 on every device locale.
            System.Threading.Thread.CurrentThread.CurrentCulture = System.Globalization.CultureInfo.InvariantCulture;
            var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = false, NewLine = "\n" };
            // Messages carry file names and an em dash; a device with LANG=C must not turn them into '?'.
            Console.SetError(new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" });
            try
            {
                if (argv.Length == 0 || argv[0] == "--help" || argv[0] == "-h" || argv[0] == "help")
                {
                    stdout.WriteLine(Usage);
                    stdout.Flush();
                    return argv.Length == 0 ? 2 : 0;
                }
                var opts = Options.Parse(argv);
                int rc;
                switch (argv[0])
                {
                    case "info": rc = InfoCommand.Run(opts, stdout); break;
                    case "tokenize": rc = TokenizeCommand.Run(opts, stdout); break;
                    case "run": rc = RunCommand.Run(opts, stdout); break;
                    case "check": rc = CheckCommand.Run(opts, stdout); break;
                    case "serve": rc = ServeCommand.Run(opts, stdout); break;
                    default: throw new HostError("unknown command '" + argv[0] + "'", "use info, tokenize, run, check or serve");
                }
                stdout.Flush();
                return rc;
            }
            catch (Exception e)
            {
                stdout.Flush();
                int code;
                Console.Error.WriteLine("edgepack-host: error: " + Describe(e, out code));
                if (code == 70 || Environment.GetEnvironmentVariable("EDGEPACK_DEBUG") == "1") Console.Error.WriteLine(e.ToString());
                return code;
            }
        }

        /// <summary>One line for any exception, and the exit code it maps to.</summary>
        public static string Describe(Exception e, out int code)
        {
            code = 2;
            if (e is HostError) return e.Message;
            var oe = e as OrtException;
            if (oe != null) return "ONNX Runtime (" + oe.CodeName + "): " + oe.Message;
            if (e is JsonException) return e.Message;
            code = 70;
            return "internal error: " + e.GetType().Name + ": " + e.Message;
        }

        public static string OrtLibFromOptions(string ortLibOption)
        {
            if (!string.IsNullOrEmpty(ortLibOption)) return ortLibOption;
            string env = Environment.GetEnvironmentVariable("EDGEPACK_ORT_LIB");
            return string.IsNullOrEmpty(env) ? null : env;
        }

        /// <summary>The process's peak resident set (VmHWM) and current RSS (VmRSS) in MiB, from /proc/self/status.</summary>
        public static double ProcStatusMb(string key)
        {
            try
            {
                foreach (string line in File.ReadAllLines("/proc/self/status"))
                    if (line.StartsWith(key + ":", StringComparison.Ordinal))
                    {
                        string v = line.Substring(key.Length + 1).Trim();
                        if (v.EndsWith(" kB", StringComparison.Ordinal)) v = v.Substring(0, v.Length - 3);
                        return double.Parse(v.Trim(), System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
                    }
            }
            catch (IOException) { }
            return double.NaN;
        }
    }

    /// <summary>Command-line options: `--name value` pairs, repeatable `--input`, and flags.</summary>
    public sealed class Options
    {
        public readonly Dictionary<string, string> Values = new Dictionary<string, string>(StringComparer.Ordinal);
        public readonly List<string> Inputs = new List<string>();
        public readonly HashSet<string> Flags = new HashSet<string>(StringComparer.Ordinal);
        static readonly HashSet<string> flagNames = new HashSet<string> { "--json", "--timings", "--details" };
        static readonly HashSet<string> valueNames = new HashSet<string> {
            "--tokenizer", "--max-length", "--bundle-dir", "--output-dir", "--ort-lib", "--threads", "--repeats", "--input",
        };

        public static Options Parse(string[] argv)
        {
            var o = new Options();
            for (int i = 1; i < argv.Length; i++)
            {
                string a = argv[i], val = null;
                int eq = a.IndexOf('=');
                if (a.StartsWith("--", StringComparison.Ordinal) && eq > 0 && valueNames.Contains(a.Substring(0, eq)))
                {
                    val = a.Substring(eq + 1);
                    a = a.Substring(0, eq);
                }
                if (flagNames.Contains(a)) { o.Flags.Add(a); continue; }
                if (!valueNames.Contains(a)) throw new HostError("unknown option '" + argv[i] + "' for " + argv[0], "run edgepack-host --help");
                if (val == null)
                {
                    if (i + 1 >= argv.Length) throw new HostError("option " + a + " needs a value", "run edgepack-host --help");
                    val = argv[++i];
                }
                if (a == "--input") o.Inputs.Add(val);
                else o.Values[a] = val;
            }
            return o;
        }

        public bool Json { get { return Flags.Contains("--json"); } }

        public string Get(string name)
        {
            string v;
            return Values.TryGetValue(name, out v) ? v : null;
        }

        public string Require(string name, string command)
        {
            string v = Get(name);
            if (v == null) throw new HostError(command + " needs " + name, "run edgepack-host --help");
            return v;
        }

        public int GetInt(string name, int dflt)
        {
            string v = Get(name);
            if (v == null) return dflt;
            int n;
            if (!int.TryParse(v, out n) || n < 0) throw new HostError(name + " must be a non-negative integer, not '" + v + "'");
            return n;
        }
    }
}
