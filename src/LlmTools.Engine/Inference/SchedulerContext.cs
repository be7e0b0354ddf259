using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LLama.Native;

namespace LlmTools.Engine.Inference;

/// <summary>
/// The llama.cpp context a <see cref="ModelScheduler"/> owns: one unified KV cache whose cells every sequence (caller,
/// chat session, shared prefix) takes from, so sequences can share a prefix's cells instead of copying them. Touched
/// only on the scheduler's thread.
/// </summary>
internal sealed unsafe class SchedulerContext : IDisposable
{
    // LLamaSharp 0.30 wraps llama_memory_seq_rm but drops its result; the memory pointer it needs is private there.
    private static readonly Func<SafeLLamaContextHandle, IntPtr> GetMemory =
        typeof(SafeLLamaContextHandle).GetMethod("llama_get_memory", BindingFlags.NonPublic | BindingFlags.Static)!
            .CreateDelegate<Func<SafeLLamaContextHandle, IntPtr>>();

    private readonly AbortState _abort = new();
    private GCHandle _abortHandle;
    private int _threads;

    public SchedulerContext(LoadedModel model, int sequenceSize, int totalCells, int sequences)
    {
        SequenceSize = sequenceSize;
        TotalCells = totalCells;
        _abortHandle = GCHandle.Alloc(_abort);
        var p = LLamaContextParams.Default();
        p.n_ctx = (uint)totalCells;
        p.n_batch = (uint)Math.Min(totalCells, 2048);
        p.n_ubatch = (uint)Math.Min(512, p.n_batch);
        p.n_seq_max = (uint)sequences;
        p.kv_unified = true;
        _threads = Native.NativeRuntime.DefaultThreadCount;
        p.n_threads = _threads;
        p.n_threads_batch = _threads;
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
                $"llama.cpp could not create a context of {totalCells} tokens for '{model.Info.Path}': {e.Message} " +
                "Try a smaller -ContextSize.", model.Info.Path, e);
        }
        if (Handle is null || Handle.IsInvalid)
        {
            _abortHandle.Free();
            throw new LlmException("ContextCreationFailed", LlmErrorKind.ResourceUnavailable,
                $"llama.cpp could not create a context of {totalCells} tokens for '{model.Info.Path}'. Try a smaller -ContextSize.",
                model.Info.Path);
        }
        BatchSize = (int)p.n_batch;
        Batch = new LLamaBatch();
        _memory = GetMemory(Handle);
    }

    private readonly IntPtr _memory;

    /// <summary>Most tokens one sequence may hold.</summary>
    public int SequenceSize { get; }
    /// <summary>Cells of the KV cache, shared by all sequences.</summary>
    public int TotalCells { get; }
    /// <summary>Most tokens one decode takes (n_batch).</summary>
    public int BatchSize { get; }
    public SafeLLamaContextHandle Handle { get; }
    public LLamaBatch Batch { get; }

    public bool AbortRequested
    {
        get => _abort.Abort;
        set => _abort.Abort = value;
    }

    /// <summary>Sets the threads of the next decodes (llama.cpp takes them per call, not per context).</summary>
    public void SetThreads(int threads)
    {
        if (threads == _threads) return;
        Handle.GenerationThreads = threads;
        Handle.BatchThreads = threads;
        _threads = threads;
    }

    /// <summary>Removes the cells of positions from <paramref name="from"/> on; false when the memory cannot (recurrent state).</summary>
    public bool RemoveCells(LLamaSeqId sequence, int from)
    {
        bool removed = NativeApi.llama_memory_seq_rm(_memory, sequence, from, -1);
        GC.KeepAlive(Handle);
        if (!removed && from > 0) return false;
        if (!removed) Handle.MemorySequenceRemove(sequence, 0, -1); // whole-sequence removal always succeeds
        return true;
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
