using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;
using LLama.Native;

namespace LlmTools.Engine.Native;

/// <summary>Severity of a line llama.cpp logged.</summary>
public enum NativeLogLevel { Debug, Info, Warning, Error }

/// <summary>One line of llama.cpp's log, queued from whatever native thread wrote it.</summary>
public readonly record struct NativeLogEntry(NativeLogLevel Level, string Message);

/// <summary>
/// Loads llama.cpp once per process: picks the native library variant (CUDA when present, else the best CPU
/// instruction set), and routes its log into a queue that the pipeline thread drains. Nothing here writes to the
/// console: llama.cpp's log callback runs on native threads, where PowerShell's streams must not be touched.
/// </summary>
public static class NativeRuntime
{
    /// <summary>Environment variable naming a folder of llama.cpp libraries (e.g. a CUDA build of the same commit).</summary>
    public const string LibraryPathVariable = "LLMTOOLS_LLAMA_LIBRARY_PATH";

    private const int MaxQueuedLogLines = 2000;
    private static readonly object Gate = new();
    private static readonly ConcurrentQueue<NativeLogEntry> LogQueue = new();
    // llama.cpp writes a line in pieces, from the thread that does the work: pieces are joined per thread.
    [ThreadStatic] private static StringBuilder? _partialLine;
    [ThreadStatic] private static NativeLogLevel _partialLevel;
    // The caller whose work runs on this thread now (a load, or a decode on a model's scheduler thread): its log goes
    // there, never to another runspace's command.
    [ThreadStatic] private static IEngineEvents? _logSink;
    private static bool _configured;
    private static LlmBackendInfo? _backend;
    private static LlmException? _loadFailure;
    // Held for the life of the process: native code keeps the callback pointer.
    private static NativeLogConfig.LLamaLogCallback? _logCallback;

    /// <summary>
    /// Sends llama.cpp's log lines written on this thread to <paramref name="events"/> (warnings and errors as Verbose,
    /// the rest as Debug) until the result is disposed.
    /// </summary>
    public static LogRoute RouteLogTo(IEngineEvents? events)
    {
        var previous = _logSink;
        _logSink = events;
        return new LogRoute(previous);
    }

    /// <summary>Restores the previous log destination of the thread.</summary>
    public readonly struct LogRoute(IEngineEvents? previous) : IDisposable
    {
        public void Dispose() => _logSink = previous;
    }

    /// <summary>Drains the log lines llama.cpp wrote on threads that no caller owned (kept for diagnostics).</summary>
    public static IReadOnlyList<NativeLogEntry> DrainLog()
    {
        if (LogQueue.IsEmpty) return [];
        var lines = new List<NativeLogEntry>();
        while (LogQueue.TryDequeue(out var e)) lines.Add(e);
        return lines;
    }

    /// <summary>Which native library is (or will be) used, and why.</summary>
    public static LlmBackendInfo Backend
    {
        get
        {
            EnsureLoaded();
            return _backend!;
        }
    }

