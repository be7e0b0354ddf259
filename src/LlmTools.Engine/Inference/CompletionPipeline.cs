namespace LlmTools.Engine;

/// <summary>One input's outcome, in input order: a result, or the error for that input alone.</summary>
public readonly record struct PipelineOutput(object? State, LlmCompletionResult? Result, LlmException? Error);

/// <summary>
/// Runs the inputs of a pipeline (one per piped record) through a <see cref="BatchGenerator"/> with at most
/// <see cref="BatchGenerator.Parallel"/> in flight, and gives the outcomes back in input order as soon as they and all
/// before them are done. An input that fails is an error in its place; the others go on. Blocking calls belong on a
/// worker thread: the caller's thread writes what <see cref="TakeReady"/> returns.
/// </summary>
public sealed class CompletionPipeline : IDisposable
{
    private readonly BatchGenerator _batch;
    private readonly object _lock = new();
    private readonly Dictionary<long, PipelineOutput> _ready = [];
    private readonly Dictionary<long, object?> _states = [];
    private long _nextId, _nextOutput;

    public CompletionPipeline(ModelLease lease, CompletionOptions options, ContextOptions contextOptions, int parallel, string prefix,
        IEngineEvents events) =>
        _batch = new BatchGenerator(lease, options, contextOptions, parallel, prefix, events);

    /// <summary>Tokens of the shared prefix this pipeline evaluated (0 when it was already held).</summary>
    public int PrefixTokensEvaluated => _batch.PrefixTokensEvaluated;

    /// <summary>Inputs in flight or finished but not yet taken.</summary>
    public int Outstanding
    {
        get { lock (_lock) return (int)(_nextId - _nextOutput); }
    }

    /// <summary>Starts an input, first waiting for room. Blocks: call from a worker thread.</summary>
    public void Add(string prompt, CompletionOptions? options, object? state, CancellationToken cancel, PromptSegments? chat = null)
    {
        while (!_batch.HasFreeSlot && !cancel.IsCancellationRequested) Collect(_batch.Step(cancel));
        long id;
        lock (_lock)
        {
            id = _nextId++;
            _states[id] = state;
        }
        try
        {
            _batch.Add(id, prompt, options, chat);
        }
        catch (LlmException e)
        {
            Collect([new BatchItem(id, null, e)]);
        }
    }

    /// <summary>Records an input that failed before it could run (its prompt could not be made, say).</summary>
    public void AddFailed(LlmException error, object? state)
    {
        lock (_lock)
        {
            long id = _nextId++;
            _states[id] = state;
            _ready[id] = new PipelineOutput(state, null, error);
        }
    }

    /// <summary>Waits until every input has ended. Blocks: call from a worker thread.</summary>
    public void WaitAll(CancellationToken cancel)
    {
        while (_batch.Active > 0) Collect(_batch.Step(cancel));
    }

    /// <summary>The outcomes ready to write, in input order.</summary>
    public IReadOnlyList<PipelineOutput> TakeReady()
    {
        var list = new List<PipelineOutput>();
        lock (_lock)
        {
            while (_ready.Remove(_nextOutput, out var output))
            {
                _states.Remove(_nextOutput);
                _nextOutput++;
                list.Add(output);
            }
        }
        return list;
    }

    private void Collect(IReadOnlyList<BatchItem> items)
    {
        lock (_lock)
            foreach (var item in items)
                _ready[item.Id] = new PipelineOutput(_states.GetValueOrDefault(item.Id), item.Result, item.Error);
    }

    public void Dispose() => _batch.Dispose();
}
