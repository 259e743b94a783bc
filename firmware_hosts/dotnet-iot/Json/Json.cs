// A small JSON reader/writer: no NuGet on the build machine, and System.Runtime.Serialization.Json's
// contract-based model does not fit free-form documents like tokenizer.json. Values map to:
// null, bool, double, string, List<object>, Dictionary<string, object> (insertion-ordered enough for us).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace Edgepack.Host.Json
{
    public sealed class JsonException : Exception
    {
        public JsonException(string message) : base(message) { }
    }

    public static class JsonReader
    {
        public static object Parse(string text)
        {
            var p = new Parser(text);
            p.SkipWs();
            object v = p.ReadValue(0);
            p.SkipWs();
            if (p.Pos != text.Length) throw p.Error("unexpected trailing characters");
            return v;
        }

        public static object ParseFile(string path)
        {
            string text;
            try { text = File.ReadAllText(path, new UTF8Encoding(false)); }
            catch (IOException e) { throw new JsonException("cannot read " + path + ": " + e.Message); }
            catch (UnauthorizedAccessException e) { throw new JsonException("cannot read " + path + ": " + e.Message); }
            try { return Parse(text); }
            catch (JsonException e) { throw new JsonException(path + ": " + e.Message); }
        }

        sealed class Parser
        {
            readonly string s;
            public int Pos;
            public Parser(string s) { this.s = s; }

            public JsonException Error(string what)
            {
                return new JsonException("invalid JSON at offset " + Pos + ": " + what);
            }

            public void SkipWs()
            {
                while (Pos < s.Length)
                {
                    char c = s[Pos];
                    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') Pos++;
                    else break;
                }
            }

            public object ReadValue(int depth)
            {
                // Deep nesting is a malformed/hostile request, not a reason to overflow the stack.
                if (depth > 200) throw Error("nesting too deep");
                if (Pos >= s.Length) throw Error("unexpected end of input");
                char c = s[Pos];
                switch (c)
                {
                    case '{': return ReadObject(depth);
                    case '[': return ReadArray(depth);
                    case '"': return ReadString();
                    case 't': Expect("true"); return true;
                    case 'f': Expect("false"); return false;
                    case 'n': Expect("null"); return null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                        throw Error("unexpected character '" + c + "'");
                }
            }

            void Expect(string word)
            {
                if (string.CompareOrdinal(s, Pos, word, 0, word.Length) != 0) throw Error("expected " + word);
                Pos += word.Length;
            }

            Dictionary<string, object> ReadObject(int depth)
            {
                var d = new Dictionary<string, object>(StringComparer.Ordinal);
                Pos++;
                SkipWs();
                if (Pos < s.Length && s[Pos] == '}') { Pos++; return d; }
                while (true)
                {
                    SkipWs();
                    if (Pos >= s.Length || s[Pos] != '"') throw Error("expected a string key");
                    string key = ReadString();
                    SkipWs();
                    if (Pos >= s.Length || s[Pos] != ':') throw Error("expected ':'");
                    Pos++;
                    SkipWs();
                    d[key] = ReadValue(depth + 1);
                    SkipWs();
                    if (Pos >= s.Length) throw Error("unterminated object");
                    if (s[Pos] == ',') { Pos++; continue; }
                    if (s[Pos] == '}') { Pos++; return d; }
                    throw Error("expected ',' or '}'");
                }
            }

            List<object> ReadArray(int depth)
            {
                var list = new List<object>();
                Pos++;
                SkipWs();
                if (Pos < s.Length && s[Pos] == ']') { Pos++; return list; }
                while (true)
                {
                    SkipWs();
                    list.Add(ReadValue(depth + 1));
                    SkipWs();
                    if (Pos >= s.Length) throw Error("unterminated array");
                    if (s[Pos] == ',') { Pos++; continue; }
                    if (s[Pos] == ']') { Pos++; return list; }
                    throw Error("expected ',' or ']'");
                }
            }

            string ReadString()
            {
                Pos++;
                StringBuilder sb = null;
                int start = Pos;
                while (true)
                {
                    if (Pos >= s.Length) throw Error("unterminated string");
                    char c = s[Pos];
                    if (c == '"')
                    {
                        string tail = s.Substring(start, Pos - start);
                        Pos++;
                        if (sb == null) return tail;
                        sb.Append(tail);
                        return sb.ToString();
                    }
                    if (c == '\\')
                    {
                        if (sb == null) sb = new StringBuilder();
                        sb.Append(s, start, Pos - start);
                        Pos++;
                        if (Pos >= s.Length) throw Error("unterminated escape");
                        char e = s[Pos++];
                        switch (e)
                        {
                            case '"': sb.Append('"'); break;
                            case '\\': sb.Append('\\'); break;
                            case '/': sb.Append('/'); break;
                            case 'b': sb.Append('\b'); break;
                            case 'f': sb.Append('\f'); break;
                            case 'n': sb.Append('\n'); break;
                            case 'r': sb.Append('\r'); break;
                            case 't': sb.Append('\t'); break;
                            case 'u':
                                if (Pos + 4 > s.Length) throw Error("bad \\u escape");
                                int code;
                                if (!int.TryParse(s.Substring(Pos, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out code))
                                    throw Error("bad \\u escape");
                                sb.Append((char)code);
                                Pos += 4;
                                break;
                            default: throw Error("bad escape \\" + e);
                        }
                        start = Pos;
                        continue;
                    }
                    if (c < 0x20) throw Error("control character in string");
                    Pos++;
                }
            }

            object ReadNumber()
            {
                int start = Pos;
                if (s[Pos] == '-') Pos++;
                while (Pos < s.Length)
                {
                    char c = s[Pos];
                    if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') Pos++;
                    else break;
                }
                double d;
                if (!double.TryParse(s.Substring(start, Pos - start), NumberStyles.Float, CultureInfo.InvariantCulture, out d))
                    throw Error("bad number");
                return d;
            }
        }
    }

    public static class JsonWriter
    {
        public static string Write(object value)
        {
            var sb = new StringBuilder();
            WriteValue(sb, value);
            return sb.ToString();
        }

        public static void WriteValue(StringBuilder sb, object v)
        {
            if (v == null) { sb.Append("null"); return; }
            if (v is string) { WriteString(sb, (string)v); return; }
            if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
            if (v is double) { WriteDouble(sb, (double)v); return; }
            if (v is float) { WriteDouble(sb, (float)v); return; }
            if (v is int || v is long || v is short || v is byte || v is sbyte || v is uint || v is ushort)
            {
                sb.Append(Convert.ToInt64(v, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture));
                return;
            }
            if (v is ulong) { sb.Append(((ulong)v).ToString(CultureInfo.InvariantCulture)); return; }
            var dict = v as IDictionary<string, object>;
            if (dict != null)
            {
                sb.Append('{');
                bool first = true;
                foreach (var kv in dict)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    WriteString(sb, kv.Key);
                    sb.Append(": ");
                    WriteValue(sb, kv.Value);
                }
                sb.Append('}');
                return;
            }
            var list = v as System.Collections.IEnumerable;
            if (list != null)
            {
                sb.Append('[');
                bool first = true;
                foreach (var item in list)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    WriteValue(sb, item);
                }
                sb.Append(']');
                return;
            }
            throw new ArgumentException("cannot write " + v.GetType().Name + " as JSON");
        }

        static void WriteDouble(StringBuilder sb, double d)
        {
            // JSON has no NaN/Infinity; null is what Python's strict readers accept.
            if (double.IsNaN(d) || double.IsInfinity(d)) { sb.Append("null"); return; }
            sb.Append(d.ToString("R", CultureInfo.InvariantCulture));
        }

        public static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }
    }

    /// <summary>Typed access to parsed documents with messages that name the missing key.</summary>
    public static class J
    {
        public static Dictionary<string, object> Obj(object v, string what)
        {
            var d = v as Dictionary<string, object>;
            if (d == null) throw new JsonException(what + " must be a JSON object");
            return d;
        }

        public static object Get(Dictionary<string, object> d, string key)
        {
            object v;
            return d != null && d.TryGetValue(key, out v) ? v : null;
        }

        public static Dictionary<string, object> GetObj(Dictionary<string, object> d, string key)
        {
            return Get(d, key) as Dictionary<string, object>;
        }

        public static List<object> GetList(Dictionary<string, object> d, string key)
        {
            return Get(d, key) as List<object>;
        }

        public static string GetString(Dictionary<string, object> d, string key, string dflt)
        {
            var v = Get(d, key) as string;
            return v ?? dflt;
        }

        public static double GetDouble(Dictionary<string, object> d, string key, double dflt)
        {
            object v = Get(d, key);
            return v is double ? (double)v : dflt;
        }

        public static bool GetBool(Dictionary<string, object> d, string key, bool dflt)
        {
            object v = Get(d, key);
            return v is bool ? (bool)v : dflt;
        }

        public static Dictionary<string, object> NewObj()
        {
            return new Dictionary<string, object>(StringComparer.Ordinal);
        }
    }
}
