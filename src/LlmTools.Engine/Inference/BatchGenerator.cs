using LlmTools.Engine.Inference;
using LLama.Native;

namespace LlmTools;

/// <summary>
/// Runs many completions as parallel sequences of one context: each llama.cpp decode evaluates one token of every
/// generating sequence (and chunks of new prompts), which costs little more than one. A prefix common to every
/// prompt is evaluated once into sequence 0 and shared (its KV cells are shared, not copied), and stays there for
/// later calls while the model is loaded. Results are the same as one-at-a-time completions.
/// </summary>
public sealed class BatchGenerator : IDisposable
{
    private readonly ModelLease _lease;
    private readonly LoadedModel _model;
    private readonly CompletionOptions _options;
    private readonly ResolvedContextOptions _resolved;
    private readonly InferenceContext _ctx;
    private readonly string _prefix;
    private readonly Slot?[] _slots;
    private bool _disposed;

    private sealed class Slot(long id, Sequence sequence, int seqId)
    {
        public long Id { get; } = id;
        public Sequence Sequence { get; } = sequence;
        public LLamaSeqId SeqId { get; } = (LLamaSeqId)seqId;
        public int Evaluated;            // prompt tokens in the KV cache
        public LLamaToken? Pending;      // sampled, to be decoded next
        public int LogitIndex = -1;      // where this sequence's logits are in the last batch
    }

    public BatchGenerator(ModelLease lease, CompletionOptions options, ContextOptions contextOptions, int parallel,
        string prefix, IEngineEvents events)
    {
        CompletionEngine.ValidateOptions(options);
        if (parallel < 1 || parallel > 256)
            throw new LlmException("BatchSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"BatchSize {parallel} is out of range: use 1 to 256 prompts decoded together.", parallel);
        _lease = lease;
        _model = lease.Model;
        CompletionEngine.RequireWeights(_model);
        _options = options;
        _prefix = prefix;
        var single = _model.Resolve(contextOptions);
        // KV memory for every sequence is sized up front: a batch that does not fit is made smaller, with a warning.
        int n = FitSequences(parallel, _model.EstimateKvBytes(single.ContextSize), GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        if (n < parallel)
            events.Warning($"A batch of {parallel} sequences of {single.ContextSize} tokens does not fit in memory; using {n}. Lower -ContextSize to batch more.");
        Parallel = n;
        _resolved = single with { Sequences = n, BatchSize = Math.Min(single.ContextSize * n, 2048) };
        _slots = new Slot?[n];
        _ctx = _model.RentContext(_resolved, events);
        try
        {
            PreparePrefix();
        }
        catch
        {
            _ctx.Clear();
            _model.ReturnContext(_ctx);
            throw;
        }
    }

    /// <summary>
    /// How many sequences of <paramref name="kvBytesPerSequence"/> fit when a context may take half the memory: the
    /// requested number, halved until it fits (at least one; a single sequence that does not fit is refused later).
    /// </summary>
    public static int FitSequences(int requested, long kvBytesPerSequence, long availableBytes)
    {
        int n = requested;
        while (n > 1 && kvBytesPerSequence * n > availableBytes / 2) n /= 2;
        return n;
    }

    /// <summary>Sequences decoded together (BatchSize, or fewer when memory is short).</summary>
    public int Parallel { get; }

    /// <summary>Tokens of the shared prefix evaluated by this generator (0 when sequence 0 already held it).</summary>
    public int PrefixTokensEvaluated { get; private set; }

    public bool HasFreeSlot => Array.IndexOf(_slots, null) >= 0;

    public int Active => _slots.Count(s => s is not null);

    /// <summary>Starts a completion. Throws <see cref="LlmException"/> for a prompt that cannot run (too long, say).</summary>
    public void Add(long id, string prompt)
    {
        int free = Array.IndexOf(_slots, null);
        if (free < 0) throw new InvalidOperationException("No free sequence: call Step first.");
        var sequence = new Sequence(_model, _prefix, prompt, _options, _resolved.ContextSize, _lease.TakeLoadDuration());
        var slot = new Slot(id, sequence, free + 1);
        // Share the longest prefix sequence 0 holds; the last prompt token is always evaluated for its logits.
        int shared = 0, max = Math.Min(_ctx.CachedTokens.Count, sequence.Tokens.Length - 1);
        while (shared < max && _ctx.CachedTokens[shared] == sequence.Tokens[shared]) shared++;
        _ctx.Handle.MemorySequenceRemove(slot.SeqId, 0, -1);
        if (shared > 0) _ctx.Handle.MemorySequenceCopy(LLamaSeqId.Zero, slot.SeqId, 0, shared);
        sequence.Reused = shared;
        slot.Evaluated = shared;
        _slots[free] = slot;
    }

    /// <summary>
    /// Decodes until at least one sequence finishes (or none is left) and returns the finished ones. On
    /// cancellation every running sequence ends with StopReason Cancelled.
    /// </summary>
    public IReadOnlyList<(long Id, LlmCompletionResult Result)> Step(CancellationToken cancel)
    {
        var finished = new List<(long, LlmCompletionResult)>();
        using var register = cancel.Register(() => _ctx.AbortRequested = true);
        _ctx.AbortRequested = cancel.IsCancellationRequested;
        var batch = _ctx.Batch;
        while (finished.Count == 0 && Active > 0)
        {
            if (cancel.IsCancellationRequested) return CancelAll(finished);
            batch.Clear();
            int budget = _resolved.BatchSize;
            // Generating sequences first (one token each), then chunks of prompts with what the batch has left.
            foreach (var slot in _slots)
            {
                if (slot?.Pending is not { } token) continue;
                slot.LogitIndex = batch.Add(token, slot.Sequence.Position, slot.SeqId, true);
                slot.Sequence.Position++;
                slot.Pending = null;
                budget--;
            }
            foreach (var slot in _slots)
            {
                if (slot is null || budget <= 0) continue;
                var tokens = slot.Sequence.Tokens;
                if (slot.Evaluated >= tokens.Length) continue;
                int take = Math.Min(tokens.Length - slot.Evaluated, budget);
                for (int i = slot.Evaluated; i < slot.Evaluated + take; i++)
                {
                    int index = batch.Add(tokens[i], i, slot.SeqId, i == tokens.Length - 1);
                    if (i == tokens.Length - 1) slot.LogitIndex = index;
                }
                slot.Evaluated += take;
                budget -= take;
            }
            if (batch.TokenCount == 0) break;
            if (!CompletionEngine.Decode(_ctx, batch, cancel)) return CancelAll(finished);

            for (int i = 0; i < _slots.Length; i++)
            {
                var slot = _slots[i];
                if (slot is null || slot.LogitIndex < 0) continue;
                int index = slot.LogitIndex;
                slot.LogitIndex = -1;
                if (slot.Sequence.CompletionTokens == 0 && slot.Pending is null) slot.Sequence.PromptEvaluated();
                var token = slot.Sequence.Sampler.Sample(_ctx.Handle, index);
                if (slot.Sequence.Accept(token, NullEngineEvents.Instance))
                {
                    slot.Pending = token;
                    continue;
                }
                finished.Add((slot.Id, Finish(i)));
            }
        }
        return finished;
    }

    private LlmCompletionResult Finish(int index)
    {
        var slot = _slots[index]!;
        _slots[index] = null;
        _ctx.Handle.MemorySequenceRemove(slot.SeqId, 0, -1);
        var result = slot.Sequence.ToResult(_resolved.ContextSize, _resolved.Threads);
        slot.Sequence.Dispose();
        return result;
    }

    private List<(long, LlmCompletionResult)> CancelAll(List<(long, LlmCompletionResult)> finished)
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            if (_slots[i] is not { } slot) continue;
            slot.Sequence.Stop(LlmStopReason.Cancelled, NullEngineEvents.Instance);
            finished.Add((slot.Id, Finish(i)));
        }
        // An aborted decode leaves the KV cache in an unknown state: start clean next time.
        _ctx.Clear();
        return finished;
    }

