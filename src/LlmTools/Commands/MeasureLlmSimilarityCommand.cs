using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// The cosine similarity of two embeddings: 1 when they point the same way, near 0 when unrelated, -1 when opposite.
/// Each side is an LlmEmbedding, an array of numbers, an object with a Vector property, or (with -Model) a text,
/// which is embedded first. Piped values are each compared with the reference.
/// </summary>
/// <example>
/// <code>Measure-LlmSimilarity 'The dog barked.' 'A dog was barking.' -Model ./nomic-embed-text.gguf</code>
/// <para>How close two sentences are in meaning, as one number.</para>
/// </example>
/// <example>
/// <code>$a, $b = Get-LlmEmbedding 'red apple', 'green apple' -Model tinystories; Measure-LlmSimilarity $a $b</code>
/// <para>Compares two embeddings made earlier; no model is needed.</para>
/// </example>
[Cmdlet(VerbsDiagnostic.Measure, "LlmSimilarity")]
[OutputType(typeof(double))]
public sealed class MeasureLlmSimilarityCommand : LlmCmdlet
{
    /// <summary>The value every other is compared with: an embedding, a vector, or a text (with -Model).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public object Reference { get; set; } = null!;

    /// <summary>The value compared with the reference; every piped value gives one number.</summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true)]
    public object Difference { get; set; } = null!;

    /// <summary>The model that embeds texts (a .gguf path, a Hub reference, or tinystories); needed only when a side is a text.</summary>
    [Parameter]
    [Alias("Path", "ModelPath")]
    [ArgumentCompleter(typeof(ModelArgumentCompleter))]
    [ValidateNotNullOrEmpty]
    public string? Model { get; set; }

    private ModelLease? _lease;
    private float[] _reference = [];

    protected override void BeginProcessing()
    {
        try
        {
            _reference = Vector(Reference);
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
            WriteObject(EmbeddingEngine.Cosine(_reference, Vector(Difference)));
        }
        catch (LlmException e)
        {
            WriteLlmError(e);
        }
    }

    private float[] Vector(object value)
    {
        if (EmbeddingInput.VectorOf(value, out var text) is { } vector) return vector;
        if (Model is null)
            throw new LlmException("ModelRequired", LlmErrorKind.InvalidArgument,
                $"'{text}' is a text: give -Model to embed it, or compare embeddings made by Get-LlmEmbedding.", text);
        if (_lease is null)
        {
            var path = ResolveModelPath(Model);
            _lease = RunEngine((events, cancel) => ModelCache.Instance.Acquire(path, new ModelLoadOptions(), events, cancel));
        }
        var item = RunEngine((events, cancel) => EmbeddingEngine.Embed(_lease, [text!], new EmbeddingOptions(), new ContextOptions(), events, cancel))[0];
        return item.Error is { } error ? throw error : item.Embedding!.Vector;
    }

    protected override void DisposeResources() => _lease?.Dispose();
}
