// The ONNX Runtime C API as a function table: OrtGetApiBase() -> OrtApiBase {GetApi, GetVersionString};
// GetApi(version) -> OrtApi*, an append-only array of function pointers. The slot numbers below are the
// positions of these members in `struct OrtApi` of include/onnxruntime/core/session/onnxruntime_c_api.h
// (ORT 1.21, ORT_API_VERSION 21); slots never move in later releases, so they hold for ORT 1.32.
using System;
using System.Runtime.InteropServices;

namespace Edgepack.Host.Interop
{
    public static class Slot
    {
        public const int GetErrorCode = 1;
        public const int GetErrorMessage = 2;
        public const int CreateEnv = 3;
        public const int CreateSession = 7;
        public const int Run = 9;
        public const int CreateSessionOptions = 10;
        public const int SetSessionGraphOptimizationLevel = 23;
        public const int SetIntraOpNumThreads = 24;
        public const int SetInterOpNumThreads = 25;
        public const int SessionGetInputCount = 30;
        public const int SessionGetOutputCount = 31;
        public const int SessionGetInputTypeInfo = 33;
        public const int SessionGetOutputTypeInfo = 34;
        public const int SessionGetInputName = 36;
        public const int SessionGetOutputName = 37;
        public const int CreateTensorWithDataAsOrtValue = 49;
        public const int GetTensorMutableData = 51;
        public const int CastTypeInfoToTensorInfo = 55;
        public const int GetOnnxTypeFromTypeInfo = 56;
        public const int GetTensorElementType = 60;
        public const int GetDimensionsCount = 61;
        public const int GetDimensions = 62;
        public const int GetTensorTypeAndShape = 65;
        public const int CreateCpuMemoryInfo = 69;
        public const int AllocatorFree = 76;
        public const int GetAllocatorWithDefaultOptions = 78;
        public const int ReleaseEnv = 92;
        public const int ReleaseStatus = 93;
        public const int ReleaseMemoryInfo = 94;
        public const int ReleaseSession = 95;
        public const int ReleaseValue = 96;
        public const int ReleaseTypeInfo = 98;
        public const int ReleaseTensorTypeAndShapeInfo = 99;
        public const int ReleaseSessionOptions = 100;
        public const int GetAvailableProviders = 125;
        public const int ReleaseAvailableProviders = 126;
        public const int AddSessionConfigEntry = 130;
        public const int SessionOptionsAppendExecutionProvider_TensorRT_V2 = 170;
        public const int CreateTensorRTProviderOptions = 171;
        public const int ReleaseTensorRTProviderOptions = 174;
        public const int SessionOptionsAppendExecutionProvider_CUDA_V2 = 204;
        public const int CreateCUDAProviderOptions = 205;
        public const int ReleaseCUDAProviderOptions = 208;
        public const int SessionOptionsAppendExecutionProvider = 216;
        public const int GetBuildInfoString = 254;
    }

    // Every OrtApi entry is ORT_API_CALL = the platform C convention (cdecl on Linux x86_64/aarch64).
    // OrtStatus* results are IntPtr: null means success, anything else is turned into an OrtException.
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr GetApiFn(uint version);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr GetStringFn();
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr GetErrorMessageFn(IntPtr status);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int GetErrorCodeFn(IntPtr status);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void ReleaseFn(IntPtr obj);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr CreateEnvFn(int logLevel, byte[] logId, out IntPtr env);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr CreateOutFn(out IntPtr obj);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr SetIntFn(IntPtr obj, int value);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr CreateSessionFn(IntPtr env, byte[] path, IntPtr options, out IntPtr session);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr GetCountFn(IntPtr obj, out UIntPtr count);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr SessionGetTypeInfoFn(IntPtr session, UIntPtr index, out IntPtr typeInfo);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr SessionGetNameFn(IntPtr session, UIntPtr index, IntPtr allocator, out IntPtr name);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr CreateTensorWithDataFn(IntPtr memInfo, IntPtr data, UIntPtr dataLen, long[] shape, UIntPtr shapeLen, int type, out IntPtr value);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr GetPtrFn(IntPtr obj, out IntPtr result);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr GetIntFn(IntPtr obj, out int result);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr GetDimensionsFn(IntPtr info, [Out] long[] dims, UIntPtr count);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr CreateCpuMemoryInfoFn(int allocatorType, int memType, out IntPtr info);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr AllocatorFreeFn(IntPtr allocator, IntPtr p);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr GetAvailableProvidersFn(out IntPtr names, out int count);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr ReleaseAvailableProvidersFn(IntPtr names, int count);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr AddConfigEntryFn(IntPtr options, byte[] key, byte[] value);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr AppendProviderFn(IntPtr options, byte[] name, IntPtr[] keys, IntPtr[] values, UIntPtr count);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr AppendProviderV2Fn(IntPtr options, IntPtr providerOptions);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate IntPtr RunFn(IntPtr session, IntPtr runOptions, IntPtr[] inputNames, IntPtr[] inputs, UIntPtr inputCount,
        IntPtr[] outputNames, UIntPtr outputCount, [In, Out] IntPtr[] outputs);

