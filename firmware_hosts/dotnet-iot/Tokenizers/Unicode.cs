using System;
using System.Collections.Generic;
using System.Text;

namespace Edgepack.Host.Tokenizers
{
    /// <summary>Code-point helpers over the tables probed from Hugging Face tokenizers (UnicodeTables.g.cs),
    /// so Mono's and .NET's own (different) Unicode versions never decide a split.</summary>
    public static class Unicode
    {
        public static bool InRanges(int[] r, int c)
        {
            int lo = 0, hi = r.Length / 2 - 1;
            while (lo <= hi)
            {
                int mid = (lo + hi) >> 1;
                if (c < r[2 * mid]) hi = mid - 1;
                else if (c > r[2 * mid + 1]) lo = mid + 1;
                else return true;
            }
            return false;
        }

        public static string Lookup(int[] keys, int[] offsets, string values, int c)
        {
            int i = Array.BinarySearch(keys, c);
            return i < 0 ? null : values.Substring(offsets[i], offsets[i + 1] - offsets[i]);
        }

        public static int[] CodePoints(string s)
        {
            var list = new List<int>(s.Length);
            for (int i = 0; i < s.Length; i++)
            {
                char ch = s[i];
                if (char.IsHighSurrogate(ch) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
                {
                    list.Add(char.ConvertToUtf32(ch, s[i + 1]));
                    i++;
                }
                else list.Add(ch);
            }
            return list.ToArray();
        }

        public static void Append(StringBuilder sb, int c)
        {
            if (c < 0x10000) sb.Append((char)c);
            else sb.Append(char.ConvertFromUtf32(c));
        }

        public static string FromCodePoints(int[] cps, int start, int end)
        {
            var sb = new StringBuilder(end - start);
            for (int i = start; i < end; i++) Append(sb, cps[i]);
            return sb.ToString();
        }

        public static bool IsLetter(int c) { return InRanges(UnicodeTables.Letter, c); }
        public static bool IsNumber(int c) { return InRanges(UnicodeTables.Number, c); }
        public static bool IsRegexWhitespace(int c) { return InRanges(UnicodeTables.RegexWhitespace, c); }
        public static bool IsBertWhitespace(int c) { return InRanges(UnicodeTables.BertWhitespace, c); }
        public static bool IsBertPunctuation(int c) { return InRanges(UnicodeTables.BertPunctuation, c); }

        // The CJK Unified Ideograph blocks BERT isolates (tokenizers' is_chinese_char).
        public static bool IsChinese(int c)
        {
            return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
                   (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
                   (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
        }

        /// <summary>NFD without nonspacing marks, per code point (tokenizers' strip_accents).</summary>
        public static void AppendStripped(StringBuilder sb, int c)
        {
            if (c >= 0xAC00 && c <= 0xD7A3)
            {
                // Hangul syllables decompose algorithmically into conjoining jamo (Unicode ch. 3.12).
                int s = c - 0xAC00;
                sb.Append((char)(0x1100 + s / 588)).Append((char)(0x1161 + (s % 588) / 28));
                if (s % 28 != 0) sb.Append((char)(0x11A7 + s % 28));
                return;
            }
            string m = Lookup(UnicodeTables.StripAccentsKeys, UnicodeTables.StripAccentsOffsets, UnicodeTables.StripAccentsValues, c);
            if (m != null) sb.Append(m);
            else Append(sb, c);
        }

        public static void AppendLower(StringBuilder sb, int c)
        {
            string m = Lookup(UnicodeTables.LowercaseKeys, UnicodeTables.LowercaseOffsets, UnicodeTables.LowercaseValues, c);
            if (m != null) sb.Append(m);
            else Append(sb, c);
        }
    }
}
