using System.IO;
using System.Text;
using Edgepack.Host.Json;
using Edgepack.Host.Tokenizers;

namespace Edgepack.Host.Commands
{
    /// <summary>`tokenize --tokenizer DIR [--max-length N]`: UTF-8 texts on stdin, one per '\n'-terminated line
    /// (a '\r' stays part of the text), one JSON array of ids per line on stdout.</summary>
    public static class TokenizeCommand
    {
        public static int Run(Options opts, TextWriter stdout)
        {
            var tok = Tokenizer.Load(opts.Require("--tokenizer", "tokenize"));
            int maxLen = opts.GetInt("--max-length", 0);
            string all;
            using (var stdin = new StreamReader(System.Console.OpenStandardInput(), new UTF8Encoding(false)))
                all = stdin.ReadToEnd();
            if (all.Length == 0) return 0;
            string[] lines = all.Split('\n');
            int n = all.EndsWith("\n", System.StringComparison.Ordinal) ? lines.Length - 1 : lines.Length;
            var sb = new StringBuilder();
            for (int i = 0; i < n; i++)
            {
                var enc = tok.Encode(lines[i], maxLen);
                sb.Clear();
                sb.Append('[');
                for (int k = 0; k < enc.Ids.Length; k++)
                {
                    if (k > 0) sb.Append(", ");
                    sb.Append(enc.Ids[k]);
                }
                sb.Append(']');
                stdout.WriteLine(sb.ToString());
            }
            return 0;
        }
    }
}
