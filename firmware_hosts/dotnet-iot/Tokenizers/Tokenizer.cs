using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Edgepack.Host.Json;

namespace Edgepack.Host.Tokenizers
{
    /// <summary>One encoded text: ids with special tokens, the attention mask and token type ids (no padding).</summary>
    public sealed class Encoding
    {
        public int[] Ids;
        public int[] TypeIds;
        public int[] AttentionMask;
    }

    /// <summary>A token the vocabulary adds on top of the model (tokenizer.json "added_tokens"): matched on the raw
    /// text before normalization, as tokenizers does for tokens like [CLS] or &lt;|endoftext|&gt;.</summary>
    public sealed class AddedToken
    {
        public string Content;
        public int Id;
        public bool LStrip, RStrip;
    }

    /// <summary>What every algorithm shares: added-token splitting, the post-processor template and truncation.
    /// Subclasses turn one plain piece of text into token ids.</summary>
    public abstract class Tokenizer
    {
        public readonly List<AddedToken> Added = new List<AddedToken>();
        // Post-processor template for a single sequence: special token ids before and after, with type ids.
        public int[] Prefix = new int[0], Suffix = new int[0];
        public int PrefixTypeId, SequenceTypeId, SuffixTypeId;
        public int MaxLength;                  // 0 = no truncation
        public string Kind;

        protected abstract void EncodePiece(string text, List<int> ids);

        public Encoding Encode(string text, int maxLength)
        {
            var ids = new List<int>();
            int pos = 0;
            while (pos <= text.Length)
            {
                int start, len;
                AddedToken tok = FindAdded(text, pos, out start, out len);
                int pieceEnd = tok == null ? text.Length : start;
                if (tok != null && tok.LStrip) while (pieceEnd > pos && char.IsWhiteSpace(text[pieceEnd - 1])) pieceEnd--;
                if (pieceEnd > pos) EncodePiece(text.Substring(pos, pieceEnd - pos), ids);
                if (tok == null) break;
                ids.Add(tok.Id);
                pos = start + len;
                if (tok.RStrip) while (pos < text.Length && char.IsWhiteSpace(text[pos])) pos++;
            }
            int limit = maxLength > 0 ? maxLength : MaxLength;
            int special = Prefix.Length + Suffix.Length;
            if (limit > 0 && ids.Count + special > limit) ids.RemoveRange(Math.Max(0, limit - special), ids.Count - Math.Max(0, limit - special));
            var enc = new Encoding();
            int n = Prefix.Length + ids.Count + Suffix.Length;
            enc.Ids = new int[n];
            enc.TypeIds = new int[n];
            enc.AttentionMask = new int[n];
            int k = 0;
            foreach (int id in Prefix) { enc.TypeIds[k] = PrefixTypeId; enc.Ids[k++] = id; }
            foreach (int id in ids) { enc.TypeIds[k] = SequenceTypeId; enc.Ids[k++] = id; }
            foreach (int id in Suffix) { enc.TypeIds[k] = SuffixTypeId; enc.Ids[k++] = id; }
            for (int i = 0; i < n; i++) enc.AttentionMask[i] = 1;
            return enc;
        }

        // Leftmost, then longest match of any added token at or after pos.
        AddedToken FindAdded(string text, int pos, out int start, out int len)
        {
            start = -1;
            len = 0;
            AddedToken best = null;
            foreach (var t in Added)
            {
                if (t.Content.Length == 0) continue;
                int i = text.IndexOf(t.Content, pos, StringComparison.Ordinal);
                if (i < 0) continue;
                if (best == null || i < start || (i == start && t.Content.Length > len))
                {
                    best = t;
                    start = i;
                    len = t.Content.Length;
                }
            }
            return best;
        }

        /// <summary>Reads DIR/tokenizer.json (else DIR/vocab.txt) and the max length DIR configures:
        /// sentence_bert_config.json max_seq_length, then tokenizer.json's truncation.</summary>
        public static Tokenizer Load(string dir)
        {
            if (!Directory.Exists(dir))
                throw new HostError("tokenizer directory " + dir + " does not exist", "pass the model folder with tokenizer.json or vocab.txt");
            string tj = Path.Combine(dir, "tokenizer.json");
            Tokenizer tok;
            Dictionary<string, object> doc = null;
            if (File.Exists(tj))
            {
                doc = J.Obj(JsonReader.ParseFile(tj), tj);
                tok = FromTokenizerJson(doc, tj);
            }
            else if (File.Exists(Path.Combine(dir, "vocab.txt")))
                tok = WordPieceTokenizer.FromVocabTxt(dir);
            else
                throw new HostError("no tokenizer.json or vocab.txt in " + dir, "pass the model folder that holds the tokenizer files");
            string sbert = Path.Combine(dir, "sentence_bert_config.json");
            int maxLen = 0;
            if (File.Exists(sbert))
                maxLen = (int)J.GetDouble(J.Obj(JsonReader.ParseFile(sbert), sbert), "max_seq_length", 0);
            if (maxLen == 0 && doc != null)
                maxLen = (int)J.GetDouble(J.GetObj(doc, "truncation"), "max_length", 0);
            tok.MaxLength = maxLen;
            return tok;
        }

