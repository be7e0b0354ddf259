using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LLama.Native;

namespace LlmTools.Engine.Inference;

/// <summary>
/// One llama.cpp context (KV cache) with the tokens it currently holds, so a following call that shares a prefix
/// evaluates only what is new. Used by one call at a time (rented from its model's pool).
/// </summary>
internal sealed unsafe class InferenceContext : IDisposable
{
    private readonly AbortState _abort = new();
    private GCHandle _abortHandle;

    public InferenceContext(LoadedModel model, ResolvedContextOptions options)
    {
        Model = model;
        Options = options;
        _abortHandle = GCHandle.Alloc(_abort);
        var p = LLamaContextParams.Default();
        // A batched context holds every sequence's tokens in one unified KV cache (sequence 0 keeps a shared prefix
        // whose cells the other sequences share, not copy).
        p.n_ctx = (uint)(options.ContextSize * options.Sequences);
        p.n_batch = (uint)options.BatchSize;
        p.n_ubatch = (uint)Math.Min(512, options.BatchSize);
        p.n_seq_max = (uint)(options.Sequences == 1 ? 1 : options.Sequences + 1);
        p.kv_unified = options.Sequences > 1;
        p.n_threads = options.Threads;
        p.n_threads_batch = options.Threads;
        // llama.cpp calls this between graph nodes: it makes Ctrl+C stop a long prompt evaluation promptly.
        p.abort_callback = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, byte>)&ShouldAbort;
        p.abort_callback_user_data = GCHandle.ToIntPtr(_abortHandle);
        try
        {
            Handle = SafeLLamaContextHandle.Create(model.Handle, p);
        }
        catch (Exception e)
        {
            _abortHandle.Free();
            throw new LlmException("ContextCreationFailed", LlmErrorKind.ResourceUnavailable,
                $"llama.cpp could not create a context of {options.ContextSize} tokens for '{model.Info.Path}': {e.Message} " +
                "Try a smaller -ContextSize.", model.Info.Path, e);
        }
        if (Handle is null || Handle.IsInvalid)
        {
            _abortHandle.Free();
            throw new LlmException("ContextCreationFailed", LlmErrorKind.ResourceUnavailable,
                $"llama.cpp could not create a context of {options.ContextSize} tokens for '{model.Info.Path}'. Try a smaller -ContextSize.",
                model.Info.Path);
        }
        Batch = new LLamaBatch();
    }

    public LoadedModel Model { get; }
    public ResolvedContextOptions Options { get; }
    public SafeLLamaContextHandle Handle { get; }
    public LLamaBatch Batch { get; }

    /// <summary>Tokens whose state sequence 0 of the KV cache holds, in order.</summary>
    public List<LLamaToken> CachedTokens { get; } = [];

    public bool AbortRequested
    {
        get => _abort.Abort;
        set => _abort.Abort = value;
    }

    /// <summary>Forgets everything in the KV cache (after an aborted decode its contents are unknown).</summary>
    public void Clear()
    {
        Handle.MemoryClear(false); // cells are marked free; zeroing gigabytes of KV data is not needed
        CachedTokens.Clear();
    }

    public void Dispose()
    {
        Handle.Dispose();
        if (_abortHandle.IsAllocated) _abortHandle.Free();
    }

    private sealed class AbortState
    {
        public volatile bool Abort;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static byte ShouldAbort(IntPtr data) =>
        data != IntPtr.Zero && GCHandle.FromIntPtr(data).Target is AbortState { Abort: true } ? (byte)1 : (byte)0;
}

/// <summary>Context options with every default filled in. ContextSize is per sequence.</summary>
internal readonly record struct ResolvedContextOptions(int ContextSize, int Threads, int BatchSize, int Sequences = 1);