    private void PreparePrefix()
    {
        if (_prefix.Length == 0) return;
        var tokens = _model.Handle.Tokenize(_prefix, _options.AddBos ?? _model.Handle.Vocab.ShouldAddBOS, true, System.Text.Encoding.UTF8);
        if (tokens.Length >= _resolved.ContextSize)
            throw new LlmException("PromptTooLong", LlmErrorKind.LimitsExceeded,
                $"The prefix is {tokens.Length} tokens but the context holds {_resolved.ContextSize} per sequence. Shorten it or raise -ContextSize.", _prefix);
        if (_ctx.CachedTokens.SequenceEqual(tokens)) return; // still there from an earlier call
        _ctx.Clear();
        var batch = _ctx.Batch;
        for (int start = 0; start < tokens.Length; start += _resolved.BatchSize)
        {
            batch.Clear();
            int end = Math.Min(tokens.Length, start + _resolved.BatchSize);
            for (int i = start; i < end; i++) batch.Add(tokens[i], i, LLamaSeqId.Zero, false);
            if (!CompletionEngine.Decode(_ctx, batch, default))
                throw new LlmException("DecodeFailed", LlmErrorKind.InvalidOperation, "Evaluating the prefix was aborted.");
        }
        _ctx.CachedTokens.AddRange(tokens);
        PrefixTokensEvaluated = tokens.Length;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        for (int i = 0; i < _slots.Length; i++)
            if (_slots[i] is { } slot)
            {
                _ctx.Handle.MemorySequenceRemove(slot.SeqId, 0, -1);
                slot.Sequence.Dispose();
                _slots[i] = null;
            }
        _model.ReturnContext(_ctx);
    }
}