        static Tokenizer FromTokenizerJson(Dictionary<string, object> doc, string path)
        {
            var model = J.GetObj(doc, "model");
            if (model == null) throw new HostError(path + " has no \"model\"", "save it with tokenizers >= 0.10");
            string type = J.GetString(model, "type", null);
            if (type == null && J.Get(model, "merges") != null) type = "BPE";
            if (type == null && J.Get(model, "continuing_subword_prefix") != null) type = "WordPiece";
            Tokenizer tok;
            if (type == "WordPiece")
                tok = WordPieceTokenizer.FromJson(doc, model, path);
            else if (type == "BPE" && ByteLevelBpeTokenizer.HasByteLevel(J.GetObj(doc, "pre_tokenizer")))
                tok = ByteLevelBpeTokenizer.FromJson(doc, model, path);
            else
            {
                string name = type == "BPE"
                    ? "BPE with pre-tokenizer " + PreTokenizerName(J.GetObj(doc, "pre_tokenizer")) + " (only a plain ByteLevel one is supported)"
                    : (type ?? "unknown");
                throw new HostError("tokenizer type " + name + " in " + path + " is not supported",
                    "this host supports WordPiece (BERT) and byte-level BPE (GPT-2 family)");
            }
            var added = J.GetList(doc, "added_tokens");
            if (added != null)
                foreach (var o in added)
                {
                    var a = o as Dictionary<string, object>;
                    if (a == null) continue;
                    tok.Added.Add(new AddedToken
                    {
                        Content = J.GetString(a, "content", ""),
                        Id = (int)J.GetDouble(a, "id", 0),
                        LStrip = J.GetBool(a, "lstrip", false),
                        RStrip = J.GetBool(a, "rstrip", false),
                    });
                }
            tok.ReadPostProcessor(J.GetObj(doc, "post_processor"), path);
            return tok;
        }

        static string PreTokenizerName(Dictionary<string, object> pre)
        {
            if (pre == null) return "none";
            string type = J.GetString(pre, "type", "?");
            var list = J.GetList(pre, "pretokenizers");
            if (type != "Sequence" || list == null) return type;
            var names = new List<string>();
            foreach (var p in list) names.Add(J.GetString(p as Dictionary<string, object>, "type", "?"));
            return "Sequence[" + string.Join(", ", names) + "]";
        }

        void ReadPostProcessor(Dictionary<string, object> pp, string path)
        {
            if (pp == null) return;
            string type = J.GetString(pp, "type", "");
            switch (type)
            {
                case "TemplateProcessing":
                    ReadTemplate(pp, path);
                    break;
                case "BertProcessing":
                case "RobertaProcessing":
                    Prefix = new[] { PairId(J.GetList(pp, "cls"), path) };
                    Suffix = new[] { PairId(J.GetList(pp, "sep"), path) };
                    break;
                case "ByteLevel":
                    break;   // offsets only; ids are unchanged
                case "Sequence":
                    var list = J.GetList(pp, "processors");
                    if (list != null) foreach (var p in list) ReadPostProcessor(p as Dictionary<string, object>, path);
                    break;
                default:
                    throw new HostError("post-processor " + type + " in " + path + " is not supported",
                        "use TemplateProcessing, BertProcessing, RobertaProcessing or ByteLevel");
            }
        }

        static int PairId(List<object> pair, string path)
        {
            if (pair == null || pair.Count != 2 || !(pair[1] is double)) throw new HostError(path + ": malformed post_processor");
            return (int)(double)pair[1];
        }

        void ReadTemplate(Dictionary<string, object> pp, string path)
        {
            var specials = J.GetObj(pp, "special_tokens") ?? J.NewObj();
            var pre = new List<int>();
            var post = new List<int>();
            bool seenSequence = false;
            var single = J.GetList(pp, "single") ?? new List<object>();
            foreach (var o in single)
            {
                var item = o as Dictionary<string, object>;
                var st = J.GetObj(item, "SpecialToken");
                var seq = J.GetObj(item, "Sequence");
                if (seq != null)
                {
                    seenSequence = true;
                    SequenceTypeId = (int)J.GetDouble(seq, "type_id", 0);
                }
                else if (st != null)
                {
                    string id = J.GetString(st, "id", "");
                    var spec = J.GetObj(specials, id);
                    var ids = J.GetList(spec, "ids");
                    if (ids == null) throw new HostError(path + ": template token " + id + " has no ids");
                    int typeId = (int)J.GetDouble(st, "type_id", 0);
                    foreach (var x in ids)
                    {
                        if (seenSequence) { post.Add((int)(double)x); SuffixTypeId = typeId; }
                        else { pre.Add((int)(double)x); PrefixTypeId = typeId; }
                    }
                }
            }
            Prefix = pre.ToArray();
            Suffix = post.ToArray();
        }
    }
}
