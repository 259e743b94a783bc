using System;
using System.Collections.Generic;
using System.Text;
using Edgepack.Host.Json;

namespace Edgepack.Host.Tokenizers
{
    /// <summary>GPT-2 family: the GPT-2 split pattern, bytes mapped to printable characters, then rank-ordered BPE merges.</summary>
    public sealed class ByteLevelBpeTokenizer : Tokenizer
    {
        readonly Dictionary<string, int> vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        readonly Dictionary<string, int> ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        readonly Dictionary<string, int[]> cache = new Dictionary<string, int[]>(StringComparer.Ordinal);
        bool addPrefixSpace, useRegex = true, ignoreMerges;
        int unkId = -1;
        static readonly char[] byteToChar = BuildByteMap();

        // bytes_to_unicode() of GPT-2: printable bytes map to themselves, the rest to U+0100 onwards.
        static char[] BuildByteMap()
        {
            var map = new char[256];
            var isPrintable = new bool[256];
            for (int b = '!'; b <= '~'; b++) isPrintable[b] = true;
            for (int b = 0xA1; b <= 0xAC; b++) isPrintable[b] = true;
            for (int b = 0xAE; b <= 0xFF; b++) isPrintable[b] = true;
            int n = 0;
            for (int b = 0; b < 256; b++) map[b] = isPrintable[b] ? (char)b : (char)(256 + n++);
            return map;
        }

        public static bool HasByteLevel(Dictionary<string, object> pre)
        {
            if (pre == null) return false;
            string type = J.GetString(pre, "type", "");
            if (type == "ByteLevel") return true;
            if (type == "Sequence")
            {
                var list = J.GetList(pre, "pretokenizers");
                if (list != null && list.Count == 1) return HasByteLevel(list[0] as Dictionary<string, object>);
            }
            return false;
        }

        static Dictionary<string, object> ByteLevelOf(Dictionary<string, object> pre)
        {
            if (J.GetString(pre, "type", "") == "ByteLevel") return pre;
            return (Dictionary<string, object>)J.GetList(pre, "pretokenizers")[0];
        }

        public static ByteLevelBpeTokenizer FromJson(Dictionary<string, object> doc, Dictionary<string, object> model, string path)
        {
            var t = new ByteLevelBpeTokenizer { Kind = "byte-level-bpe" };
            var norm = J.GetObj(doc, "normalizer");
            if (norm != null)
                throw new HostError("normalizer " + J.GetString(norm, "type", "?") + " in " + path + " is not supported with byte-level BPE",
                    "this host supports byte-level BPE without a normalizer (GPT-2 family)");
            var bl = ByteLevelOf(J.GetObj(doc, "pre_tokenizer"));
            t.addPrefixSpace = J.GetBool(bl, "add_prefix_space", false);
            t.useRegex = J.GetBool(bl, "use_regex", true);
            t.ignoreMerges = J.GetBool(model, "ignore_merges", false);
            // GPT-2's own tokenizer.json spells "no prefix/suffix" as "" rather than null.
            if (!string.IsNullOrEmpty(J.GetString(model, "continuing_subword_prefix", null)) ||
                !string.IsNullOrEmpty(J.GetString(model, "end_of_word_suffix", null)))
                throw new HostError("BPE with a subword prefix/suffix in " + path + " is not supported", "use a GPT-2 style byte-level BPE");
            var v = J.GetObj(model, "vocab");
            if (v == null) throw new HostError(path + ": BPE model has no vocab");
            foreach (var kv in v) t.vocab[kv.Key] = (int)(double)kv.Value;
            string unk = J.GetString(model, "unk_token", null);
            int u;
            if (unk != null && t.vocab.TryGetValue(unk, out u)) t.unkId = u;
            var merges = J.GetList(model, "merges") ?? new List<object>();
            for (int i = 0; i < merges.Count; i++)
            {
                string a, b;
                var pair = merges[i] as List<object>;
                if (pair != null && pair.Count == 2) { a = (string)pair[0]; b = (string)pair[1]; }
                else
                {
                    var s = merges[i] as string;
                    int sp = s == null ? -1 : s.IndexOf(' ');
                    if (sp < 0) throw new HostError(path + ": malformed merge #" + i);
                    a = s.Substring(0, sp);
                    b = s.Substring(sp + 1);
                }
                string key = a + "\u0001" + b;
                if (!t.ranks.ContainsKey(key)) t.ranks[key] = i;
            }
            return t;
        }

