using System;
using System.Collections.Generic;

namespace Edgepack.Host.Commands
{
    /// <summary>The metrics of docs/bundle-internals.md, computed as edgepack/checks/metrics.py does (in double).</summary>
    public static class Metrics
    {
        public static double Cosine(float[] a, float[] b)
        {
            double dot = 0, na = 0, nb = 0;
            for (int i = 0; i < a.Length; i++)
            {
                dot += (double)a[i] * b[i];
                na += (double)a[i] * a[i];
                nb += (double)b[i] * b[i];
            }
            na = Math.Sqrt(na);
            nb = Math.Sqrt(nb);
            if (na == 0 && nb == 0) return 1.0;
            if (na == 0 || nb == 0) return 0.0;
            return dot / (na * nb);
        }

        public static double MaxAbs(float[] a, float[] b)
        {
            double m = 0;
            for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
            return m;
        }

        /// <summary>argmax over the last axis agrees for every row (numpy's first-max tie rule).</summary>
        public static bool Top1(float[] a, float[] b, int lastDim)
        {
            if (lastDim <= 0) lastDim = a.Length;
            for (int row = 0; row + lastDim <= a.Length; row += lastDim)
                if (ArgMax(a, row, lastDim) != ArgMax(b, row, lastDim)) return false;
            return true;
        }

        static int ArgMax(float[] v, int start, int n)
        {
            int best = 0;
            for (int i = 1; i < n; i++) if (v[start + i] > v[start + best]) best = i;
            return best;
        }

        /// <summary>Nearest-rank percentile, q in 0..100.</summary>
        public static double Percentile(List<double> values, double q)
        {
            if (values.Count == 0) return double.NaN;
            var s = new List<double>(values);
            s.Sort();
            int rank = Math.Max(1, (int)Math.Ceiling(q / 100.0 * s.Count));
            return s[rank - 1];
        }
    }
}
