using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Edgepack.Host.Json;

namespace Edgepack.Host.Tokenizers
{
    /// <summary>BERT: BertNormalizer (clean text, CJK isolation, accent stripping, lower-casing), BertPreTokenizer
    /// (split on whitespace, isolate punctuation), then greedy longest-match-first WordPiece.</summary>
    public sealed class WordPieceTokenizer : Tokenizer
    {
        readonly Dictionary<string, int> vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        string unkToken = "[UNK]";
        string prefix = "##";
        int maxCharsPerWord = 100;
        bool cleanText = true, handleChinese = true, stripAccents = true, lowercase = true;
        bool normalize;

        public static WordPieceTokenizer FromJson(Dictionary<string, object> doc, Dictionary<string, object> model, string path)
        {
            var t = new WordPieceTokenizer { Kind = "wordpiece" };
            var v = J.GetObj(model, "vocab");
            if (v == null) throw new HostError(path + ": WordPiece model has no vocab");
            foreach (var kv in v) t.vocab[kv.Key] = (int)(double)kv.Value;
            t.unkToken = J.GetString(model, "unk_token", "[UNK]");
            t.prefix = J.GetString(model, "continuing_subword_prefix", "##");
            t.maxCharsPerWord = (int)J.GetDouble(model, "max_input_chars_per_word", 100);
            t.ReadNormalizer(J.GetObj(doc, "normalizer"), path);
            var pre = J.GetObj(doc, "pre_tokenizer");
            string preType = J.GetString(pre, "type", "BertPreTokenizer");
            if (pre != null && preType != "BertPreTokenizer")
                throw new HostError("pre-tokenizer " + preType + " in " + path + " is not supported with WordPiece",
                    "this host supports BertPreTokenizer");
            return t;
        }

        void ReadNormalizer(Dictionary<string, object> n, string path)
        {
            if (n == null) { normalize = false; return; }
            string type = J.GetString(n, "type", "");
            if (type == "BertNormalizer")
            {
                normalize = true;
                cleanText = J.GetBool(n, "clean_text", true);
                handleChinese = J.GetBool(n, "handle_chinese_chars", true);
                lowercase = J.GetBool(n, "lowercase", true);
                // strip_accents null means "follow lowercase", as in the original BERT.
                object sa = J.Get(n, "strip_accents");
                stripAccents = sa is bool ? (bool)sa : lowercase;
                return;
            }
            throw new HostError("normalizer " + type + " in " + path + " is not supported with WordPiece",
                "this host supports BertNormalizer");
        }

        /// <summary>A bare vocab.txt (no tokenizer.json): BERT defaults, refined by tokenizer_config.json.</summary>
        public static WordPieceTokenizer FromVocabTxt(string dir)
        {
            var t = new WordPieceTokenizer { Kind = "wordpiece", normalize = true };
            int id = 0;
            foreach (string line in File.ReadAllLines(Path.Combine(dir, "vocab.txt"), new UTF8Encoding(false)))
            {
                string w = line.TrimEnd('\r', '\n');
                if (!t.vocab.ContainsKey(w)) t.vocab[w] = id;
                id++;
            }
            string cfgPath = Path.Combine(dir, "tokenizer_config.json");
            var cfg = File.Exists(cfgPath) ? J.Obj(JsonReader.ParseFile(cfgPath), cfgPath) : J.NewObj();
            t.lowercase = J.GetBool(cfg, "do_lower_case", true);
            object sa = J.Get(cfg, "strip_accents");
            t.stripAccents = sa is bool ? (bool)sa : t.lowercase;
            t.handleChinese = J.GetBool(cfg, "tokenize_chinese_chars", true);
            t.unkToken = J.GetString(cfg, "unk_token", "[UNK]");
            string cls = J.GetString(cfg, "cls_token", "[CLS]"), sep = J.GetString(cfg, "sep_token", "[SEP]");
            int clsId, sepId;
            if (!t.vocab.TryGetValue(cls, out clsId) || !t.vocab.TryGetValue(sep, out sepId))
                throw new HostError("vocab.txt in " + dir + " has no " + cls + " / " + sep + " token", "add tokenizer.json to the model folder");
            t.Prefix = new[] { clsId };
            t.Suffix = new[] { sepId };
            foreach (string special in new[] { "[PAD]", t.unkToken, cls, sep, "[MASK]" })
            {
                int sid;
                if (t.vocab.TryGetValue(special, out sid)) t.Added.Add(new AddedToken { Content = special, Id = sid });
            }
            return t;
        }

        string Normalize(string text)
        {
            if (!normalize) return text;
            int[] cps = Unicode.CodePoints(text);
            var sb = new StringBuilder(text.Length + 8);
            foreach (int c in cps)
            {
                int ch = c;
                if (cleanText)
                {
                    if (Unicode.InRanges(UnicodeTables.CleanRemoved, ch)) continue;
                    if (Unicode.InRanges(UnicodeTables.CleanToSpace, ch)) ch = ' ';
                }
                if (handleChinese && Unicode.IsChinese(ch)) { sb.Append(' '); Unicode.Append(sb, ch); sb.Append(' '); }
                else Unicode.Append(sb, ch);
            }
            string s = sb.ToString();
            if (stripAccents)
            {
                sb.Clear();
                foreach (int c in Unicode.CodePoints(s)) Unicode.AppendStripped(sb, c);
                s = sb.ToString();
            }
            if (lowercase)
            {
                sb.Clear();
                foreach (int c in Unicode.CodePoints(s)) Unicode.AppendLower(sb, c);
                s = sb.ToString();
            }
            return s;
        }

        protected override void EncodePiece(string text, List<int> ids)
        {
            int[] cps = Unicode.CodePoints(Normalize(text));
            int start = -1;
            for (int i = 0; i <= cps.Length; i++)
            {
                bool end = i == cps.Length;
                bool ws = !end && Unicode.IsBertWhitespace(cps[i]);
                bool punct = !end && !ws && Unicode.IsBertPunctuation(cps[i]);
                if (end || ws || punct)
                {
                    if (start >= 0) Word(Unicode.FromCodePoints(cps, start, i), i - start, ids);
                    start = -1;
                    if (punct) Word(Unicode.FromCodePoints(cps, i, i + 1), 1, ids);
                }
                else if (start < 0) start = i;
            }
        }

        void Word(string word, int chars, List<int> ids)
        {
            int unk;
            if (!vocab.TryGetValue(unkToken, out unk))
                throw new HostError("the WordPiece vocabulary has no unknown token " + unkToken);
            if (chars > maxCharsPerWord) { ids.Add(unk); return; }
            int mark = ids.Count;
            int start = 0;
            while (start < word.Length)
            {
                int end = word.Length;
                int found = -1;
                while (start < end)
                {
                    string sub = word.Substring(start, end - start);
                    if (start > 0) sub = prefix + sub;
                    int id;
                    if (vocab.TryGetValue(sub, out id)) { found = id; break; }
                    end -= (end >= 2 && char.IsLowSurrogate(word[end - 1]) && char.IsHighSurrogate(word[end - 2])) ? 2 : 1;
                }
                if (found < 0)
                {
                    // Any piece that cannot be matched makes the whole word unknown (BERT's rule).
                    ids.RemoveRange(mark, ids.Count - mark);
                    ids.Add(unk);
                    return;
                }
                ids.Add(found);
                start = end;
            }
        }
    }
}
