namespace LlmTools;

/// <summary>
/// What a GGUF file is, read from its header without loading weights: the facts a user checks before running it.
/// </summary>
public sealed class LlmModelInfo
{
    public required string Path { get; init; }
    public required string Name { get; init; }
    public required string Architecture { get; init; }
    public required long ParameterCount { get; init; }
    public required long SizeBytes { get; init; }
    /// <summary>Quantization of the file as llama.cpp names it (Q4_K_M, Q8_0, F16, ...).</summary>
    public required string FileType { get; init; }
    public required int ContextLength { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int LayerCount { get; init; }
    public required int VocabularySize { get; init; }
    public required string? TokenizerModel { get; init; }
    public required string? TokenizerPreset { get; init; }
    public required string? BosToken { get; init; }
    public required string? EosToken { get; init; }
    public required bool AddBosToken { get; init; }
    public required string? ChatTemplate { get; init; }
    public bool HasChatTemplate => !string.IsNullOrEmpty(ChatTemplate);
    /// <summary>True for a file with a tokenizer but no weights: it can count tokens but not generate.</summary>
    public required bool IsVocabularyOnly { get; init; }
    public required uint GgufVersion { get; init; }
    public required int TensorCount { get; init; }
    /// <summary>The scalar metadata of the file (arrays such as the vocabulary are left out).</summary>
    public required IReadOnlyDictionary<string, object> Metadata { get; init; }
    /// <summary>For a file in the Hugging Face cache: the Hub reference it was installed with (org/name/file.gguf@commit),
    /// so that Get-LlmModel -ListAvailable | Uninstall-LlmModel works; null elsewhere.</summary>
    public string? HubReference { get; set; }

    public override string ToString() => Path;

}
