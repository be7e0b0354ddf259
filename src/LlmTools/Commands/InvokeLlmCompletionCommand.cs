using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Continues each prompt with a local GGUF model. Every piped string is one prompt; the model is loaded once and
/// stays in the session cache, so later calls start at once. Each prompt gives one result object: the exact
/// continuation (Prompt + Text is the whole document), token counts, timings, the seed and why generation stopped.
/// </summary>
/// <remarks>
/// <para>MaxTokens counts new tokens only; the prompt never counts. A prompt that does not fit the context
/// (ContextSize) is an error for that prompt naming both numbers, never a silent truncation; the other prompts go on.</para>
/// <para>Temperature 0 is greedy decoding. Without -Seed a seed is chosen and reported, so a sampled output can be
/// reproduced. Stop strings end generation and are not part of the text.</para>
/// </remarks>
/// <example>
/// <code>Invoke-LlmCompletion 'The capital of France is' -Model ./model.gguf -MaxTokens 16 -Temperature 0</code>
/// <para>One greedy completion of at most 16 new tokens.</para>
/// </example>
/// <example>
/// <code>Get-Content prompts.txt | Invoke-LlmCompletion -Model ./model.gguf -Stop "`n" | Select-Object Prompt, Text</code>
/// <para>Every line is a prompt; each answer ends at the first newline. The model is loaded once.</para>
/// </example>
/// <example>
/// <code>Invoke-LlmCompletion 'Once upon a time' -Model ./stories260K.gguf -MaxTokens 200 -Stream</code>
/// <para>Shows the story as it is generated (Ctrl+C stops it and keeps the model loaded), then writes the result.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "LlmCompletion")]
[OutputType(typeof(LlmCompletionResult))]
public sealed class InvokeLlmCompletionCommand : ModelCmdlet
{
    /// <summary>The text to continue; every element (and every piped string) is one prompt.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [AllowEmptyString]
    public string[] Prompt { get; set; } = [];

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

    /// <summary>Show the text as it is generated (information stream, shown by the host); the result object still follows. Implies -BatchSize 1.</summary>
    [Parameter]
    public SwitchParameter Stream { get; set; }

    /// <summary>
    /// Piped prompts decoded together as parallel sequences of one context (default 8; 1 runs them one at a time).
    /// Results keep the input order and equal one-at-a-time results.
    /// </summary>
    [Parameter]
    public int BatchSize { get; set; } = DefaultBatchSize;

    /// <summary>Text put in front of every prompt (instructions, examples); evaluated once and shared by all of them.</summary>
    [Parameter]
    [AllowEmptyString]
    public string Prefix { get; set; } = "";

    /// <summary>Measured on 2 cores with a 0.5B Q8_0 model (./build.ps1 -Task Bench): 8 sequences give most of the gain.</summary>
    public const int DefaultBatchSize = 8;

    private CompletionOptions? _options;
    private ModelLease? _lease;
    private string? _leaseModel; // -Model as given, so a piped model is resolved once per change
    private BatchGenerator? _batch;
    private long _nextId;      // id of the next input prompt
    private long _nextOutput;  // id of the next result to write, so results keep the input order
    private readonly Dictionary<long, object> _ready = new(); // finished results or errors not yet written
    private (long Id, string Prompt)? _held; // a first prompt waits for a second before a batch is worth its memory

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        _options = new CompletionOptions
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
            CompletionEngine.ValidateOptions(_options);
            if (BatchSize < 1 || BatchSize > 256)
                throw new LlmException("BatchSizeOutOfRange", LlmErrorKind.InvalidArgument,
                    $"BatchSize {BatchSize} is out of range: use 1 to 256 prompts decoded together.", BatchSize);
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }

    protected override void ProcessRecord()
    {
        if (EnsureModel() is { } failure)
        {
            _ready[_nextId++] = failure;
            WriteReady();
            return;
        }
        foreach (var prompt in Prompt)
        {
            if (Cancellation.IsCancellationRequested) return;
            if (Stream || BatchSize == 1) CompleteOne(_nextId++, prompt);
            else AddToBatch(prompt);
        }
    }

    protected override void EndProcessing()
    {
        Flush();
        Release();
    }

    protected override void DisposeResources() => Release();

    /// <summary>
    /// Acquires the model, first finishing the work of a previous model when it changes from the pipeline. Returns the
    /// error for this input when a piped model cannot be used.
    /// </summary>
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
            return null;
        }
        catch (LlmException e)
        {
            // A model named on the command line is wrong for every input: stop. One from the pipeline fails that item.
            if (ModelFromCommandLine) ThrowLlmError(e);
            return e;
        }
    }

    private void CompleteOne(long id, string prompt)
    {
        try
        {
            _ready[id] = RunEngine((events, cancel) =>
                CompletionEngine.Complete(_lease!, prompt, _options!, ContextOptions, events, cancel, Prefix), Stream);
            if (Stream) Host.UI.WriteLine();
        }
        catch (LlmException e)
        {
            _ready[id] = e;
        }
        WriteReady();
    }

    private void AddToBatch(string prompt)
    {
        long id = _nextId++;
        if (_batch is null && _held is null)
        {
            _held = (id, prompt);
            return;
        }
        try
        {
            if (_batch is null)
            {
                _batch = RunEngine((events, _) => new BatchGenerator(_lease!, _options!, ContextOptions, BatchSize, Prefix, events));
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

    /// <summary>Finishes what is under way: a held single prompt runs alone, a batch runs to its end.</summary>
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
            _nextOutput++;
            if (item is LlmException e) WriteLlmError(e);
            else WriteObject(item);
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
