using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Turns texts into embedding vectors with a local GGUF model: one object per input, in input order, each with its
/// Vector (L2-normalized by default, so the dot product of two vectors is their cosine similarity). Piped texts are
/// decoded together, several per batch; the model and its embeddings context stay loaded for the next call.
/// </summary>
/// <remarks>
/// <para>A text longer than the context (ContextSize) is an error for that text naming both numbers, never a silent
/// truncation; -Truncate embeds only its first ContextSize tokens. The other texts go on.</para>
/// <para>Pooling follows the model's own pooling_type (embedding models set it), else Mean. A generative model such
/// as stories260K gives vectors too, though a model trained for embeddings gives far better ones.</para>
/// </remarks>
/// <example>
/// <code>Get-LlmEmbedding 'The cat sat on the mat.' -Model ./nomic-embed-text.gguf | Select-Object Dimensions, TokenCount</code>
/// <para>The vector of one text, and how long it is.</para>
/// </example>
/// <example>
/// <code>$docs = Get-Content notes.txt | Get-LlmEmbedding -Model tinystories; $docs | Export-Clixml notes.embeddings.xml</code>
/// <para>Embeds every line (decoded 32 at a time) and saves the vectors for later searches with Find-LlmSimilar.</para>
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

    protected override void EndProcessing() => Flush();

    private void Flush()
    {
        if (_pending.Count == 0) return;
        var texts = _pending.ToArray();
        _pending.Clear();
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

    protected override void DisposeResources() => _lease?.Dispose();
}
