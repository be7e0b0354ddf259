using System.Management.Automation;
using System.Security;
using LlmTools.Engine.Remote;

namespace LlmTools.Commands;

/// <summary>
/// Turns texts into embedding vectors with a local GGUF model, or an OpenAI-compatible server's (-Endpoint): one object per input, in input order, each with its
/// Vector (L2-normalized by default, so the dot product of two vectors is their cosine similarity). Piped texts are
/// decoded together, several per batch; the model and its embeddings context stay loaded for the next call.
/// </summary>
/// <remarks>
/// <para>A text longer than the context (ContextSize) is an error for that text naming both numbers, never a silent
/// truncation; -Truncate embeds only its first ContextSize tokens. The other texts go on.</para>
/// <para>Pooling follows the model's own pooling_type (embedding models set it), else Mean. A generative model such
/// as stories260K gives vectors too, though a model trained for embeddings gives far better ones.</para>
/// <para>With -Endpoint (or Connect-LlmEndpoint) the texts go to the server's /v1/embeddings, BatchSize texts per
/// request and at most ThrottleLimit requests at once, retried on 429/503 (after Retry-After). -Model is then the
/// server's model name. TokenCount comes from the server's usage (per text from LlmTools' own server; from others only
/// when a request held one text, else 0); Pooling is Unknown unless the server says.</para>
/// </remarks>
/// <example>
/// <code>Get-LlmEmbedding 'The cat sat on the mat.' -Model ./nomic-embed-text.gguf | Select-Object Dimensions, TokenCount</code>
/// <para>The vector of one text, and how long it is.</para>
/// </example>
/// <example>
/// <code>$docs = Get-Content notes.txt | Get-LlmEmbedding -Model tinystories; $docs | Export-Clixml notes.embeddings.xml</code>
/// <para>Embeds every line (decoded 32 at a time) and saves the vectors for later searches with Find-LlmSimilar.</para>
/// </example>
/// <example>
/// <code>Get-Content notes.txt | Get-LlmEmbedding -Endpoint http://127.0.0.1:8080/v1 -Model nomic-embed-text -BatchSize 64 -ThrottleLimit 4</code>
/// <para>Embeds every line on a server: 64 lines per request, four requests at once; the vectors come back in input order.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "LlmEmbedding")]
[OutputType(typeof(LlmEmbedding))]
public sealed class GetLlmEmbeddingCommand : LlmCmdlet
{
    /// <summary>The text to embed; every element (and every piped string, or Text property) gives one vector.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [AllowEmptyString]
    public string[] Text { get; set; } = [];

    /// <summary>
    /// A .gguf file (relative paths resolve from the current location) or a Hub reference (org/name, org/name:Q8_0),
    /// installed on first use; or tinystories, the small story model shipped with the module.
    /// </summary>
    [Parameter(Mandatory = true, Position = 1)]
    [Alias("Path", "ModelPath")]
    [ArgumentCompleter(typeof(ModelArgumentCompleter))]
    [ValidateNotNullOrEmpty]
    public string Model { get; set; } = "";

    /// <summary>How token vectors become one: Mean, Cls (first token), Last, or Rank (a reranker's scores). Default: the model's pooling_type, else Mean.</summary>
    [Parameter]
    public LlmPooling Pooling { get; set; } = LlmPooling.Mean;

    /// <summary>L2 scales every vector to length 1, as llama.cpp and Ollama do; None leaves it as the model gives it. Default L2 (None for Rank).</summary>
    [Parameter]
    public LlmNormalize Normalize { get; set; } = LlmNormalize.L2;

    /// <summary>Embed only the first ContextSize tokens of a longer text (the result says Truncated) instead of an error.</summary>
    [Parameter]
    public SwitchParameter Truncate { get; set; }

    /// <summary>Texts decoded together in one batch, 1 to 256 (default 32; 1 decodes them one at a time). Vectors equal one-at-a-time ones.</summary>
    [Parameter]
    public int BatchSize { get; set; } = EmbeddingOptions.DefaultBatchSize;