    /// <summary>The OrtApi table of one loaded library, with typed delegates for the slots this host uses.</summary>
    public sealed class OrtApi
    {
        // GetBuildInfoString (slot 254) arrived in API 15 (ORT 1.15); nothing used here is newer.
        public const uint ApiVersion = 15;

        public readonly string LibraryPath;
        public readonly string Version;
        readonly IntPtr table;

        public readonly GetErrorMessageFn GetErrorMessage;
        public readonly GetErrorCodeFn GetErrorCode;
        public readonly ReleaseFn ReleaseStatus, ReleaseEnv, ReleaseSession, ReleaseSessionOptions, ReleaseValue,
            ReleaseTypeInfo, ReleaseTensorTypeAndShapeInfo, ReleaseMemoryInfo, ReleaseCUDAProviderOptions,
            ReleaseTensorRTProviderOptions;
        public readonly CreateEnvFn CreateEnv;
        public readonly CreateOutFn CreateSessionOptions, GetAllocatorWithDefaultOptions, CreateCUDAProviderOptions,
            CreateTensorRTProviderOptions;
        public readonly SetIntFn SetIntraOpNumThreads, SetInterOpNumThreads, SetSessionGraphOptimizationLevel;
        public readonly CreateSessionFn CreateSession;
        public readonly GetCountFn SessionGetInputCount, SessionGetOutputCount, GetDimensionsCount;
        public readonly SessionGetTypeInfoFn SessionGetInputTypeInfo, SessionGetOutputTypeInfo;
        public readonly SessionGetNameFn SessionGetInputName, SessionGetOutputName;
        public readonly CreateTensorWithDataFn CreateTensorWithDataAsOrtValue;
        public readonly GetPtrFn GetTensorMutableData, CastTypeInfoToTensorInfo, GetTensorTypeAndShape;
        public readonly GetIntFn GetOnnxTypeFromTypeInfo, GetTensorElementType;
        public readonly GetDimensionsFn GetDimensions;
        public readonly CreateCpuMemoryInfoFn CreateCpuMemoryInfo;
        public readonly AllocatorFreeFn AllocatorFree;
        public readonly GetAvailableProvidersFn GetAvailableProviders;
        public readonly ReleaseAvailableProvidersFn ReleaseAvailableProviders;
        public readonly AddConfigEntryFn AddSessionConfigEntry;
        public readonly AppendProviderFn SessionOptionsAppendExecutionProvider;
        public readonly AppendProviderV2Fn SessionOptionsAppendExecutionProvider_CUDA_V2, SessionOptionsAppendExecutionProvider_TensorRT_V2;
        public readonly RunFn Run;
        public readonly GetStringFn GetBuildInfoString;

        [StructLayout(LayoutKind.Sequential)]
        struct OrtApiBase
        {
            public IntPtr GetApi;
            public IntPtr GetVersionString;
        }

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] delegate IntPtr GetApiBaseFn();

