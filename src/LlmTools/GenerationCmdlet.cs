using System.Management.Automation;

namespace LlmTools;

/// <summary>Base of cmdlets that generate text: the sampling and length parameters, each meaning one thing.</summary>
public abstract class GenerationCmdlet : ModelCmdlet
{
    /// <summary>New tokens to generate at most; the prompt never counts. Default 256, so generation always ends.</summary>
    [Parameter]
    public int MaxTokens { get; set; } = CompletionOptions.DefaultMaxTokens;

    /// <summary>Sampling temperature; 0 means greedy decoding (always the most likely token). Default 0.8.</summary>
    [Parameter]
    public float Temperature { get; set; } = new CompletionOptions().Temperature;

    /// <summary>Sample only among the K most likely tokens; 0 turns it off. Default 40.</summary>
    [Parameter]
    public int TopK { get; set; } = new CompletionOptions().TopK;

    /// <summary>Sample only among the most likely tokens whose probabilities add up to P; 1 turns it off. Default 0.95.</summary>
    [Parameter]
    public float TopP { get; set; } = new CompletionOptions().TopP;

    /// <summary>Drop tokens less likely than MinP times the most likely one; 0 turns it off. Default 0.05.</summary>
    [Parameter]
    public float MinP { get; set; } = new CompletionOptions().MinP;

    /// <summary>Penalty on tokens seen among the last 64; 1 turns it off. Default 1.1, which keeps base models from looping.</summary>
    [Parameter]
    public float RepeatPenalty { get; set; } = new CompletionOptions().RepeatPenalty;

    /// <summary>Random seed for sampling; the same seed reproduces the same output. Default: a new one, reported in the result.</summary>
    [Parameter]
    public uint Seed { get; set; }

    /// <summary>Strings that end generation; they are not included in the text.</summary>
    [Parameter]
    public string[] Stop { get; set; } = [];

    /// <summary>The options as given, checked; an out-of-range value ends the call with an error naming the range.</summary>
    protected CompletionOptions Options { get; private set; } = new();

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        Options = new CompletionOptions
        {
            MaxTokens = MaxTokens,
            Temperature = Temperature,
            TopK = TopK,
            TopP = TopP,
            MinP = MinP,
            RepeatPenalty = RepeatPenalty,
            Seed = MyInvocation.BoundParameters.ContainsKey(nameof(Seed)) ? Seed : null,
            Stop = Stop,
        };
        try
        {
            CompletionEngine.ValidateOptions(Options);
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }
}

/// <summary>Base of the cmdlets that open a chat session (New-LlmChatSession, Start-LlmChat).</summary>
public abstract class ChatSessionCmdlet : GenerationCmdlet
{
    /// <summary>The system message: instructions for the whole conversation.</summary>
    [Parameter]
    public string? SystemPrompt { get; set; }

    /// <summary>A chat template (Jinja) to use instead of the model's.</summary>
    [Parameter]
    public string? Template { get; set; }

    /// <summary>Loads (or finds) the model and opens a session with its chat format; the session owns the model lease.</summary>
    protected ChatSession OpenSession()
    {
        var path = ResolveModelPath();
        return RunEngine((events, cancel) =>
        {
            var lease = ModelCache.Instance.Acquire(path, LoadOptions, events, cancel);
            try
            {
                return new ChatSession(lease, ChatFormat.ForModel(lease, Template, events), SystemPrompt, Options, ContextOptions, events);
            }
            catch
            {
                lease.Dispose();
                throw;
            }
        });
    }
}

/// <summary>
/// Base of cmdlets that run many piped inputs: one at a time when streaming, else decoded together as parallel
/// sequences (continuous batching). Results are written in input order as soon as they and those before them are
/// done; an input that fails is an error for that input only.
/// </summary>
public abstract class BatchedGenerationCmdlet : GenerationCmdlet
{
    /// <summary>Measured on 2 cores with a 0.5B Q8_0 model (./build.ps1 -Task Bench): 8 sequences give most of the gain.</summary>
    public const int DefaultBatchSize = 8;

    /// <summary>Show the text as it is generated (information stream, shown by the host); the result object still follows. Implies -BatchSize 1.</summary>
    [Parameter]
    public SwitchParameter Stream { get; set; }

    /// <summary>
    /// Piped inputs decoded together as parallel sequences of one context (default 8; 1 runs them one at a time).
    /// Results keep the input order and equal one-at-a-time results.
    /// </summary>
    [Parameter(ParameterSetName = ModelSet)]
    public int BatchSize { get; set; } = DefaultBatchSize;

    private ModelLease? _lease;
    private string? _leaseModel; // -Model as given, so a piped model is resolved once per change
    private BatchGenerator? _batch;
    private long _nextId;      // id of the next input
    private long _nextOutput;  // id of the next result to write, so results keep the input order
    private readonly Dictionary<long, object> _ready = new(); // finished results or errors not yet written
    private readonly Dictionary<long, string> _inputs = new();
    private (long Id, string Prompt)? _held; // a first input waits for a second before a batch is worth its memory

