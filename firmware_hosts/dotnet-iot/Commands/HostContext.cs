using System;
using Edgepack.Host.Bundle;
using Edgepack.Host.Ort;

namespace Edgepack.Host.Commands
{
    /// <summary>A bundle opened for work: the ORT library it needs (arch- and version-checked) and a session.</summary>
    public sealed class HostContext : IDisposable
    {
        public readonly BundleDir Bundle;
        public readonly OrtRuntime Runtime;
        public readonly Session Session;
        public readonly SessionConfig Config;

        public HostContext(Options opts, string command)
        {
            Bundle = new BundleDir(opts.Require("--bundle-dir", command));
            Runtime = OrtRuntime.Load(Bundle.FindOrtLibrary(opts.Get("--ort-lib")));
            try
            {
                Bundle.CheckRuntimeVersion(Runtime);
                Config = Bundle.SessionConfig(opts.GetInt("--threads", 0));
                Session = new Session(Runtime, Bundle.ModelPath, Config);
                foreach (string w in Config.Warnings) Console.Error.WriteLine("edgepack-host: warning: " + w);
            }
            catch
            {
                Runtime.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            if (Session != null) Session.Dispose();
            Runtime.Dispose();
        }
    }
}
