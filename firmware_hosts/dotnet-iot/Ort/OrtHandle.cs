using System;
using System.Runtime.InteropServices;
using Edgepack.Host.Interop;

namespace Edgepack.Host.Ort
{
    /// <summary>Owns one Ort* object and releases it exactly once with its OrtApi Release function,
    /// also when an exception unwinds past it or a finalizer runs.</summary>
    public sealed class OrtHandle : SafeHandle
    {
        readonly ReleaseFn release;

        public OrtHandle(IntPtr ptr, ReleaseFn release) : base(IntPtr.Zero, true)
        {
            this.release = release;
            SetHandle(ptr);
        }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            release(handle);
            return true;
        }
    }
}