    /// <summary>Called once the model is there: prepares what inputs are turned into (a chat format, say).</summary>
    protected virtual void OnModelReady(ModelLease lease) { }

    /// <summary>Text evaluated once in front of every prompt (shared by all sequences).</summary>
    protected virtual string PrefixText => "";

    /// <summary>The options for this model (a chat adds its end-of-turn marker).</summary>
    protected virtual CompletionOptions OptionsFor(string prompt) => Options;

    /// <summary>The prompt for one input (after the prefix).</summary>
    protected virtual string PromptFor(string input) => input;

    /// <summary>The object written for one result.</summary>
    protected virtual object ResultFor(string input, LlmCompletionResult result) => result;

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (ParameterSetName == ModelSet && (BatchSize < 1 || BatchSize > 256))
            ThrowLlmError(new LlmException("BatchSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"BatchSize {BatchSize} is out of range: use 1 to 256 inputs decoded together.", BatchSize));
    }

    /// <summary>Runs every input of this record.</summary>
    protected void Submit(IEnumerable<string> inputs)
    {
        if (EnsureModel() is { } failure)
        {
            _ready[_nextId++] = failure;
            WriteReady();
            return;
        }
        foreach (var input in inputs)
        {
            if (Cancellation.IsCancellationRequested) return;
            long id = _nextId++;
            _inputs[id] = input;
            string prompt;
            try
            {
                prompt = PromptFor(input);
            }
            catch (LlmException e)
            {
                _ready[id] = e;
                WriteReady();
                continue;
            }
            if (Stream || BatchSize == 1) CompleteOne(id, prompt);
            else AddToBatch(id, prompt);
        }
    }

    protected override void EndProcessing()
    {
        Flush();
        Release();
    }

    protected override void DisposeResources() => Release();

    private LlmException? EnsureModel()
    {
        if (_lease is not null && _leaseModel == Model) return null;
        Flush();
        Release();
        try
        {
            var path = ResolveModelPath();
            _lease = RunEngine((events, cancel) => ModelCache.Instance.Acquire(path, LoadOptions, events, cancel));
            _leaseModel = Model;
            OnModelReady(_lease);
            return null;
        }
        catch (LlmException e)
        {
            // A model named on the command line is wrong for every input: stop. One from the pipeline fails that input.
            if (ModelFromCommandLine) ThrowLlmError(e);
            return e;
        }
    }

    private void CompleteOne(long id, string prompt)
    {
        try
        {
            _ready[id] = RunEngine((events, cancel) =>
                CompletionEngine.Complete(_lease!, prompt, OptionsFor(prompt), ContextOptions, events, cancel, PrefixText), Stream);
            if (Stream) Host.UI.WriteLine();
        }
        catch (LlmException e)
        {
            _ready[id] = e;
        }
        WriteReady();
    }

    private void AddToBatch(long id, string prompt)
    {
        if (_batch is null && _held is null)
        {
            _held = (id, prompt);
            return;
        }
        try
        {
            if (_batch is null)
            {
                var options = OptionsFor(prompt);
                _batch = RunEngine((events, _) => new BatchGenerator(_lease!, options, ContextOptions, BatchSize, PrefixText, events));
                var (heldId, heldPrompt) = _held!.Value;
                _held = null;
                AddOrFail(heldId, heldPrompt);
            }
            while (!_batch.HasFreeSlot) Drain(all: false);
        }
        catch (LlmException e)
        {
            // The batch could not be set up (a prefix too long, say): every input fails the same way.
            if (_held is { } h) { _ready[h.Id] = e; _held = null; }
            _ready[id] = e;
            WriteReady();
            return;
        }
        AddOrFail(id, prompt);
        WriteReady();
    }

    private void AddOrFail(long id, string prompt)
    {
        try { _batch!.Add(id, prompt); }
        catch (LlmException e) { _ready[id] = e; }
    }

    /// <summary>Finishes what is under way: a held single input runs alone, a batch runs to its end.</summary>
    private void Flush()
    {
        if (_held is { } held)
        {
            _held = null;
            CompleteOne(held.Id, held.Prompt);
        }
        if (_batch is not null)
        {
            Drain(all: true);
            _batch.Dispose();
            _batch = null;
        }
    }

    /// <summary>Runs the batch until a sequence finishes (or all do) and writes what is ready, in input order.</summary>
    private void Drain(bool all)
    {
        var batch = _batch!;
        do
        {
            if (batch.Active == 0) break;
            foreach (var (id, result) in RunEngine((_, cancel) => batch.Step(cancel)))
                _ready[id] = result;
            WriteReady();
        } while (all && batch.Active > 0 && !Cancellation.IsCancellationRequested);
    }

    private void WriteReady()
    {
        while (_ready.Remove(_nextOutput, out var item))
        {
            _inputs.Remove(_nextOutput, out var input);
            _nextOutput++;
            if (item is LlmException e) WriteLlmError(e);
            else WriteObject(ResultFor(input ?? "", (LlmCompletionResult)item));
        }
    }

    private void Release()
    {
        _batch?.Dispose();
        _batch = null;
        _lease?.Dispose();
        _lease = null;
        _leaseModel = null;
    }
}
