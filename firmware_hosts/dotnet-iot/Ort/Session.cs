using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using Edgepack.Host.Interop;

namespace Edgepack.Host.Ort
{
    /// <summary>A model input or output as the session declares it; -1 marks a dynamic dimension.</summary>
    public sealed class NodeInfo
    {
        public string Name;
        public ElementType Type;
        public long[] Shape;
        public bool IsTensor;
    }

    /// <summary>What the bundle's profile asks of a session (profile.runtime).</summary>
    public sealed class SessionConfig
    {
        public int IntraOpThreads;                       // 0 = ORT's default
        public int GraphOptimizationLevel = 99;          // ORT_ENABLE_ALL, as Python onnxruntime defaults to
        public List<string> ExecutionProviders = new List<string> { "CPUExecutionProvider" };
        public List<string> Warnings = new List<string>();
    }

    public sealed class Session : IDisposable
    {
        readonly OrtRuntime rt;
        readonly OrtHandle handle;
        public readonly List<NodeInfo> Inputs = new List<NodeInfo>();
        public readonly List<NodeInfo> Outputs = new List<NodeInfo>();
        public readonly List<string> Providers = new List<string>();
        // UTF-8 names in unmanaged memory, made once: Run is the hot path of serve and check.
        readonly IntPtr[] inputNamePtrs;
        readonly IntPtr[] outputNamePtrs;

        public Session(OrtRuntime rt, string modelPath, SessionConfig cfg)
        {
            this.rt = rt;
            if (!File.Exists(modelPath))
                throw new HostError("model " + modelPath + " does not exist", "pass a bundle directory with model/model.onnx or model/model.ort");
            var api = rt.Api;
            IntPtr p;
            rt.Check(api.CreateSessionOptions(out p));
            using (var options = new OrtHandle(p, api.ReleaseSessionOptions))
            {
                IntPtr o = options.DangerousGetHandle();
                if (cfg.IntraOpThreads > 0) rt.Check(api.SetIntraOpNumThreads(o, cfg.IntraOpThreads));
                rt.Check(api.SetSessionGraphOptimizationLevel(o, cfg.GraphOptimizationLevel));
                AppendProviders(o, cfg);
                rt.Check(api.CreateSession(rt.Env, OrtRuntime.Utf8(modelPath), o, out p));
            }
            handle = new OrtHandle(p, api.ReleaseSession);
            IntPtr s = handle.DangerousGetHandle();
            UIntPtr n;
            rt.Check(api.SessionGetInputCount(s, out n));
            for (int i = 0; i < (int)n; i++)
            {
                rt.Check(api.SessionGetInputName(s, (UIntPtr)i, rt.Allocator, out p));
                var info = Describe(api.SessionGetInputTypeInfo, s, i);
                info.Name = rt.TakeString(p);
                Inputs.Add(info);
            }
            rt.Check(api.SessionGetOutputCount(s, out n));
            for (int i = 0; i < (int)n; i++)
            {
                rt.Check(api.SessionGetOutputName(s, (UIntPtr)i, rt.Allocator, out p));
                var info = Describe(api.SessionGetOutputTypeInfo, s, i);
                info.Name = rt.TakeString(p);
                Outputs.Add(info);
            }
            inputNamePtrs = new IntPtr[Inputs.Count];
            for (int i = 0; i < Inputs.Count; i++) inputNamePtrs[i] = AllocUtf8(Inputs[i].Name);
            outputNamePtrs = new IntPtr[Outputs.Count];
            for (int i = 0; i < Outputs.Count; i++) outputNamePtrs[i] = AllocUtf8(Outputs[i].Name);
        }

        static IntPtr AllocUtf8(string s)
        {
            byte[] b = OrtRuntime.Utf8(s);
            IntPtr p = Marshal.AllocHGlobal(b.Length);
            Marshal.Copy(b, 0, p, b.Length);
            return p;
        }