    /// <summary>Loads the native library if it is not yet loaded. Throws <see cref="LlmException"/> if it cannot be.</summary>
    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_backend is not null) return;
            if (_loadFailure is not null) throw _loadFailure;
            try
            {
                Configure();
                NativeApi.llama_empty_call();
                _backend = DescribeLoaded();
            }
            catch (LlmException e)
            {
                _loadFailure = e; // the configuration cannot change within the process: say the same thing every time
                throw;
            }
            catch (Exception e)
            {
                _loadFailure = new LlmException("NativeLibraryLoadFailed", LlmErrorKind.ResourceUnavailable,
                    $"llama.cpp's native library could not be loaded: {e.Message} " +
                    $"Check that the module folder is complete (engine/runtimes), or unset {LibraryPathVariable}.", null, e);
                throw _loadFailure;
            }
        }
    }

    private static string EngineDirectory => Path.GetDirectoryName(typeof(NativeRuntime).Assembly.Location)!;

    private static void Configure()
    {
        if (_configured) return;
        _configured = true;
        _logCallback = OnNativeLog;
        var config = NativeLibraryConfig.All;
        config.WithLogCallback(_logCallback);
        var custom = Environment.GetEnvironmentVariable(LibraryPathVariable);
        if (!string.IsNullOrEmpty(custom))
        {
            var llama = Path.Combine(custom, "libllama.so");
            var mtmd = Path.Combine(custom, "libmtmd.so");
            if (!File.Exists(llama))
                throw new LlmException("NativeLibraryPathInvalid", LlmErrorKind.ObjectNotFound,
                    $"{LibraryPathVariable} is '{custom}', but that folder has no libllama.so. " +
                    "Point it at a folder of llama.cpp libraries built for the same llama.cpp commit, or unset it.", custom);
            config.WithLibrary(llama, File.Exists(mtmd) ? mtmd : null!);
            return;
        }
        // CUDA first when a driver is present (falls back to CPU automatically), then the best CPU variant.
        config.WithSearchDirectory(EngineDirectory)
              .WithCuda(CudaDriverPresent(out _))
              .WithVulkan(false)
              .WithAutoFallback(true);
    }

    internal static bool CudaDriverPresent(out string reason)
    {
        if (NativeLibrary.TryLoad(OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1", out var h))
        {
            NativeLibrary.Free(h);
            reason = "the NVIDIA driver library (libcuda) is present";
            return true;
        }
        reason = "no NVIDIA driver library (libcuda) was found";
        return false;
    }

    private static LlmBackendInfo DescribeLoaded()
    {
        var lib = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama);
        var meta = lib?.Metadata;
        bool cudaDriver = CudaDriverPresent(out var cudaReason);
        string cpuLevel = Avx512F.IsSupported ? "AVX512" : Avx2.IsSupported ? "AVX2" : Avx.IsSupported ? "AVX" : "none";
        var devices = new List<string>();
        try
        {
            var count = (int)NativeApi.ggml_backend_dev_count();
            for (int i = 0; i < count; i++)
                devices.Add(Marshal.PtrToStringUTF8(NativeApi.ggml_backend_dev_name(NativeApi.ggml_backend_dev_get((nuint)i))) ?? "?");
        }
        catch (Exception) { /* device listing is informative only */ }

        string custom = Environment.GetEnvironmentVariable(LibraryPathVariable) ?? "";
        bool gpu = NativeApi.llama_supports_gpu_offload();
        string variant = custom.Length > 0 ? "custom"
            : meta is null ? "unknown"
            : meta.UseCuda ? "cuda12" : meta.UseVulkan ? "vulkan" : meta.AvxLevel.ToString().ToLowerInvariant() switch { "none" => "noavx", var s => s };
        string why = custom.Length > 0
            ? $"{LibraryPathVariable} points at {custom}"
            : meta is null ? "LLamaSharp did not report which library it loaded"
            : meta.UseCuda ? $"{cudaReason} and the CUDA variant loaded"
            : cudaDriver ? $"{cudaReason}, but no CUDA variant is installed or it failed to load; using the CPU variant for {cpuLevel}"
            : $"{cudaReason}; this CPU supports {cpuLevel}";
        return new LlmBackendInfo
        {
            Variant = variant,
            Reason = why,
            CpuInstructionSet = cpuLevel,
            CudaDriverFound = cudaDriver,
            GpuOffloadSupported = gpu,
            Devices = devices,
            LibraryPath = custom.Length > 0 ? Path.Combine(custom, "libllama.so") : LoadedLibraryPath(variant),
            LogicalProcessors = Environment.ProcessorCount,
            DefaultThreads = DefaultThreadCount,
        };
    }

    private static string? LoadedLibraryPath(string variant)
    {
        var p = Path.Combine(EngineDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", variant, "libllama.so");
        return File.Exists(p) ? p : null;
    }

    /// <summary>llama.cpp's default: one thread per core.</summary>
    public static int DefaultThreadCount => Math.Max(1, Environment.ProcessorCount);

    private static void OnNativeLog(LLamaLogLevel level, string message)
    {
        // llama.cpp writes lines in pieces (level Continue); join them so each entry is one line.
        var partial = _partialLine ??= new StringBuilder();
        if (level != LLamaLogLevel.Continue)
            _partialLevel = level switch
            {
                LLamaLogLevel.Error => NativeLogLevel.Error,
                LLamaLogLevel.Warning => NativeLogLevel.Warning,
                LLamaLogLevel.Info => NativeLogLevel.Info,
                _ => NativeLogLevel.Debug,
            };
        partial.Append(message);
        int nl;
        while ((nl = IndexOfNewline(partial)) >= 0)
        {
            var line = partial.ToString(0, nl).TrimEnd('\r');
            partial.Remove(0, nl + 1);
            if (line.Length == 0) continue;
            if (_logSink is { } sink)
            {
                if (_partialLevel is NativeLogLevel.Error or NativeLogLevel.Warning) sink.Verbose("llama.cpp: " + line);
                else sink.Debug("llama.cpp: " + line);
                continue;
            }
            LogQueue.Enqueue(new NativeLogEntry(_partialLevel, line));
            while (LogQueue.Count > MaxQueuedLogLines) LogQueue.TryDequeue(out _);
        }
    }

    private static int IndexOfNewline(StringBuilder sb)
    {
        for (int i = 0; i < sb.Length; i++) if (sb[i] == '\n') return i;
        return -1;
    }
}

