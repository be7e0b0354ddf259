using LLama.Native;

namespace LlmTools.Engine.Inference;

/// <summary>
/// A model's weights in memory and the scheduler that owns its compute. Freed when it is unloaded and no call uses it.
/// </summary>
internal sealed class LoadedModel
{
    private readonly object _gate = new();
    private int _activeCalls;
    private bool _unloaded;
    private bool _disposed;

    public LoadedModel(LlmModelInfo info, SafeLlamaModelHandle handle, int gpuLayers, bool vocabOnly, TimeSpan loadDuration)
    {
        Info = info;
        Handle = handle;
        GpuLayers = gpuLayers;
        VocabularyOnly = vocabOnly;
        LoadDuration = loadDuration;
        LoadedAt = DateTime.Now;
        Scheduler = new ModelScheduler(this);
    }

    public LlmModelInfo Info { get; }
    public SafeLlamaModelHandle Handle { get; }
    public int GpuLayers { get; }
    public bool VocabularyOnly { get; }
    public TimeSpan LoadDuration { get; }
    public DateTime LoadedAt { get; }
    public ModelScheduler Scheduler { get; }
    /// <summary>Context options that Import-LlmModel set for this model: defaults of every later call until it is removed.</summary>
    public ContextOptions Defaults { get; set; } = new();

    /// <summary>Fills in defaults and checks the values against the model; throws a clear error when out of range.</summary>
    public ResolvedContextOptions Resolve(ContextOptions options)
    {
        int trained = Info.ContextLength;
        int size = options.ContextSize ?? Defaults.ContextSize ?? Math.Min(trained > 0 ? trained : 4096, 4096);
        if (size < 16 || size > 1 << 20)
            throw new LlmException("ContextSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"ContextSize {size} is out of range: use 16 to {1 << 20} tokens (this model was trained for {trained}).", size);
        int threads = options.Threads ?? Defaults.Threads ?? Native.NativeRuntime.DefaultThreadCount;
        if (threads < 1 || threads > 1024)
            throw new LlmException("ThreadsOutOfRange", LlmErrorKind.InvalidArgument, $"Threads {threads} is out of range: use 1 to 1024.", threads);
        int batch = options.BatchSize ?? Defaults.BatchSize ?? Math.Min(size, 2048);
        if (batch < 1)
            throw new LlmException("BatchSizeOutOfRange", LlmErrorKind.InvalidArgument, $"BatchSize {batch} must be at least 1.", batch);
        return new ResolvedContextOptions(size, threads, Math.Min(batch, size));
    }

    /// <summary>Says once per call what cannot help: more threads than cores.</summary>
    public static void WarnAboutThreads(int threads, IEngineEvents events)
    {
        int cores = Environment.ProcessorCount;
        if (threads > cores)
            events.Warning($"-Threads {threads} is more than the {cores} cores of this machine: llama.cpp gets slower, not faster, " +
                           $"with more threads than cores. Leave -Threads out to use {cores}.");
    }

    /// <summary>Bytes the KV cache of a context of this many tokens needs (F16 keys and values).</summary>
    public long EstimateKvBytes(long contextSize)
    {
        var f = Info.Metadata;
        string arch = Info.Architecture;
        long Get(string k, long dflt)
        {
            try
            {
                return f.TryGetValue($"{arch}.{k}", out var v) && v is IConvertible c ? Convert.ToInt64(c) : dflt;
            }
            catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException)
            {
                return dflt; // a per-layer array or an odd type: the estimate falls back to the plain width
            }
        }
        long heads = Get("attention.head_count", 1), kvHeads = Get("attention.head_count_kv", heads);
        long embdKv = heads > 0 ? Info.EmbeddingLength * kvHeads / heads : Info.EmbeddingLength;
        return 2L * Info.LayerCount * contextSize * embdKv * 2;
    }

    public int ActiveCalls => Volatile.Read(ref _activeCalls);
    public bool IsUnloaded => Volatile.Read(ref _unloaded);
    public bool IsDisposed => Volatile.Read(ref _disposed);

    public bool TryAddCall()
    {
        lock (_gate)
        {
            if (_unloaded) return false;
            _activeCalls++;
            return true;
        }
    }

    public void ReleaseCall()
    {
        bool dispose;
        lock (_gate)
        {
            _activeCalls--;
            dispose = _unloaded && _activeCalls == 0 && !_disposed;
        }
        if (dispose) DisposeNow();
    }

    /// <summary>Marks the model unloaded; its memory is freed now, or when the last call using it ends.</summary>
    public void Unload()
    {
        bool dispose;
        lock (_gate)
        {
            _unloaded = true;
            dispose = _activeCalls == 0 && !_disposed;
        }
        if (dispose) DisposeNow();
    }

    private void DisposeNow()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        // The scheduler frees its context on its own thread, then the weights.
        Scheduler.Stop(Handle.Dispose);
    }

    public LlmLoadedModel Describe() => new()
    {
        Path = Info.Path,
        Name = Info.Name,
        Architecture = Info.Architecture,
        FileType = Info.FileType,
        ParameterCount = Info.ParameterCount,
        SizeBytes = Info.SizeBytes,
        ContextLength = Info.ContextLength,
        HasChatTemplate = Info.HasChatTemplate,
        ChatTemplate = Info.ChatTemplate,
        IsVocabularyOnly = VocabularyOnly,
        GpuLayers = GpuLayers,
        LoadedAt = LoadedAt,
        LoadDuration = LoadDuration,
        Contexts = Scheduler.ContextSize > 0 ? 1 : 0,
        ContextSize = Scheduler.ContextSize,
        KvCacheBytes = Scheduler.KvBytes,
        ActiveCalls = ActiveCalls,
        Status = IsUnloaded ? "Unloading" : "Loaded",
        Info = Info,
    };
}
