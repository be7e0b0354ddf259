using LLama.Native;

namespace LlmTools.Engine.Inference;

/// <summary>
/// A model's weights in memory, and the contexts kept for it. Disposed when it is unloaded and no call uses it.
/// </summary>
internal sealed class LoadedModel
{
    private readonly object _gate = new();
    private readonly Dictionary<ResolvedContextOptions, Stack<InferenceContext>> _idle = new();
    private int _activeCalls;
    private int _contextCount;
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
    }

    public LlmModelInfo Info { get; }
    public SafeLlamaModelHandle Handle { get; }
    public int GpuLayers { get; }
    public bool VocabularyOnly { get; }
    public TimeSpan LoadDuration { get; }
    public DateTime LoadedAt { get; }

    /// <summary>Fills in defaults and checks the values against the model; throws a clear error when out of range.</summary>
    public ResolvedContextOptions Resolve(ContextOptions options)
    {
        int trained = Info.ContextLength;
        int size = options.ContextSize ?? Math.Min(trained > 0 ? trained : 4096, 4096);
        if (size < 16 || size > 1 << 20)
            throw new LlmException("ContextSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"ContextSize {size} is out of range: use 16 to {1 << 20} tokens (this model was trained for {trained}).", size);
        int threads = options.Threads ?? Native.NativeRuntime.DefaultThreadCount;
        if (threads < 1 || threads > 1024)
            throw new LlmException("ThreadsOutOfRange", LlmErrorKind.InvalidArgument, $"Threads {threads} is out of range: use 1 to 1024.", threads);
        int batch = options.BatchSize ?? Math.Min(size, 2048);
        if (batch < 1)
            throw new LlmException("BatchSizeOutOfRange", LlmErrorKind.InvalidArgument, $"BatchSize {batch} must be at least 1.", batch);
        return new ResolvedContextOptions(size, threads, Math.Min(batch, size));
    }

    /// <summary>Bytes the KV cache of a context of this many tokens needs (F16 keys and values).</summary>
    public long EstimateKvBytes(int contextSize)
    {
        var f = Info.Metadata;
        string arch = Info.Architecture;
        long Get(string k, long dflt) => f.TryGetValue($"{arch}.{k}", out var v) && v is IConvertible c ? Convert.ToInt64(c) : dflt;
        long heads = Get("attention.head_count", 1), kvHeads = Get("attention.head_count_kv", heads);
        long embdKv = heads > 0 ? Info.EmbeddingLength * kvHeads / heads : Info.EmbeddingLength;
        return 2L * Info.LayerCount * contextSize * embdKv * 2;
    }

    public InferenceContext RentContext(ResolvedContextOptions options, IEngineEvents events)
    {
        lock (_gate)
        {
            if (_disposed) throw new ObjectDisposedException(Info.Path);
            if (_idle.TryGetValue(options, out var stack) && stack.Count > 0)
            {
                var idle = stack.Pop();
                idle.AbortRequested = false; // a cancelled call may have left it set
                return idle;
            }
        }
        long kv = EstimateKvBytes(options.ContextSize * options.Sequences);
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (kv > available / 2)
            throw new LlmException("ContextTooLarge", LlmErrorKind.LimitsExceeded,
                $"A context of {options.ContextSize * options.Sequences} tokens needs about {kv / (1 << 20)} MiB of KV cache, more than half of the " +
                $"{available / (1 << 20)} MiB this machine has. Use a smaller -ContextSize.", options.ContextSize);
        events.Verbose($"Creating a context of {options.ContextSize} tokens x {options.Sequences} sequences ({kv / 1024} KiB KV cache), {options.Threads} threads, batch {options.BatchSize}.");
        var ctx = new InferenceContext(this, options);
        Interlocked.Increment(ref _contextCount);
        return ctx;
    }

    public void ReturnContext(InferenceContext context)
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                if (!_idle.TryGetValue(context.Options, out var stack))
                    _idle[context.Options] = stack = new Stack<InferenceContext>();
                stack.Push(context);
                return;
            }
        }
        context.Dispose();
        Interlocked.Decrement(ref _contextCount);
    }

    public int ContextCount => Volatile.Read(ref _contextCount);
    public int ActiveCalls => Volatile.Read(ref _activeCalls);
    public bool IsUnloaded => Volatile.Read(ref _unloaded);

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
        List<InferenceContext> contexts;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            contexts = _idle.Values.SelectMany(s => s).ToList();
            _idle.Clear();
        }
        foreach (var c in contexts) c.Dispose();
        Interlocked.Exchange(ref _contextCount, 0);
        Handle.Dispose();
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
        VocabularyOnly = VocabularyOnly,
        GpuLayers = GpuLayers,
        LoadedAt = LoadedAt,
        LoadDuration = LoadDuration,
        Contexts = ContextCount,
        ActiveCalls = ActiveCalls,
        Info = Info,
    };
}
