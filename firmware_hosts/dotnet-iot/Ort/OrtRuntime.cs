using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Edgepack.Host.Interop;

namespace Edgepack.Host.Ort
{
    /// <summary>One loaded ONNX Runtime library: the API table, an OrtEnv, CPU memory info and the default allocator.</summary>
    public sealed class OrtRuntime : IDisposable
    {
        public readonly OrtApi Api;
        readonly OrtHandle env;
        readonly OrtHandle cpuMemory;
        internal readonly IntPtr Allocator;   // owned by ORT; never released

        OrtRuntime(OrtApi api)
        {
            Api = api;
            IntPtr p;
            // Warning level (2): ORT's informational logs would mix with our stdout documents.
            Check(api.CreateEnv(2, Utf8("edgepack-host"), out p));
            env = new OrtHandle(p, api.ReleaseEnv);
            Check(api.CreateCpuMemoryInfo(0 /* OrtDeviceAllocator */, 0 /* OrtMemTypeDefault */, out p));
            cpuMemory = new OrtHandle(p, api.ReleaseMemoryInfo);
            Check(api.GetAllocatorWithDefaultOptions(out Allocator));
        }

        internal IntPtr Env { get { return env.DangerousGetHandle(); } }
        internal IntPtr CpuMemory { get { return cpuMemory.DangerousGetHandle(); } }
        public string Version { get { return Api.Version; } }

        /// <summary>Checks the file's CPU architecture before dlopen, then loads it and asks for the C API version.</summary>
        public static OrtRuntime Load(string path)
        {
            if (!File.Exists(path))
                throw new HostError("ONNX Runtime library " + path + " does not exist",
                    "ship it in the bundle's runtime/ or pass --ort-lib PATH / EDGEPACK_ORT_LIB");
            string libArch = NativeLib.ElfArch(path);
            string procArch = NativeLib.ProcessArch();
            if (libArch != procArch)
                throw new HostError("ONNX Runtime library " + path + " is built for " + libArch + " but this host runs on " +
                    procArch, "use a libonnxruntime.so built for " + procArch);
            return new OrtRuntime(new OrtApi(path));
        }

        public static byte[] Utf8(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            Array.Resize(ref b, b.Length + 1);
            return b;
        }

        /// <summary>Null means success; otherwise read ORT's message, free the status, and throw.</summary>
        public void Check(IntPtr status)
        {
            if (status == IntPtr.Zero) return;
            string msg = Marshal.PtrToStringAnsi(Api.GetErrorMessage(status));
            int code = Api.GetErrorCode(status);
            Api.ReleaseStatus(status);
            throw new OrtException(code, msg);
        }

        public List<string> AvailableProviders()
        {
            IntPtr names;
            int n;
            Check(Api.GetAvailableProviders(out names, out n));
            var list = new List<string>();
            try
            {
                for (int i = 0; i < n; i++) list.Add(Marshal.PtrToStringAnsi(Marshal.ReadIntPtr(names, i * IntPtr.Size)));
            }
            finally
            {
                Check(Api.ReleaseAvailableProviders(names, n));
            }
            return list;
        }

        public string BuildInfo()
        {
            return Marshal.PtrToStringAnsi(Api.GetBuildInfoString());
        }

        /// <summary>Frees a string ORT allocated with the default allocator (input/output names).</summary>
        internal string TakeString(IntPtr p)
        {
            try { return PtrToStringUtf8(p); }
            finally { Check(Api.AllocatorFree(Allocator, p)); }
        }

        public static string PtrToStringUtf8(IntPtr p)
        {
            int len = 0;
            while (Marshal.ReadByte(p, len) != 0) len++;
            var b = new byte[len];
            Marshal.Copy(p, b, 0, len);
            return Encoding.UTF8.GetString(b);
        }

        public void Dispose()
        {
            cpuMemory.Dispose();
            env.Dispose();
        }
    }
}
