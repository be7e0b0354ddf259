namespace LlmTools;

/// <summary>The result of one completion: the continuation and how it was produced.</summary>
public sealed class LlmCompletionResult
{
    /// <summary>The exact continuation, never trimmed: Prefix + Prompt + Text is the whole document.</summary>
    public required string Text { get; init; }
    public required string Prompt { get; init; }
    /// <summary>Text put in front of every prompt of the call (-Prefix); empty when none.</summary>
    public string Prefix { get; init; } = "";
    /// <summary>The model's name (general.name); the old name Model is an alias.</summary>
    public required string ModelName { get; init; }
    public required string ModelPath { get; init; }
    /// <summary>Tokens in the prefix and prompt (including BOS when the model adds it).</summary>
    public required int PromptTokens { get; init; }
    /// <summary>Prompt tokens whose KV state was reused (a prefix shared with an earlier prompt), not evaluated again.</summary>
    public required int CachedPromptTokens { get; init; }
    public required int CompletionTokens { get; init; }
    public required LlmStopReason StopReason { get; init; }
    /// <summary>The stop string that ended generation, when StopReason is StopString.</summary>
    public string? StopString { get; init; }
    /// <summary>Time spent loading the model for this call; zero when it came from the session cache.</summary>
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as LoadDurationMs (JsonShape.cs)
    public required TimeSpan LoadDuration { get; init; }
    /// <summary>LoadDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double LoadDurationMs => JsonShape.Milliseconds(LoadDuration);
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as PromptDurationMs (JsonShape.cs)
    public required TimeSpan PromptDuration { get; init; }
    /// <summary>PromptDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double PromptDurationMs => JsonShape.Milliseconds(PromptDuration);
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as TimeToFirstTokenMs (JsonShape.cs)
    public required TimeSpan TimeToFirstToken { get; init; }
    /// <summary>TimeToFirstToken in milliseconds: what ConvertTo-Json writes.</summary>
    public double TimeToFirstTokenMs => JsonShape.Milliseconds(TimeToFirstToken);
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as GenerationDurationMs (JsonShape.cs)
    public required TimeSpan GenerationDuration { get; init; }
    /// <summary>GenerationDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double GenerationDurationMs => JsonShape.Milliseconds(GenerationDuration);
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as TotalDurationMs (JsonShape.cs)
    public required TimeSpan TotalDuration { get; init; }
    /// <summary>TotalDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double TotalDurationMs => JsonShape.Milliseconds(TotalDuration);
    /// <summary>Prompt tokens evaluated per second (cached ones excluded).</summary>
    public required double PromptTokensPerSecond { get; init; }
    /// <summary>Generated tokens per second.</summary>
    public required double TokensPerSecond { get; init; }
    /// <summary>The sampling seed; null for greedy decoding (Temperature 0), which uses none.</summary>
    public required uint? Seed { get; init; }
    public required int ContextSize { get; init; }
    public required int Threads { get; init; }
    /// <summary>With -JsonSchema: the text parsed as JSON (as ConvertFrom-Json gives it); null otherwise.</summary>
    public object? Value { get; set; }

    public override string ToString() => Text;
}

/// <summary>Tokens of a text under a model's tokenizer.</summary>
public sealed class LlmTokenization
{
    public required string Text { get; init; }
    /// <summary>The model's name (general.name); the old name Model is an alias.</summary>
    public required string ModelName { get; init; }
    public required int Count { get; init; }
    public required int[] Ids { get; init; }
    public required string[] Pieces { get; init; }
    /// <summary>The model's trained context length, to compare Count against.</summary>
    public required int ContextLength { get; init; }
}

/// <summary>A model held in the session cache.</summary>
public sealed class LlmLoadedModel
{
    public required string Path { get; init; }
    public required string Name { get; init; }
    public required string Architecture { get; init; }
    public required string FileType { get; init; }
    public required long ParameterCount { get; init; }
    public required long SizeBytes { get; init; }
    public required int ContextLength { get; init; }
    public required bool HasChatTemplate { get; init; }
    public required string? ChatTemplate { get; init; }
    /// <summary>True for a tokenizer-only load (no weights); the old name VocabularyOnly is an alias.</summary>
    public required bool IsVocabularyOnly { get; init; }
    public required int GpuLayers { get; init; }
    public required DateTime LoadedAt { get; init; }
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as LoadDurationMs (JsonShape.cs)
    public required TimeSpan LoadDuration { get; init; }
    /// <summary>LoadDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double LoadDurationMs => JsonShape.Milliseconds(LoadDuration);
    /// <summary>Contexts (KV caches) held: one, shared by every caller, once the model has generated.</summary>
    public required int Contexts { get; init; }
    /// <summary>Tokens one sequence of that context may hold (0 before the first generation).</summary>
    public int ContextSize { get; init; }
    /// <summary>Bytes of the KV cache held now.</summary>
    public long KvCacheBytes { get; init; }
    /// <summary>Calls and chat sessions using the model now.</summary>
    public required int ActiveCalls { get; init; }
    /// <summary>Loaded, or Unloading: removed, and freed once the calls and chat sessions using it end.</summary>
    public string Status { get; init; } = "Loaded";
    public required LlmModelInfo Info { get; init; }

    public override string ToString() => Path;
}
