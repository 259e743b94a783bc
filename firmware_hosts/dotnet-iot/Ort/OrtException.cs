using System;

namespace Edgepack.Host.Ort
{
    /// <summary>An OrtStatus turned into a .NET exception: ORT's own message and error code.</summary>
    public sealed class OrtException : Exception
    {
        public readonly int Code;
        static readonly string[] codeNames = {
            "OK", "FAIL", "INVALID_ARGUMENT", "NO_SUCHFILE", "NO_MODEL", "ENGINE_ERROR", "RUNTIME_EXCEPTION",
            "INVALID_PROTOBUF", "MODEL_LOADED", "NOT_IMPLEMENTED", "INVALID_GRAPH", "EP_FAIL",
        };

        public OrtException(int code, string message) : base(message)
        {
            Code = code;
        }

        public string CodeName
        {
            get { return Code >= 0 && Code < codeNames.Length ? codeNames[Code] : "ERROR_" + Code; }
        }
    }
}
