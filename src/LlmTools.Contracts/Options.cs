namespace LlmTools;

/// <summary>
/// Receives what the engine reports while it works. The engine calls it from worker threads; the module queues
/// the calls and replays them on the pipeline thread.
/// </summary>
public interface IEngineEvents
{
    void Progress(string activity, string status, double fraction);
    void Text(string chunk);
    void Verbose(string message);
    void Warning(string message);
    /// <summary>Detail for the Debug stream (llama.cpp's own informational log lines).</summary>
    void Debug(string message) { }
}

/// <summary>An <see cref="IEngineEvents"/> that drops everything.</summary>
public sealed class NullEngineEvents : IEngineEvents
{
    public static readonly NullEngineEvents Instance = new();
    public void Progress(string activity, string status, double fraction) { }
    public void Text(string chunk) { }
    public void Verbose(string message) { }
    public void Warning(string message) { }
}

/// <summary>Options that change the loaded weights; models loaded with different values are cached apart.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Layers to offload to the GPU; null means all when GPU offload is available, else none.</summary>
    public int? GpuLayers { get; init; }
    /// <summary>Load only the tokenizer (no weights): enough to count tokens.</summary>
    public bool VocabularyOnly { get; init; }
}

/// <summary>Options of a context (KV cache); contexts are reused across calls when these match.</summary>
public sealed record ContextOptions
{
    /// <summary>Tokens the context holds (prompt plus generated); null means min(model's trained length, 4096).</summary>
    public int? ContextSize { get; init; }
    /// <summary>CPU threads; null means one per core, as llama.cpp does.</summary>
    public int? Threads { get; init; }
    /// <summary>Tokens decoded per batch while reading the prompt; null means min(context, 2048), as llama.cpp does.</summary>
    public int? BatchSize { get; init; }
}

/// <summary>Why generation ended.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))] // ConvertTo-Json writes the name (JsonShape.cs)
public enum LlmStopReason
{
    /// <summary>The model produced an end-of-generation token.</summary>
    EndOfText,
    /// <summary>MaxTokens new tokens were generated.</summary>
    MaxTokens,
    /// <summary>One of the stop strings appeared; it is not part of the text.</summary>
    StopString,
    /// <summary>The context is full (prompt plus generated tokens reached ContextSize).</summary>
    ContextFull,
    /// <summary>The user stopped it (Ctrl+C).</summary>
    Cancelled,
}

/// <summary>Sampling and length limits of one completion. Every parameter means one thing.</summary>
public sealed record CompletionOptions
{
    public const int DefaultMaxTokens = 256;

    /// <summary>New tokens to generate at most; the prompt never counts.</summary>
    public int MaxTokens { get; init; } = DefaultMaxTokens;
    /// <summary>0 means greedy: always the most likely token.</summary>
    public float Temperature { get; init; } = 0.8f;
    /// <summary>Keep the K most likely tokens; 0 disables.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Keep the most likely tokens whose probabilities add up to P; 1 disables.</summary>
    public float TopP { get; init; } = 0.95f;
    /// <summary>Drop tokens less likely than MinP times the most likely one; 0 disables.</summary>
    public float MinP { get; init; } = 0.05f;
    /// <summary>Penalty on tokens among the last <see cref="RepeatLastN"/>; 1 disables.</summary>
    public float RepeatPenalty { get; init; } = 1.1f;
    public int RepeatLastN { get; init; } = 64;
    /// <summary>OpenAI's frequency_penalty: subtracted from a token's logit once per time it occurs among the last RepeatLastN; 0 disables.</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>OpenAI's presence_penalty: subtracted once from the logit of a token that occurs among the last RepeatLastN; 0 disables.</summary>
    public float PresencePenalty { get; init; }
    /// <summary>Random seed; null picks one, which the result reports so the output can be reproduced.</summary>
    public uint? Seed { get; init; }
    /// <summary>Strings that end generation; they are not included in the text.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Tokens that end generation besides the model's end-of-generation tokens (a chat's end-of-turn marker).</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Whether to put BOS in front; null follows the model's metadata (a rendered chat often has it already).</summary>
    public bool? AddBos { get; init; }
    /// <summary>A GBNF grammar (llama.cpp's format, root rule "root") the generated text must follow; null for none.</summary>
    public string? Grammar { get; init; }

    // The record's own printer shows lists as their runtime type (Stop = <>z__ReadOnlyArray...): print their items.
    private bool PrintMembers(System.Text.StringBuilder b)
    {
        b.Append($"MaxTokens = {MaxTokens}, Temperature = {Temperature}, TopK = {TopK}, TopP = {TopP}, MinP = {MinP}, ");
        b.Append($"RepeatPenalty = {RepeatPenalty}, RepeatLastN = {RepeatLastN}, FrequencyPenalty = {FrequencyPenalty}, PresencePenalty = {PresencePenalty}, Seed = {Seed?.ToString() ?? "none"}, ");
        b.Append($"Stop = [{string.Join(", ", Stop.Select(s => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\""))}], ");
        b.Append($"StopTokenIds = [{string.Join(", ", StopTokenIds)}], AddBos = {AddBos?.ToString() ?? "model's"}, Grammar = {(Grammar is null ? "none" : "set")}");
        return true;
    }
}