        public OrtApi(string path)
        {
            LibraryPath = path;
            IntPtr lib = NativeLib.Open(path);
            IntPtr baseFn = NativeLib.Symbol(lib, "OrtGetApiBase");
            if (baseFn == IntPtr.Zero)
                throw new HostError(path + " has no OrtGetApiBase symbol, so it is not an ONNX Runtime library",
                    "pass libonnxruntime.so with --ort-lib or EDGEPACK_ORT_LIB");
            IntPtr basePtr = Marshal.GetDelegateForFunctionPointer<GetApiBaseFn>(baseFn)();
            var apiBase = Marshal.PtrToStructure<OrtApiBase>(basePtr);
            Version = Marshal.PtrToStringAnsi(Marshal.GetDelegateForFunctionPointer<GetStringFn>(apiBase.GetVersionString)());
            table = Marshal.GetDelegateForFunctionPointer<GetApiFn>(apiBase.GetApi)(ApiVersion);
            if (table == IntPtr.Zero)
                throw new HostError("ONNX Runtime " + Version + " at " + path + " does not provide C API version " + ApiVersion +
                    " (ORT 1.15 or newer)", "use the ORT library shipped in the bundle's runtime/");

            GetErrorMessage = F<GetErrorMessageFn>(Slot.GetErrorMessage);
            GetErrorCode = F<GetErrorCodeFn>(Slot.GetErrorCode);
            ReleaseStatus = F<ReleaseFn>(Slot.ReleaseStatus);
            ReleaseEnv = F<ReleaseFn>(Slot.ReleaseEnv);
            ReleaseSession = F<ReleaseFn>(Slot.ReleaseSession);
            ReleaseSessionOptions = F<ReleaseFn>(Slot.ReleaseSessionOptions);
            ReleaseValue = F<ReleaseFn>(Slot.ReleaseValue);
            ReleaseTypeInfo = F<ReleaseFn>(Slot.ReleaseTypeInfo);
            ReleaseTensorTypeAndShapeInfo = F<ReleaseFn>(Slot.ReleaseTensorTypeAndShapeInfo);
            ReleaseMemoryInfo = F<ReleaseFn>(Slot.ReleaseMemoryInfo);
            ReleaseCUDAProviderOptions = F<ReleaseFn>(Slot.ReleaseCUDAProviderOptions);
            ReleaseTensorRTProviderOptions = F<ReleaseFn>(Slot.ReleaseTensorRTProviderOptions);
            CreateEnv = F<CreateEnvFn>(Slot.CreateEnv);
            CreateSessionOptions = F<CreateOutFn>(Slot.CreateSessionOptions);
            GetAllocatorWithDefaultOptions = F<CreateOutFn>(Slot.GetAllocatorWithDefaultOptions);
            CreateCUDAProviderOptions = F<CreateOutFn>(Slot.CreateCUDAProviderOptions);
            CreateTensorRTProviderOptions = F<CreateOutFn>(Slot.CreateTensorRTProviderOptions);
            SetIntraOpNumThreads = F<SetIntFn>(Slot.SetIntraOpNumThreads);
            SetInterOpNumThreads = F<SetIntFn>(Slot.SetInterOpNumThreads);
            SetSessionGraphOptimizationLevel = F<SetIntFn>(Slot.SetSessionGraphOptimizationLevel);
            CreateSession = F<CreateSessionFn>(Slot.CreateSession);
            SessionGetInputCount = F<GetCountFn>(Slot.SessionGetInputCount);
            SessionGetOutputCount = F<GetCountFn>(Slot.SessionGetOutputCount);
            GetDimensionsCount = F<GetCountFn>(Slot.GetDimensionsCount);
            SessionGetInputTypeInfo = F<SessionGetTypeInfoFn>(Slot.SessionGetInputTypeInfo);
            SessionGetOutputTypeInfo = F<SessionGetTypeInfoFn>(Slot.SessionGetOutputTypeInfo);
            SessionGetInputName = F<SessionGetNameFn>(Slot.SessionGetInputName);
            SessionGetOutputName = F<SessionGetNameFn>(Slot.SessionGetOutputName);
            CreateTensorWithDataAsOrtValue = F<CreateTensorWithDataFn>(Slot.CreateTensorWithDataAsOrtValue);
            GetTensorMutableData = F<GetPtrFn>(Slot.GetTensorMutableData);
            CastTypeInfoToTensorInfo = F<GetPtrFn>(Slot.CastTypeInfoToTensorInfo);
            GetTensorTypeAndShape = F<GetPtrFn>(Slot.GetTensorTypeAndShape);
            GetOnnxTypeFromTypeInfo = F<GetIntFn>(Slot.GetOnnxTypeFromTypeInfo);
            GetTensorElementType = F<GetIntFn>(Slot.GetTensorElementType);
            GetDimensions = F<GetDimensionsFn>(Slot.GetDimensions);
            CreateCpuMemoryInfo = F<CreateCpuMemoryInfoFn>(Slot.CreateCpuMemoryInfo);
            AllocatorFree = F<AllocatorFreeFn>(Slot.AllocatorFree);
            GetAvailableProviders = F<GetAvailableProvidersFn>(Slot.GetAvailableProviders);
            ReleaseAvailableProviders = F<ReleaseAvailableProvidersFn>(Slot.ReleaseAvailableProviders);
            AddSessionConfigEntry = F<AddConfigEntryFn>(Slot.AddSessionConfigEntry);
            SessionOptionsAppendExecutionProvider = F<AppendProviderFn>(Slot.SessionOptionsAppendExecutionProvider);
            SessionOptionsAppendExecutionProvider_CUDA_V2 = F<AppendProviderV2Fn>(Slot.SessionOptionsAppendExecutionProvider_CUDA_V2);
            SessionOptionsAppendExecutionProvider_TensorRT_V2 = F<AppendProviderV2Fn>(Slot.SessionOptionsAppendExecutionProvider_TensorRT_V2);
            Run = F<RunFn>(Slot.Run);
            GetBuildInfoString = F<GetStringFn>(Slot.GetBuildInfoString);
        }

        T F<T>(int slot) where T : class
        {
            IntPtr fn = Marshal.ReadIntPtr(table, slot * IntPtr.Size);
            if (fn == IntPtr.Zero) throw new HostError("ONNX Runtime " + Version + " has no function in C API slot " + slot);
            return Marshal.GetDelegateForFunctionPointer<T>(fn);
        }
    }
}
