using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Finds the items most similar to a query by the cosine similarity of their embeddings: a semantic search over
/// vectors made once with Get-LlmEmbedding. Writes the Top most similar, best first, with their Score and the item.
/// </summary>
/// <remarks>
/// <para>The query and the items are LlmEmbedding objects, arrays of numbers, or objects with a Vector property; with
/// -Model, texts too (embedded in batches). Compare vectors of the same model only.</para>
/// </remarks>
/// <example>
/// <code>$docs = Get-Content notes.txt | Get-LlmEmbedding -Model ./nomic-embed-text.gguf
/// $docs | Find-LlmSimilar 'where did I park?' -Model ./nomic-embed-text.gguf -Top 3</code>
/// <para>The three lines closest in meaning to the question.</para>
/// </example>
/// <example>
/// <code>Get-Content notes.txt | Find-LlmSimilar 'a dog in the park' -Model tinystories -Top 1 | Select-Object Score, Text</code>
/// <para>Embeds the lines and the query with one model and shows the best match.</para>
/// </example>
[Cmdlet(VerbsCommon.Find, "LlmSimilar")]
[OutputType(typeof(LlmSimilarItem))]
public sealed class FindLlmSimilarCommand : LlmCmdlet
{
    /// <summary>What to look for: an embedding, a vector, or a text (with -Model).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public object Query { get; set; } = null!;

    /// <summary>The items to search: embeddings, vectors, objects with a Vector property, or texts (with -Model).</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    public object InputObject { get; set; } = null!;

    /// <summary>How many of the most similar items to write (default 5).</summary>
    [Parameter]
    public int Top { get; set; } = 5;

    /// <summary>The model that embeds texts (a .gguf path, a Hub reference, or tinystories); needed only for texts.</summary>
    [Parameter]
    [Alias("Path", "ModelPath")]
    [ArgumentCompleter(typeof(ModelArgumentCompleter))]
    [ValidateNotNullOrEmpty]
    public string? Model { get; set; }

    private ModelLease? _lease;
    private float[]? _query;
    private string? _queryText;
    private readonly List<(object Item, float[]? Vector, string? Text)> _items = [];

    protected override void BeginProcessing()
    {
        try
        {
            if (Top < 1)
                throw new LlmException("TopOutOfRange", LlmErrorKind.InvalidArgument, $"Top {Top} is out of range: use 1 or more.", Top);
            _query = EmbeddingInput.VectorOf(Query, out _queryText);
            if (_query is null && Model is null)
                throw new LlmException("ModelRequired", LlmErrorKind.InvalidArgument,
                    $"The query '{_queryText}' is a text: give -Model to embed it (the model the items were embedded with).", _queryText);
            if (Model is not null)
            {
                var path = ResolveModelPath(Model);
                _lease = RunEngine((events, cancel) => ModelCache.Instance.Acquire(path, new ModelLoadOptions(), events, cancel));
            }
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }

    protected override void ProcessRecord()
    {
        try
        {
            var vector = EmbeddingInput.VectorOf(InputObject, out var text);
            if (vector is null && _lease is null)
                throw new LlmException("ModelRequired", LlmErrorKind.InvalidArgument,
                    $"The item '{text}' is a text: give -Model to embed it, or pipe embeddings made by Get-LlmEmbedding.", text);
            _items.Add((InputObject, vector, text));
        }
        catch (LlmException e)
        {
            WriteLlmError(e);
        }
    }

    protected override void EndProcessing()
    {
        var texts = _items.Where(i => i.Vector is null).Select(i => i.Text!).ToList();
        if (_query is null) texts.Insert(0, _queryText!);
        Dictionary<string, EmbeddingItem> embedded = [];
        if (texts.Count > 0)
        {
            var distinct = texts.Distinct().ToArray();
            IReadOnlyList<EmbeddingItem> results = [];
            try
            {
                results = RunEngine((events, cancel) => EmbeddingEngine.Embed(_lease!, distinct, new EmbeddingOptions(), new ContextOptions(), events, cancel));
            }
            catch (LlmException e)
            {
                ThrowLlmError(e);
            }
            for (int i = 0; i < distinct.Length; i++) embedded[distinct[i]] = results[i];
        }
        if (_query is null)
        {
            var q = embedded[_queryText!];
            if (q.Error is { } error) ThrowLlmError(error);
            _query = q.Embedding!.Vector;
        }
        var scored = new List<(double Score, object Item, string? Text)>();
        foreach (var (item, vector, text) in _items)
        {
            try
            {
                float[] v = vector ?? (embedded[text!] is { Error: { } e } ? throw e : embedded[text!].Embedding!.Vector);
                scored.Add((EmbeddingEngine.Cosine(_query!, v), item, EmbeddingInput.TextOf(item)));
            }
            catch (LlmException e)
            {
                WriteLlmError(e);
            }
        }
        int rank = 0;
        foreach (var (score, item, text) in scored.OrderByDescending(s => s.Score).Take(Top))
            WriteObject(new LlmSimilarItem { Score = score, Rank = ++rank, Text = text, InputObject = item });
    }

    protected override void DisposeResources() => _lease?.Dispose();
}