    /// <summary>Most tokens of one text, and of one batch of texts; default min(trained length, 2048).</summary>
    [Parameter]
    public int ContextSize { get; set; }

    /// <summary>CPU threads; default one per core, as llama.cpp.</summary>
    [Parameter]
    public int Threads { get; set; }

    /// <summary>
    /// An OpenAI-compatible server's base URL (e.g. http://127.0.0.1:8080/v1): the texts go to its /v1/embeddings and
    /// -Model names one of its models. Without it, the endpoint of Connect-LlmEndpoint, if any; else the model runs locally.
    /// </summary>
    [Parameter]
    public Uri? Endpoint { get; set; }

    /// <summary>The key for -Endpoint, sent as a bearer token. Default: Connect-LlmEndpoint's key for that endpoint, else OPENAI_API_KEY.</summary>
    [Parameter]
    public SecureString? ApiKey { get; set; }

    /// <summary>With an endpoint: requests in flight at once, 1 to 64 (default 4), each of BatchSize texts. Results keep the input order.</summary>
    [Parameter]
    public int ThrottleLimit { get; set; } = 4;

    /// <summary>With an endpoint: seconds one request may take before it is an error (RemoteTimeout). Default 300.</summary>
    [Parameter]
    public int TimeoutSec { get; set; } = 300;

    /// <summary>Parameters of local models only: with an endpoint they are an error, never silently ignored.</summary>
    private static readonly string[] LocalOnly = [nameof(Pooling), nameof(Normalize), nameof(Truncate), nameof(ContextSize), nameof(Threads)];

    private RemoteEndpoint? _endpoint;
    private RemoteOptions _remoteOptions = new();
    private RemotePipeline<IReadOnlyList<EmbeddingItem>>? _remote;

    private ModelLease? _lease;
    private EmbeddingOptions _options = new();
    private ContextOptions _context = new();
    private readonly List<string> _pending = [];

