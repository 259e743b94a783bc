using System;
using System.Collections.Generic;
using System.IO;
using Edgepack.Host.Json;
using Edgepack.Host.Ort;
using Edgepack.Host.Tokenizers;

namespace Edgepack.Host.Bundle
{
    /// <summary>Text → embedding as sentence-transformers computes it: tokenize, run, then either take the graph's
    /// pooled `sentence_embedding` or pool `last_hidden_state`/`token_embeddings` with the attention mask as
    /// 1_Pooling/config.json says, and L2-normalize when modules.json has a Normalize module.</summary>
    public sealed class Embedder
    {
        public readonly Tokenizer Tokenizer;
        readonly Session session;
        readonly string pooledOutput, tokenOutput;
        readonly string poolingMode = "mean";
        readonly bool normalize;

        public Embedder(Session session, string modelDir)
        {
            this.session = session;
            Tokenizer = Tokenizer.Load(modelDir);
            foreach (var o in session.Outputs)
            {
                if (o.Name == "sentence_embedding") pooledOutput = o.Name;
                if (o.Name == "last_hidden_state" || o.Name == "token_embeddings") tokenOutput = tokenOutput ?? o.Name;
            }
            if (pooledOutput == null && tokenOutput == null)
                throw new HostError("the model has neither a sentence_embedding nor a last_hidden_state/token_embeddings output",
                    "its outputs are: " + Session.Describe(session.Outputs));
            string modules = Path.Combine(modelDir, "modules.json");
            string poolingDir = Path.Combine(modelDir, "1_Pooling");
            if (File.Exists(modules))
            {
                var list = JsonReader.ParseFile(modules) as List<object>;
                if (list != null)
                    foreach (var m in list)
                    {
                        var d = m as Dictionary<string, object>;
                        string type = J.GetString(d, "type", "");
                        if (type.EndsWith("Normalize", StringComparison.Ordinal)) normalize = true;
                        if (type.EndsWith("Pooling", StringComparison.Ordinal))
                            poolingDir = Path.Combine(modelDir, J.GetString(d, "path", "1_Pooling"));
                    }
            }
            string pcfg = Path.Combine(poolingDir, "config.json");
            if (File.Exists(pcfg))
            {
                var c = J.Obj(JsonReader.ParseFile(pcfg), pcfg);
                if (J.GetBool(c, "pooling_mode_cls_token", false)) poolingMode = "cls";
                else if (J.GetBool(c, "pooling_mode_max_tokens", false)) poolingMode = "max";
                else if (J.GetBool(c, "pooling_mode_mean_sqrt_len_tokens", false)) poolingMode = "mean_sqrt_len";
                else if (J.GetBool(c, "pooling_mode_mean_tokens", false)) poolingMode = "mean";
                else if (J.GetBool(c, "pooling_mode_lasttoken", false)) poolingMode = "lasttoken";
                else throw new HostError("pooling mode in " + pcfg + " is not supported", "use mean, cls, max, mean_sqrt_len or lasttoken pooling");
            }
        }

        public string Describe()
        {
            return pooledOutput != null ? "graph output sentence_embedding" :
                poolingMode + " pooling of " + tokenOutput + (normalize ? " + L2 normalize" : "");
        }

        /// <summary>The model inputs for one text (batch 1), typed as the model declares them.</summary>
        public Dictionary<string, TensorData> Inputs(Encoding enc)
        {
            var feeds = new Dictionary<string, TensorData>(StringComparer.Ordinal);
            foreach (var info in session.Inputs)
            {
                int[] src;
                if (info.Name == "input_ids") src = enc.Ids;
                else if (info.Name == "attention_mask") src = enc.AttentionMask;
                else if (info.Name == "token_type_ids") src = enc.TypeIds;
                else throw new HostError("text model input '" + info.Name + "' is not one this host can fill",
                    "text models take input_ids, attention_mask and token_type_ids");
                feeds[info.Name] = IdsTensor(src, info.Type);
            }
            return feeds;
        }

        static TensorData IdsTensor(int[] v, ElementType t)
        {
            var shape = new long[] { 1, v.Length };
            if (t == ElementType.Int64) return TensorData.FromInt64(Array.ConvertAll(v, x => (long)x), shape);
            if (t == ElementType.Int32)
            {
                var b = new byte[v.Length * 4];
                Buffer.BlockCopy(v, 0, b, 0, b.Length);
                return new TensorData(ElementType.Int32, shape, b);
            }
            throw new HostError("text model inputs must be int64 or int32, not " + ElementTypes.Name(t));
        }

        public float[] Embed(string text)
        {
            var enc = Tokenizer.Encode(text, 0);
            return Pool(session.Run(Inputs(enc)), enc.AttentionMask);
        }

        public float[] Pool(Dictionary<string, TensorData> outputs, int[] mask)
        {
            if (pooledOutput != null) return outputs[pooledOutput].ToFloats();
            TensorData h = outputs[tokenOutput];
            return PoolTokens(h.ToFloats(), h.Shape, mask, poolingMode, normalize);
        }

        public static float[] PoolTokens(float[] hidden, long[] shape, int[] mask, string mode, bool normalize)
        {
            if (shape.Length != 3) throw new HostError("token embeddings must be [batch, tokens, dim], got " + TensorData.ShapeString(shape));
            int tokens = (int)shape[1], dim = (int)shape[2];
            var acc = new double[dim];
            double count = 0;
            if (mode == "cls") for (int d = 0; d < dim; d++) acc[d] = hidden[d];
            else if (mode == "lasttoken")
            {
                int last = 0;
                for (int t = 0; t < tokens; t++) if (mask[t] != 0) last = t;
                for (int d = 0; d < dim; d++) acc[d] = hidden[last * dim + d];
            }
            else if (mode == "max")
            {
                for (int d = 0; d < dim; d++) acc[d] = double.NegativeInfinity;
                for (int t = 0; t < tokens; t++)
                    if (mask[t] != 0) for (int d = 0; d < dim; d++) acc[d] = Math.Max(acc[d], hidden[t * dim + d]);
            }
            else
            {
                for (int t = 0; t < tokens; t++)
                {
                    if (mask[t] == 0) continue;
                    count += 1;
                    for (int d = 0; d < dim; d++) acc[d] += hidden[t * dim + d];
                }
                // sentence-transformers clamps the token count at 1e-9 to avoid dividing by zero.
                double div = Math.Max(count, 1e-9);
                if (mode == "mean_sqrt_len") div = Math.Sqrt(div);
                for (int d = 0; d < dim; d++) acc[d] /= div;
            }
            var r = new float[dim];
            double norm = 0;
            for (int d = 0; d < dim; d++) norm += acc[d] * acc[d];
            norm = Math.Max(Math.Sqrt(norm), 1e-12);   // torch.nn.functional.normalize's eps
            for (int d = 0; d < dim; d++) r[d] = (float)(normalize ? acc[d] / norm : acc[d]);
            return r;
        }
    }
}
