using LlmTools.Engine.Inference;

namespace LlmTools.Engine;

/// <summary>A finished input of a batch: its result, or the error that ended it.</summary>
public readonly record struct BatchItem(long Id, LlmCompletionResult? Result, LlmException? Error)
{
    public void Deconstruct(out long id, out LlmCompletionResult? result)
    {
        id = Id;
        result = Result;
    }
}

/// <summary>
/// Runs many completions at once through the model's scheduler, which decodes them together with every other
/// caller's sequences (continuous batching). A prefix common to every prompt is evaluated once into a sequence the
/// scheduler keeps while this generator lives (and afterwards while its cells are not needed), and the prompts share
/// its KV cells. Results equal one-at-a-time completions.
/// </summary>
public sealed class BatchGenerator : IDisposable
{
    private readonly ModelLease _lease;
    private readonly LoadedModel _model;
    private readonly CompletionOptions _options;
    private readonly ResolvedContextOptions _resolved;
    private readonly string _prefix;
    private readonly IEngineEvents _events;
    private readonly CancellationTokenSource _cancel = new();
    private readonly List<(long Id, ModelScheduler.Job Job)> _running = [];
    private readonly ModelScheduler.SequenceOwner? _prefixOwner;
    private bool _disposed;

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
        _events = events;
        _resolved = _model.Resolve(contextOptions);
        LoadedModel.WarnAboutThreads(_resolved.Threads, events);
        // The KV cache is allocated up front: a batch that cannot fit is made smaller, with a warning.
        int n = FitSequences(Math.Min(parallel, ModelScheduler.SlotCount - 1), _model.EstimateKvBytes(_resolved.ContextSize),
            GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        if (n < parallel)
            events.Warning(parallel >= ModelScheduler.SlotCount && n == ModelScheduler.SlotCount - 1
                ? $"At most {n} sequences are decoded together; the other inputs wait for a free one."
                : $"A batch of {parallel} sequences of {_resolved.ContextSize} tokens does not fit in memory; using {n}. Lower -ContextSize to batch more.");
        Parallel = n;
        if (prefix.Length > 0)
        {
            _prefixOwner = new ModelScheduler.SequenceOwner(forgetOnRelease: false);
            var sequence = new Sequence(_model, "", prefix, options, _resolved.ContextSize, TimeSpan.Zero);
            var result = _model.Scheduler.Run(new ModelScheduler.Job(_model.Scheduler, sequence, _resolved.ContextSize, _resolved.Threads, events, default)
            {
                PinPrefix = _prefixOwner,
            });
            PrefixTokensEvaluated = result.PromptTokens - result.CachedPromptTokens;
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

    /// <summary>Inputs in flight at once (BatchSize, or fewer when memory is short).</summary>
    public int Parallel { get; }

    /// <summary>Tokens of the shared prefix evaluated by this generator (0 when a sequence already held it).</summary>
    public int PrefixTokensEvaluated { get; private set; }

    public bool HasFreeSlot => _running.Count < Parallel;

    public int Active => _running.Count;

    /// <summary>Starts a completion. Throws <see cref="LlmException"/> for a prompt that cannot run (too long, say).</summary>
    /// <param name="chat">The same text (prefix + prompt) as a rendered chat: message content is tokenized as plain text.</param>
    public void Add(long id, string prompt, CompletionOptions? options = null, PromptSegments? chat = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!HasFreeSlot) throw new InvalidOperationException("No free sequence: call Step first.");
        var o = options ?? _options;
        if (options is not null) CompletionEngine.ValidateOptions(o);
        var tokens = chat is null ? null : Sequence.TokenizeChat(_model, chat, o.AddBos);
        var sequence = new Sequence(_model, _prefix, prompt, o, _resolved.ContextSize, _lease.TakeLoadDuration(), tokens);
        var job = new ModelScheduler.Job(_model.Scheduler, sequence, _resolved.ContextSize, _resolved.Threads, _events, _cancel.Token);
        try
        {
            _model.Scheduler.Submit(job);
        }
        catch
        {
            job.Dispose();
            throw;
        }
        _running.Add((id, job));
    }

    /// <summary>
    /// Waits until at least one input finishes (or none is left) and returns those finished. On cancellation every
    /// running input ends with StopReason Cancelled.
    /// </summary>
    public IReadOnlyList<BatchItem> Step(CancellationToken cancel)
    {
        if (_running.Count == 0) return [];
        using (cancel.Register(static c => ((CancellationTokenSource)c!).Cancel(), _cancel))
        {
            var tasks = _running.Select(r => (Task)r.Job.Done.Task).ToArray();
            if (cancel.IsCancellationRequested) Task.WaitAll(tasks);
            else Task.WaitAny(tasks);
        }
        var finished = new List<BatchItem>();
        foreach (var (id, job) in _running.Where(r => r.Job.Done.Task.IsCompleted).ToList())
        {
            _running.Remove((id, job));
            finished.Add(Take(id, job));
        }
        return finished;
    }

    private static BatchItem Take(long id, ModelScheduler.Job job)
    {
        try
        {
            return new BatchItem(id, job.Done.Task.GetAwaiter().GetResult(), null);
        }
        catch (LlmException e)
        {
            return new BatchItem(id, null, e);
        }
        finally
        {
            job.Dispose();
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // Inputs still running are stopped; their sequences end within one decode step.
        _cancel.Cancel();
        foreach (var (_, job) in _running)
        {
            try { job.Done.Task.Wait(); } catch (AggregateException) { }
            job.Dispose();
        }
        _running.Clear();
        if (_prefixOwner is not null) _model.Scheduler.Release(_prefixOwner, _events);
        _cancel.Dispose();
    }
}