    protected override void BeginProcessing()
    {
        var bound = MyInvocation.BoundParameters;
        if (bound.ContainsKey(nameof(ContextSize)) && (ContextSize < 16 || ContextSize > 1 << 20))
            ThrowLlmError(new LlmException("ContextSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"ContextSize {ContextSize} is out of range: use 16 to {1 << 20} tokens.", ContextSize));
        if (bound.ContainsKey(nameof(Threads)) && (Threads < 1 || Threads > 1024))
            ThrowLlmError(new LlmException("ThreadsOutOfRange", LlmErrorKind.InvalidArgument, $"Threads {Threads} is out of range: use 1 to 1024.", Threads));
        if (BatchSize is < 1 or > EmbeddingOptions.MaxBatchSize)
            ThrowLlmError(new LlmException("BatchSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"BatchSize {BatchSize} is out of range: use 1 to {EmbeddingOptions.MaxBatchSize} texts decoded together.", BatchSize));
        _options = new EmbeddingOptions
        {
            Pooling = bound.ContainsKey(nameof(Pooling)) ? Pooling : null,
            Normalize = bound.ContainsKey(nameof(Normalize)) ? Normalize : null,
            Truncate = Truncate,
            BatchSize = BatchSize,
        };
        _context = new ContextOptions
        {
            ContextSize = bound.ContainsKey(nameof(ContextSize)) ? ContextSize : null,
            Threads = bound.ContainsKey(nameof(Threads)) ? Threads : null,
        };
        try
        {
            if (bound.ContainsKey(nameof(Pooling)) && Pooling == LlmPooling.Unknown)
                throw new LlmException("PoolingOutOfRange", LlmErrorKind.InvalidArgument, "Pooling Unknown is not a way to pool: use Mean, Cls, Last or Rank.", Pooling);
            string? key = ApiKey is null ? null : new System.Net.NetworkCredential("", ApiKey).Password;
            _endpoint = RemoteSession.Resolve(Endpoint, key);
            if (_endpoint is null && bound.ContainsKey(nameof(ApiKey)))
                throw new LlmException("ApiKeyNeedsEndpoint", LlmErrorKind.InvalidArgument, "-ApiKey is for a server: give -Endpoint too (or Connect-LlmEndpoint).");
            if (_endpoint is not null)
            {
                if (LocalOnly.FirstOrDefault(bound.ContainsKey) is { } local)
                    throw new LlmException("RemoteOptionNotSupported", LlmErrorKind.InvalidArgument,
                        $"-{local} applies to local models only; the server at {_endpoint.Url} decides it (leave it out, or run the model locally).", local);
                if (ThrottleLimit is < 1 or > 64)
                    throw new LlmException("ThrottleLimitOutOfRange", LlmErrorKind.InvalidArgument,
                        $"ThrottleLimit {ThrottleLimit} is out of range: use 1 to 64 requests in flight.", ThrottleLimit);
                if (TimeoutSec is < 1 or > 86400)
                    throw new LlmException("TimeoutOutOfRange", LlmErrorKind.InvalidArgument, $"TimeoutSec {TimeoutSec} is out of range: use 1 to 86400.", TimeoutSec);
                _remoteOptions = new RemoteOptions { Timeout = TimeSpan.FromSeconds(TimeoutSec) };
                return;
            }
            var path = ResolveModelPath(Model);
            _lease = RunEngine((events, cancel) => ModelCache.Instance.Acquire(path, new ModelLoadOptions(), events, cancel));
            // Wrong for every input (a vocabulary-only file, Rank without a classifier): end the call before any text.
            RunEngine((events, cancel) => EmbeddingEngine.Embed(_lease, [], _options, _context, events, cancel));
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }

    protected override void ProcessRecord()
    {
        foreach (var t in Text)
        {
            _pending.Add(t ?? "");
            if (_pending.Count >= BatchSize) Flush();
        }
    }

    protected override void EndProcessing()
    {
        Flush();
        if (_remote is { } remote)
        {
            RunEngine((_, cancel) =>
            {
                remote.WaitAll(cancel);
                return 0;
            });
            WriteReady();
        }
    }

    private void Flush()
    {
        if (_pending.Count == 0) return;
        var texts = _pending.ToArray();
        _pending.Clear();
        if (_endpoint is { } endpoint)
        {
            // A request of BatchSize texts, ThrottleLimit in flight: waits here only while all are.
            var pipeline = _remote ??= new RemotePipeline<IReadOnlyList<EmbeddingItem>>(ThrottleLimit);
            var pump = EngineEvents;
            string model = Model;
            var options = _remoteOptions;
            RunEngine((_, cancel) =>
            {
                pipeline.Add(token => OpenAiClient.Embed(endpoint, model, texts, options, pump, token), texts, cancel);
                return 0;
            });
            WriteReady();
            return;
        }
        IReadOnlyList<EmbeddingItem> items;
        try
        {
            items = RunEngine((events, cancel) => EmbeddingEngine.Embed(_lease!, texts, _options, _context, events, cancel));
        }
        catch (OperationCanceledException)
        {
            return; // Ctrl+C: the pipeline is stopping
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
            return;
        }
        foreach (var item in items)
        {
            if (item.Error is { } error) WriteLlmError(error);
            else WriteObject(item.Embedding);
        }
    }

    /// <summary>The remote requests done at the head of the queue, in input order; a failed request fails each of its texts.</summary>
    private void WriteReady()
    {
        WriteQueuedEvents();
        if (_remote is null) return;
        foreach (var (state, items, error) in _remote.TakeReady())
        {
            if (Cancellation.IsCancellationRequested) return;
            if (error is not null)
            {
                foreach (var _ in (string[])state!) WriteLlmError(error);
                continue;
            }
            foreach (var item in items!)
            {
                if (item.Error is { } e) WriteLlmError(e);
                else WriteObject(item.Embedding);
            }
        }
    }

    protected override void DisposeResources()
    {
        _remote?.Dispose();
        _remote = null;
        _lease?.Dispose();
    }
}
