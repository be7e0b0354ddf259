using Microsoft.Extensions.AI;

namespace LlmTools.Interop;

/// <summary>
/// A model of the session cache as Microsoft.Extensions.AI's <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/>, so
/// .NET applications, Semantic Kernel and vector-store code can embed with it (and wrap it with
/// EmbeddingGeneratorBuilder). Just another caller of <see cref="EmbeddingEngine.Embed"/>: the vectors Get-LlmEmbedding
/// gives, the values of one call decoded together.
/// </summary>
public sealed class LlmEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly ModelLease _lease;
    private readonly EmbeddingOptions _options;
    private readonly ContextOptions _context;
    private int _disposed;

    /// <summary>Loads <paramref name="modelPath"/> through the session cache (or finds it there); dispose to release it.</summary>
    /// <param name="options">Pooling, normalization (default L2), truncation and batch size, as Get-LlmEmbedding's parameters.</param>
    public LlmEmbeddingGenerator(string modelPath, EmbeddingOptions? options = null, ContextOptions? contextOptions = null, ModelLoadOptions? loadOptions = null)
    {
        _lease = ModelCache.Instance.Acquire(modelPath, loadOptions ?? new ModelLoadOptions(), NullEngineEvents.Instance, default);
        try
        {
            _options = options ?? new EmbeddingOptions();
            _context = contextOptions ?? new ContextOptions();
            // Wrong for every input (a vocabulary-only file, bad options): fail here, not at the first call.
            EmbeddingEngine.Embed(_lease, [], _options, _context, NullEngineEvents.Instance, default);
            int dimensions = (_options.Pooling ?? EmbeddingEngine.DefaultPooling(_lease.Info)) == LlmPooling.Rank ? 0 : _lease.Info.EmbeddingLength;
            Metadata = new EmbeddingGeneratorMetadata("LlmTools", null, _lease.Info.Name, dimensions > 0 ? dimensions : null);
        }
        catch
        {
            _lease.Dispose();
            throw;
        }
    }

    public EmbeddingGeneratorMetadata Metadata { get; }

    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed == 1, this);
        ArgumentNullException.ThrowIfNull(values);
        var texts = values.ToList();
        var items = await Task.Factory.StartNew(
            () => EmbeddingEngine.Embed(_lease, texts, _options, _context, NullEngineEvents.Instance, cancellationToken),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        cancellationToken.ThrowIfCancellationRequested();
        // One result per value or none: a text that cannot be embedded (too long, say) fails the call, as OpenAI's does.
        if (items.FirstOrDefault(i => i.Error is not null).Error is { } error) throw error;
        int dims = items.Count > 0 ? items[0].Embedding!.Dimensions : 0;
        if (options?.Dimensions is { } wanted && wanted != dims && items.Count > 0)
            throw new LlmException("EmbeddingDimensionsNotSupported", LlmErrorKind.NotImplemented,
                $"Dimensions {wanted} is not supported: '{_lease.Info.Name}' gives {dims}-dimensional vectors.", wanted);
        var now = DateTimeOffset.UtcNow;
        int tokens = items.Sum(i => i.Embedding!.TokenCount);
        return new GeneratedEmbeddings<Embedding<float>>(items.Select(i => new Embedding<float>(i.Embedding!.Vector)
        {
            ModelId = _lease.Info.Name,
            CreatedAt = now,
        }))
        {
            Usage = new UsageDetails { InputTokenCount = tokens, TotalTokenCount = tokens },
        };
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(EmbeddingGeneratorMetadata) ? Metadata
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _lease.Dispose();
    }
}