        void AppendProviders(IntPtr o, SessionConfig cfg)
        {
            var api = rt.Api;
            var available = rt.AvailableProviders();
            foreach (string ep in cfg.ExecutionProviders)
            {
                if (ep == "CPUExecutionProvider") continue;   // always there, always last
                if (!available.Contains(ep))
                {
                    cfg.Warnings.Add("execution provider " + ep + " is not in this ONNX Runtime build (" +
                        string.Join(", ", available) + "); it is skipped");
                    continue;
                }
                IntPtr opts;
                if (ep == "CUDAExecutionProvider")
                {
                    rt.Check(api.CreateCUDAProviderOptions(out opts));
                    using (new OrtHandle(opts, api.ReleaseCUDAProviderOptions))
                        rt.Check(api.SessionOptionsAppendExecutionProvider_CUDA_V2(o, opts));
                }
                else if (ep == "TensorrtExecutionProvider")
                {
                    rt.Check(api.CreateTensorRTProviderOptions(out opts));
                    using (new OrtHandle(opts, api.ReleaseTensorRTProviderOptions))
                        rt.Check(api.SessionOptionsAppendExecutionProvider_TensorRT_V2(o, opts));
                }
                else
                {
                    // The generic entry point takes the short name ("XNNPACK", "QNN", "OpenVINO", ...).
                    string shortName = ep.EndsWith("ExecutionProvider", StringComparison.Ordinal)
                        ? ep.Substring(0, ep.Length - "ExecutionProvider".Length) : ep;
                    if (shortName == "Xnnpack") shortName = "XNNPACK";
                    rt.Check(api.SessionOptionsAppendExecutionProvider(o, OrtRuntime.Utf8(shortName), new IntPtr[0], new IntPtr[0], UIntPtr.Zero));
                }
                Providers.Add(ep);
            }
            Providers.Add("CPUExecutionProvider");
        }

        NodeInfo Describe(SessionGetTypeInfoFn get, IntPtr s, int i)
        {
            var api = rt.Api;
            IntPtr ti;
            rt.Check(get(s, (UIntPtr)i, out ti));
            using (new OrtHandle(ti, api.ReleaseTypeInfo))
            {
                int onnxType;
                rt.Check(api.GetOnnxTypeFromTypeInfo(ti, out onnxType));
                var info = new NodeInfo { IsTensor = onnxType == 1, Shape = new long[0] };
                if (!info.IsTensor) return info;
                IntPtr tensorInfo;   // borrowed from the type info, not released separately
                rt.Check(api.CastTypeInfoToTensorInfo(ti, out tensorInfo));
                int et;
                rt.Check(api.GetTensorElementType(tensorInfo, out et));
                info.Type = (ElementType)et;
                info.Shape = Dims(tensorInfo);
                return info;
            }
        }

        long[] Dims(IntPtr tensorInfo)
        {
            UIntPtr n;
            rt.Check(rt.Api.GetDimensionsCount(tensorInfo, out n));
            var dims = new long[(int)n];
            if (dims.Length > 0) rt.Check(rt.Api.GetDimensions(tensorInfo, dims, n));
            return dims;
        }

        public NodeInfo Input(string name)
        {
            foreach (var i in Inputs) if (i.Name == name) return i;
            return null;
        }

        public static string Describe(List<NodeInfo> nodes)
        {
            var parts = new List<string>();
            foreach (var n in nodes)
            {
                var dims = Array.ConvertAll(n.Shape, d => d < 0 ? "?" : d.ToString());
                parts.Add(n.Name + " " + ElementTypes.Name(n.Type) + "[" + string.Join(",", dims) + "]");
            }
            return string.Join(", ", parts);
        }

