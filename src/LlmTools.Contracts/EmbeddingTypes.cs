namespace LlmTools;

/// <summary>How the vectors of a text's tokens become one vector (llama.cpp's llama_pooling_type, less None).</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))] // ConvertTo-Json writes the name (JsonShape.cs)
public enum LlmPooling
{
    /// <summary>Not known: a remote server that does not say how it pools (only in results, never an option).</summary>
    Unknown = 0,
    /// <summary>The average of every token's vector.</summary>
    Mean = 1,
    /// <summary>The vector of the first token (BERT's [CLS]).</summary>
    Cls = 2,
    /// <summary>The vector of the last token (decoder-only embedding models).</summary>
    Last = 3,
    /// <summary>The model's classification head on the first token: reranker scores, one per label.</summary>
    Rank = 4,
}

/// <summary>How a vector is scaled after pooling.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))] // ConvertTo-Json writes the name (JsonShape.cs)
public enum LlmNormalize
{
    /// <summary>Left as the model gives it.</summary>
    None = 0,
    /// <summary>Divided by its Euclidean length (length 1), as llama.cpp and Ollama do: cosine is then a dot product.</summary>
    L2 = 2,
}

/// <summary>Options of an embeddings call.</summary>
public sealed record EmbeddingOptions
{
    /// <summary>Null: the model's {arch}.pooling_type metadata, else Mean.</summary>
    public LlmPooling? Pooling { get; init; }
    /// <summary>Null: L2 (None for Rank, whose scores are not directions).</summary>
    public LlmNormalize? Normalize { get; init; }
    /// <summary>Embed only the first ContextSize tokens of a longer text instead of failing.</summary>
    public bool Truncate { get; init; }
    /// <summary>Texts decoded together in one batch (llama.cpp sequences); 1 decodes them one at a time.</summary>
    public int BatchSize { get; init; } = DefaultBatchSize;

    public const int DefaultBatchSize = 32;
    /// <summary>llama.cpp's LLAMA_MAX_SEQ.</summary>
    public const int MaxBatchSize = 256;
}

/// <summary>The embedding of one text: a vector whose direction stands for its meaning.</summary>
public sealed class LlmEmbedding
{
    public required string Text { get; init; }
    public required float[] Vector { get; init; }
    /// <summary>Length of Vector: the model's embedding length (for Rank pooling, its number of labels).</summary>
    public int Dimensions => Vector.Length;
    /// <summary>Tokens embedded (after -Truncate), including the BOS/EOS tokens the model adds.</summary>
    public required int TokenCount { get; init; }
    /// <summary>True when the text was longer than the context and only its first TokenCount tokens were embedded.</summary>
    public bool Truncated { get; init; }
    public required string Model { get; init; }
    public required LlmPooling Pooling { get; init; }
    public required LlmNormalize Normalize { get; init; }

    public override string ToString() => Text;
}

/// <summary>An item found by Find-LlmSimilar, with its cosine similarity to the query.</summary>
public sealed class LlmSimilarItem
{
    /// <summary>Cosine similarity to the query: 1 same direction, 0 unrelated, -1 opposite.</summary>
    public required double Score { get; init; }
    /// <summary>1 for the most similar item.</summary>
    public required int Rank { get; init; }
    /// <summary>The item's Text property, when it has one.</summary>
    public string? Text { get; init; }
    /// <summary>The item as it was given.</summary>
    public required object InputObject { get; init; }

    public override string ToString() => Text ?? InputObject.ToString() ?? "";
}
