// dlopen/dlsym by hand: the ORT library is found at run time (bundle runtime/, --ort-lib, EDGEPACK_ORT_LIB),
// so a fixed [DllImport] name cannot be used, and Mono 6.8 has no System.Runtime.InteropServices.NativeLibrary
// (hence the name NativeLib: it must not collide with that class when .NET 8 builds the same sources).
using System;
using System.IO;
using System.Runtime.InteropServices;

namespace Edgepack.Host.Interop
{
    public static class NativeLib
    {
        const int RTLD_NOW = 2;

        [DllImport("libdl.so.2", EntryPoint = "dlopen")]
        static extern IntPtr dlopen_dl(string file, int mode);
        [DllImport("libdl.so.2", EntryPoint = "dlsym")]
        static extern IntPtr dlsym_dl(IntPtr handle, string name);
        [DllImport("libdl.so.2", EntryPoint = "dlerror")]
        static extern IntPtr dlerror_dl();
        // glibc >= 2.34 folds libdl into libc; libdl.so.2 remains as a stub, but a distro may drop it.
        [DllImport("libc.so.6", EntryPoint = "dlopen")]
        static extern IntPtr dlopen_c(string file, int mode);
        [DllImport("libc.so.6", EntryPoint = "dlsym")]
        static extern IntPtr dlsym_c(IntPtr handle, string name);
        [DllImport("libc.so.6", EntryPoint = "dlerror")]
        static extern IntPtr dlerror_c();

        static bool useLibc;

        public static IntPtr Open(string path)
        {
            IntPtr h;
            try { h = useLibc ? dlopen_c(path, RTLD_NOW) : dlopen_dl(path, RTLD_NOW); }
            catch (DllNotFoundException) { useLibc = true; h = dlopen_c(path, RTLD_NOW); }
            if (h == IntPtr.Zero)
            {
                IntPtr e = useLibc ? dlerror_c() : dlerror_dl();
                string msg = e == IntPtr.Zero ? "unknown error" : Marshal.PtrToStringAnsi(e);
                throw new HostError("cannot load the ONNX Runtime library " + path + ": " + msg,
                    "pass a working libonnxruntime.so with --ort-lib or EDGEPACK_ORT_LIB");
            }
            return h;
        }

        public static IntPtr Symbol(IntPtr handle, string name)
        {
            return useLibc ? dlsym_c(handle, name) : dlsym_dl(handle, name);
        }

        /// <summary>The machine this process runs on, as `uname -m` spells it.</summary>
        public static string ProcessArch()
        {
            switch (RuntimeInformation.ProcessArchitecture)
            {
                case Architecture.X64: return "x86_64";
                case Architecture.Arm64: return "aarch64";
                case Architecture.Arm: return "armv7l";
                case Architecture.X86: return "i686";
                default: return RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
            }
        }

        /// <summary>Reads e_machine from an ELF header, so a library for the wrong CPU gets a clear message
        /// instead of dlopen's "wrong ELF class" or a crash.</summary>
        public static string ElfArch(string path)
        {
            byte[] h = new byte[20];
            int n;
            try
            {
                using (var f = File.OpenRead(path)) n = f.Read(h, 0, h.Length);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new HostError("cannot read the ONNX Runtime library " + path + ": " + e.Message,
                    "pass a readable libonnxruntime.so with --ort-lib or EDGEPACK_ORT_LIB");
            }
            if (n < 20 || h[0] != 0x7f || h[1] != (byte)'E' || h[2] != (byte)'L' || h[3] != (byte)'F')
                throw new HostError(path + " is not an ELF shared library",
                    "pass the libonnxruntime.so built for " + ProcessArch());
            int machine = h[5] == 2 ? (h[18] << 8) | h[19] : h[18] | (h[19] << 8);
            switch (machine)
            {
                case 62: return "x86_64";
                case 183: return "aarch64";
                case 40: return "armv7l";
                case 3: return "i686";
                case 243: return "riscv64";
                default: return "e_machine " + machine;
            }
        }
    }
}