        /// <summary>Checks names, dtypes, ranks and fixed dimensions against the model, so a mismatch is reported
        /// in the model's own terms before ORT sees it.</summary>
        public void Validate(IDictionary<string, TensorData> inputs)
        {
            foreach (var kv in inputs)
                if (Input(kv.Key) == null)
                    throw new HostError("the model has no input named '" + kv.Key + "'", "its inputs are: " + Describe(Inputs));
            foreach (var info in Inputs)
            {
                TensorData t;
                if (!inputs.TryGetValue(info.Name, out t))
                    throw new HostError("input '" + info.Name + "' is missing", "the model takes: " + Describe(Inputs));
                if (t.Type != info.Type)
                    throw new HostError("input '" + info.Name + "' is " + ElementTypes.Name(t.Type) + " but the model takes " +
                        ElementTypes.Name(info.Type), "convert it to " + ElementTypes.Name(info.Type));
                bool ok = t.Shape.Length == info.Shape.Length;
                for (int d = 0; ok && d < t.Shape.Length; d++)
                    if (info.Shape[d] >= 0 && info.Shape[d] != t.Shape[d]) ok = false;
                if (!ok)
                    throw new HostError("input '" + info.Name + "' has shape " + TensorData.ShapeString(t.Shape) +
                        " but the model takes " + Describe(new List<NodeInfo> { info }), "reshape it to match");
            }
        }

        /// <summary>One inference: managed inputs are pinned and wrapped (no copy), outputs copied out, every
        /// OrtValue released before returning.</summary>
        public Dictionary<string, TensorData> Run(IDictionary<string, TensorData> inputs)
        {
            Validate(inputs);
            var api = rt.Api;
            int nIn = Inputs.Count, nOut = Outputs.Count;
            var pins = new GCHandle[nIn];
            var values = new IntPtr[nIn];
            var outputs = new IntPtr[nOut];
            try
            {
                for (int i = 0; i < nIn; i++)
                {
                    TensorData t = inputs[Inputs[i].Name];
                    pins[i] = GCHandle.Alloc(t.Data, GCHandleType.Pinned);
                    rt.Check(api.CreateTensorWithDataAsOrtValue(rt.CpuMemory, pins[i].AddrOfPinnedObject(),
                        (UIntPtr)t.Data.Length, t.Shape, (UIntPtr)t.Shape.Length, (int)t.Type, out values[i]));
                }
                rt.Check(api.Run(handle.DangerousGetHandle(), IntPtr.Zero, inputNamePtrs, values, (UIntPtr)nIn,
                    outputNamePtrs, (UIntPtr)nOut, outputs));
                var result = new Dictionary<string, TensorData>(StringComparer.Ordinal);
                for (int i = 0; i < nOut; i++) result[Outputs[i].Name] = CopyOut(outputs[i]);
                return result;
            }
            finally
            {
                for (int i = 0; i < nOut; i++) if (outputs[i] != IntPtr.Zero) api.ReleaseValue(outputs[i]);
                for (int i = 0; i < nIn; i++)
                {
                    if (values[i] != IntPtr.Zero) api.ReleaseValue(values[i]);
                    if (pins[i].IsAllocated) pins[i].Free();
                }
            }
        }

        TensorData CopyOut(IntPtr value)
        {
            var api = rt.Api;
            IntPtr info;
            rt.Check(api.GetTensorTypeAndShape(value, out info));
            ElementType et;
            long[] shape;
            using (new OrtHandle(info, api.ReleaseTensorTypeAndShapeInfo))
            {
                int t;
                rt.Check(api.GetTensorElementType(info, out t));
                et = (ElementType)t;
                shape = Dims(info);
            }
            long n = TensorData.ElementCount(shape) * ElementTypes.Size(et);
            var data = new byte[n];
            if (n > 0)
            {
                IntPtr p;
                rt.Check(api.GetTensorMutableData(value, out p));
                Marshal.Copy(p, data, 0, (int)n);
            }
            return new TensorData(et, shape, data);
        }

        bool disposed;

        public void Dispose()
        {
            if (disposed) return;   // the name buffers below must be freed exactly once
            disposed = true;
            handle.Dispose();
            foreach (var p in inputNamePtrs) Marshal.FreeHGlobal(p);
            foreach (var p in outputNamePtrs) Marshal.FreeHGlobal(p);
        }
    }
}
