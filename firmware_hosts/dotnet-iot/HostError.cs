using System;

namespace Edgepack.Host
{
    /// <summary>Bad input, usage or configuration: one line on stderr and exit 2 (DESIGN.md exit codes).</summary>
    public class HostError : Exception
    {
        public HostError(string what, string fix) : base(fix == null ? what : what + " — " + fix) { }
        public HostError(string what) : base(what) { }
    }
}