        protected override void EncodePiece(string text, List<int> ids)
        {
            if (addPrefixSpace && !text.StartsWith(" ", StringComparison.Ordinal)) text = " " + text;
            int[] cps = Unicode.CodePoints(text);
            if (!useRegex) { Bpe(Unicode.FromCodePoints(cps, 0, cps.Length), ids); return; }
            int i = 0;
            while (i < cps.Length)
            {
                int len = MatchAt(cps, i);
                Bpe(Unicode.FromCodePoints(cps, i, i + len), ids);
                i += len;
            }
        }

        // One match of 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ at i,
        // written out by hand so that letters outside the BMP and Unicode versions behave as in tokenizers.
        static int MatchAt(int[] c, int i)
        {
            int n = c.Length;
            if (c[i] == '\'' && i + 1 < n)
            {
                int a = c[i + 1];
                if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
                if (i + 2 < n && ((a == 'r' && c[i + 2] == 'e') || (a == 'v' && c[i + 2] == 'e') || (a == 'l' && c[i + 2] == 'l'))) return 3;
            }
            int j = c[i] == ' ' && i + 1 < n ? i + 1 : i;
            int cls = Class(c[j]);
            if (cls != 0)
            {
                int k = j + 1;
                while (k < n && Class(c[k]) == cls) k++;
                return k - i;
            }
            // Whitespace run: \s+(?!\S) takes all but the last when a non-space follows, else \s+ takes it all.
            int e = i;
            while (e < n && Unicode.IsRegexWhitespace(c[e])) e++;
            if (e == i) return 1;   // unreachable: every code point is L, N, other or whitespace
            if (e == n) return e - i;
            return e - i > 1 ? e - i - 1 : 1;
        }

        // 1 letter, 2 number, 3 other (neither whitespace, letter nor number), 0 whitespace.
        static int Class(int c)
        {
            if (Unicode.IsLetter(c)) return 1;
            if (Unicode.IsNumber(c)) return 2;
            if (Unicode.IsRegexWhitespace(c)) return 0;
            return 3;
        }

        void Bpe(string piece, List<int> ids)
        {
            int[] cached;
            if (cache.TryGetValue(piece, out cached)) { ids.AddRange(cached); return; }
            byte[] bytes = System.Text.Encoding.UTF8.GetBytes(piece);
            var word = new StringBuilder(bytes.Length);
            foreach (byte b in bytes) word.Append(byteToChar[b]);
            string w = word.ToString();
            var result = new List<int>();
            int whole;
            if (ignoreMerges && vocab.TryGetValue(w, out whole)) result.Add(whole);
            else
            {
                var symbols = new List<string>(w.Length);
                foreach (char ch in w) symbols.Add(ch.ToString());
                while (symbols.Count > 1)
                {
                    int best = int.MaxValue, at = -1;
                    for (int k = 0; k + 1 < symbols.Count; k++)
                    {
                        int r;
                        if (ranks.TryGetValue(symbols[k] + "\u0001" + symbols[k + 1], out r) && r < best) { best = r; at = k; }
                    }
                    if (at < 0) break;
                    string a = symbols[at], b = symbols[at + 1];
                    // Merge every occurrence of the best pair, left to right, as GPT-2's bpe() does.
                    var merged = new List<string>(symbols.Count);
                    for (int k = 0; k < symbols.Count; k++)
                    {
                        if (k + 1 < symbols.Count && symbols[k] == a && symbols[k + 1] == b) { merged.Add(a + b); k++; }
                        else merged.Add(symbols[k]);
                    }
                    symbols = merged;
                }
                foreach (string s in symbols)
                {
                    int id;
                    if (vocab.TryGetValue(s, out id)) result.Add(id);
                    else if (unkId >= 0) result.Add(unkId);
                    else throw new HostError("byte-level BPE: symbol '" + s + "' is not in the vocabulary and there is no unk_token");
                }
            }
            var arr = result.ToArray();
            if (cache.Count < 100000) cache[piece] = arr;
            ids.AddRange(arr);
        }
    }
}
