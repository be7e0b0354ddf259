using System.Management.Automation;
using System.Security;
using LlmTools.Engine.Remote;

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

    /// <summary>
    /// OpenAI's frequency penalty: lowers a token's logit by this much for every time it appeared among the last 64
    /// tokens (-2 to 2; 0 is off, the default). Repetition of words in long outputs, without -RepeatPenalty's bluntness.
    /// </summary>
    [Parameter]
    public float FrequencyPenalty { get; set; }

    /// <summary>OpenAI's presence penalty: lowers the logit of every token that appeared among the last 64 once by this much (-2 to 2; 0 is off, the default).</summary>
    [Parameter]
    public float PresencePenalty { get; set; }

    /// <summary>Random seed for sampling; the same seed reproduces the same output. Default: a new one, reported in the result.</summary>
    [Parameter]
    public uint Seed { get; set; }

    /// <summary>Strings that end generation; they are not included in the text.</summary>
    [Parameter]
    public string[] Stop { get; set; } = [];

    /// <summary>
    /// A JSON schema the output must follow: a JSON string, a hashtable (or ordered dictionary, or PSCustomObject) of
    /// the schema, or a .NET or PowerShell class whose public properties give it. The text is guaranteed to parse as
    /// JSON valid against it; the result's Value holds the parsed object.
    /// </summary>
    [Parameter]
    public object? JsonSchema { get; set; }

    /// <summary>A GBNF grammar (llama.cpp's format, rule "root" first) the output must follow.</summary>
    [Parameter]
    public string? Grammar { get; set; }

    /// <summary>With -JsonSchema: write only the parsed object (an error when generation stopped before the JSON was complete).</summary>
    [Parameter]
    public SwitchParameter AsObject { get; set; }

    /// <summary>
    /// An OpenAI-compatible server's base URL (e.g. http://127.0.0.1:8080/v1): the request goes there and -Model names
    /// one of its models. Without it, the endpoint of Connect-LlmEndpoint, if any; else the model runs locally.
    /// </summary>
    [Parameter(ParameterSetName = ModelSet)]
    public Uri? Endpoint { get; set; }

    /// <summary>The key for -Endpoint, sent as a bearer token. Default: Connect-LlmEndpoint's key for that endpoint, else OPENAI_API_KEY.</summary>
    [Parameter(ParameterSetName = ModelSet)]
    public SecureString? ApiKey { get; set; }

    /// <summary>With an endpoint: seconds one request may take before it is an error (RemoteTimeout). Default 300.</summary>
    [Parameter]
    public int TimeoutSec { get; set; } = 300;

    /// <summary>The options as given, checked; an out-of-range value ends the call with an error naming the range.</summary>
    protected CompletionOptions Options { get; private set; } = new();

    /// <summary>The server this call sends to (-Endpoint, else Connect-LlmEndpoint's); null runs the model locally.</summary>
    protected RemoteEndpoint? Remote { get; private set; }

    /// <summary>The options sent to <see cref="Remote"/>: only those given, so the server's own defaults apply to the rest.</summary>
    protected RemoteOptions RemoteOptions { get; private set; } = new();

    /// <summary>Parameters of local models only: with an endpoint they are an error, never silently ignored.</summary>
    private static readonly string[] LocalOnly = ["ContextSize", "Threads", "GpuLayers", "Template", "BatchSize"];

    /// <summary>Whether the output is JSON to parse into Value (-JsonSchema).</summary>
    protected bool ParsesJson => JsonSchema is not null;

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
            FrequencyPenalty = FrequencyPenalty,
            PresencePenalty = PresencePenalty,
            Seed = MyInvocation.BoundParameters.ContainsKey(nameof(Seed)) ? Seed : null,
            Stop = Stop ?? [], // -Stop $null: no stop strings
        };
        try
        {
            CompletionEngine.ValidateOptions(Options);
            if (JsonSchema is not null && Grammar is not null)
                throw new LlmException("GrammarConflict", LlmErrorKind.InvalidArgument,
                    "-JsonSchema and -Grammar both constrain the output: give one of them.");
            if (AsObject && JsonSchema is null)
                throw new LlmException("AsObjectNeedsJsonSchema", LlmErrorKind.InvalidArgument,
                    "-AsObject writes the parsed JSON value: give -JsonSchema too.");
            ResolveRemote();
            if (Remote is not null) return;
            string? gbnf = JsonSchema is not null ? StructuredOutput.GrammarFor(JsonSchema) : Grammar;
            if (gbnf is not null)
            {
                LlmTools.Engine.Grammar.GbnfGrammar.Parse(gbnf); // a bad grammar ends the call here, never in native code
                Options = Options with { Grammar = gbnf };
            }
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }

    private void ResolveRemote()
    {
        var bound = MyInvocation.BoundParameters;
        if (ParameterSetName != ModelSet) return;
        string? key = ApiKey is null ? null : new System.Net.NetworkCredential("", ApiKey).Password;
        Remote = RemoteSession.Resolve(Endpoint, key);
        if (Remote is null)
        {
            if (bound.ContainsKey(nameof(ApiKey)))
                throw new LlmException("ApiKeyNeedsEndpoint", LlmErrorKind.InvalidArgument, "-ApiKey is for a server: give -Endpoint too (or Connect-LlmEndpoint).");
            return;
        }
        if (TimeoutSec is < 1 or > 86400)
            throw new LlmException("TimeoutOutOfRange", LlmErrorKind.InvalidArgument, $"TimeoutSec {TimeoutSec} is out of range: use 1 to 86400.", TimeoutSec);
        if (LocalOnly.FirstOrDefault(bound.ContainsKey) is { } local)
            throw new LlmException("RemoteOptionNotSupported", LlmErrorKind.InvalidArgument,
                $"-{local} applies to local models only; the server at {Remote.Url} decides it (leave it out, or run the model locally).", local);
        RemoteOptions = new RemoteOptions
        {
            MaxTokens = MaxTokens,
            Temperature = bound.ContainsKey(nameof(Temperature)) ? Temperature : null,
            TopP = bound.ContainsKey(nameof(TopP)) ? TopP : null,
            TopK = bound.ContainsKey(nameof(TopK)) ? TopK : null,
            MinP = bound.ContainsKey(nameof(MinP)) ? MinP : null,
            RepeatPenalty = bound.ContainsKey(nameof(RepeatPenalty)) ? RepeatPenalty : null,
            FrequencyPenalty = bound.ContainsKey(nameof(FrequencyPenalty)) ? FrequencyPenalty : null,
            PresencePenalty = bound.ContainsKey(nameof(PresencePenalty)) ? PresencePenalty : null,
            Seed = Options.Seed,
            Stop = Options.Stop,
            // The server enforces the schema or grammar; the text is parsed here as for a local model (-AsObject).
            JsonSchema = JsonSchema is null ? null : StructuredOutput.SchemaJsonFor(JsonSchema),
            Grammar = Grammar is null ? null : CheckedGrammar(Grammar),
            Timeout = TimeSpan.FromSeconds(TimeoutSec),
        };
    }

    private static string CheckedGrammar(string gbnf)
    {
        LlmTools.Engine.Grammar.GbnfGrammar.Parse(gbnf);
        return gbnf;
    }

    /// <summary>The object to write for a result: with -JsonSchema its Value is filled; with -AsObject only the value.</summary>
    protected object? Shape(object result, string text, LlmStopReason stop, Action<object?> setValue)
    {
        if (!ParsesJson) return result;
        object? value = null;
        bool complete = stop is LlmStopReason.EndOfText or LlmStopReason.StopString;
        if (complete && StructuredOutput.TryParse(text, out value)) setValue(value);
        else complete = false;
        if (!AsObject) return result;
        if (!complete)
            throw new LlmException("JsonIncomplete", LlmErrorKind.LimitsExceeded,
                $"Generation stopped ({stop}) before the JSON value was complete, so there is no object to write. Raise -MaxTokens.", text);
        return value;
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
        if (Remote is not null)
            throw new LlmException("RemoteNotSupported", LlmErrorKind.NotImplemented,
                $"{MyInvocation.MyCommand.Name} runs local models only for now; for {Remote.Url} use New-LlmChatSession -Endpoint and Invoke-LlmChat -Session (or Disconnect-LlmEndpoint).");
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

    /// <summary>With an endpoint: piped inputs sent at once, at most this many requests in flight (default 4). Results keep the input order.</summary>
    [Parameter(ParameterSetName = ModelSet)]
    public int ThrottleLimit { get; set; } = 4;

    private RemotePipeline? _remote;
    private ModelLease? _lease;
    private string? _leaseModel; // -Model as given, so a piped model is resolved once per change
    private CompletionPipeline? _pipeline;
    private LlmException? _pipelineFailure; // the pipeline could not be set up (a prefix too long): every input fails so

    /// <summary>Called once the model is there: prepares what inputs are turned into (a chat format, say).</summary>
    protected virtual void OnModelReady(ModelLease lease) { }

    /// <summary>Text evaluated once in front of every prompt (shared by all sequences).</summary>
    protected virtual string PrefixText => "";

    /// <summary>The options for this model (a chat adds its end-of-turn marker).</summary>
    protected virtual CompletionOptions OptionsFor(string prompt) => Options;

    /// <summary>The prompt for one input (after the prefix).</summary>
    protected virtual string PromptFor(string input) => input;

    /// <summary>The whole rendered chat for one input (prefix + prompt), content marked; null for plain completions.</summary>
    protected virtual PromptSegments? ChatFor(string input) => null;

    /// <summary>The object written for one result.</summary>
    protected virtual object ResultFor(string input, LlmCompletionResult result) => result;

    /// <summary>One input sent to <see cref="GenerationCmdlet.Remote"/> (runs on a worker thread).</summary>
    protected virtual LlmCompletionResult RemoteRequest(RemoteEndpoint endpoint, string model, string input, IEngineEvents events,
        CancellationToken cancel, bool stream) =>
        OpenAiClient.Complete(endpoint, model, input, RemoteOptions, events, cancel, stream, PrefixText);

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (ParameterSetName == ModelSet && (BatchSize < 1 || BatchSize > 256))
            ThrowLlmError(new LlmException("BatchSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"BatchSize {BatchSize} is out of range: use 1 to 256 inputs decoded together.", BatchSize));
        if (ParameterSetName == ModelSet && (ThrottleLimit < 1 || ThrottleLimit > 64))
            ThrowLlmError(new LlmException("ThrottleLimitOutOfRange", LlmErrorKind.InvalidArgument,
                $"ThrottleLimit {ThrottleLimit} is out of range: use 1 to 64 requests in flight.", ThrottleLimit));
    }

    /// <summary>Inputs sent to the server: streamed one at a time, else ThrottleLimit in flight, written in input order.</summary>
    private void SubmitRemote(IEnumerable<string> inputs)
    {
        var endpoint = Remote!;
        string model = Model; // a model bound from the pipeline changes with the record: capture it now
        foreach (var input in inputs)
        {
            if (Cancellation.IsCancellationRequested) return;
            if (Stream || ThrottleLimit == 1)
            {
                Flush();
                try
                {
                    var result = RunEngine((events, cancel) => RemoteRequest(endpoint, model, input, events, cancel, Stream), Stream);
                    if (Stream) Host.UI.WriteLine();
                    WriteShaped(input, result);
                }
                catch (LlmException e)
                {
                    WriteLlmError(e);
                }
                continue;
            }
            var pipeline = _remote ??= new RemotePipeline(ThrottleLimit);
            var pump = EngineEvents;
            RunEngine((_, cancel) =>
            {
                pipeline.Add(token => RemoteRequest(endpoint, model, input, pump, token, false), input, cancel);
                return 0;
            });
            WriteReady();
        }
    }

    /// <summary>Runs every input of this record; results are written in input order as they become ready.</summary>
    protected void Submit(IEnumerable<string> inputs)
    {
        if (Remote is not null)
        {
            SubmitRemote(inputs);
            return;
        }
        if (EnsureModel() is { } failure)
        {
            WriteLlmError(failure);
            return;
        }
        foreach (var input in inputs)
        {
            if (Cancellation.IsCancellationRequested) return;
            string prompt;
            try
            {
                prompt = PromptFor(input);
            }
            catch (LlmException e)
            {
                if (_pipeline is not null) _pipeline.AddFailed(e, input);
                else WriteLlmError(e);
                WriteReady();
                continue;
            }
            if (Stream || BatchSize == 1) CompleteOne(input, prompt);
            else AddToPipeline(input, prompt);
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

    /// <summary>One input at a time, its text streamed as it is generated.</summary>
    private void CompleteOne(string input, string prompt)
    {
        Flush();
        try
        {
            var options = OptionsFor(prompt);
            var chat = ChatFor(input);
            var result = RunEngine((events, cancel) =>
                CompletionEngine.Complete(_lease!, prompt, options, ContextOptions, events, cancel, PrefixText, chat), Stream);
            if (Stream) Host.UI.WriteLine();
            WriteShaped(input, result);
        }
        catch (LlmException e)
        {
            WriteLlmError(e);
        }
    }

    /// <summary>Many inputs in flight at once (the engine decodes them together); waits only when BatchSize are.</summary>
    private void AddToPipeline(string input, string prompt)
    {
        var options = OptionsFor(prompt);
        PromptSegments? chat;
        try
        {
            chat = ChatFor(input);
        }
        catch (LlmException e)
        {
            WriteLlmError(e);
            return;
        }
        if (_pipeline is null && _pipelineFailure is null)
        {
            try
            {
                _pipeline = RunEngine((events, _) => new CompletionPipeline(_lease!, options, ContextOptions, BatchSize, PrefixText, events));
            }
            catch (LlmException e)
            {
                _pipelineFailure = e;
            }
        }
        if (_pipelineFailure is not null)
        {
            WriteLlmError(_pipelineFailure);
            return;
        }
        var pipeline = _pipeline!;
        RunEngine((_, cancel) =>
        {
            pipeline.Add(prompt, options, input, cancel, chat);
            return 0;
        });
        WriteReady();
    }

    private void WriteShaped(string input, LlmCompletionResult result)
    {
        var written = ResultFor(input, result);
        try
        {
            var shaped = Shape(written, result.Text, result.StopReason, v =>
            {
                result.Value = v;
                if (written is LlmChatReply reply) reply.Value = v;
            });
            if (shaped is not null) WriteObject(shaped);
        }
        catch (LlmException e)
        {
            WriteLlmError(e);
        }
    }

    /// <summary>Waits for what is in flight and writes it.</summary>
    private void Flush()
    {
        if (_remote is { } remote)
        {
            RunEngine((_, cancel) =>
            {
                remote.WaitAll(cancel);
                return 0;
            });
            WriteReady();
        }
        if (_pipeline is null) return;
        var pipeline = _pipeline;
        RunEngine((_, cancel) =>
        {
            pipeline.WaitAll(cancel);
            return 0;
        });
        WriteReady();
    }

    private void WriteReady()
    {
        WriteQueuedEvents();
        if (_remote is not null)
            foreach (var (state, result, error) in _remote.TakeReady())
            {
                if (error is not null) WriteLlmError(error);
                else if (result!.StopReason != LlmStopReason.Cancelled) WriteShaped((string?)state ?? "", result);
            }
        if (_pipeline is null) return;
        foreach (var output in _pipeline.TakeReady())
        {
            if (output.Error is { } e) WriteLlmError(e);
            else WriteShaped((string?)output.State ?? "", output.Result!);
        }
    }

    private void Release()
    {
        _remote?.Dispose();
        _remote = null;
        _pipeline?.Dispose();
        _pipeline = null;
        _pipelineFailure = null;
        _lease?.Dispose();
        _lease = null;
        _leaseModel = null;
    }
}
