using System.Text.Json.Serialization;

namespace LlmTools;

/// <summary>One message of a conversation, in the {role, content} form the Hub tools use.</summary>
public sealed class LlmChatMessage
{
    public LlmChatMessage() { }

    public LlmChatMessage(string role, string content)
    {
        Role = role;
        Content = content;
    }

    [JsonPropertyName("role")]
    public string Role { get; set; } = "user";

    [JsonPropertyName("content")]
    public string Content { get; set; } = "";

    public override string ToString() => $"{Role}: {Content}";
}

/// <summary>A chat reply: the assistant's text and how it was produced.</summary>
public sealed class LlmChatReply
{
    public required string Text { get; init; }
    public string Role => "assistant";
    /// <summary>The user's message this answers.</summary>
    public required string Message { get; init; }
    /// <summary>1 for the first exchange of a session, and so on.</summary>
    public required int Turn { get; init; }
    /// <summary>The model's name (general.name); the old name Model is an alias.</summary>
    public required string ModelName { get; init; }
    /// <summary>Tokens of the whole conversation as the model saw it this turn.</summary>
    public required int PromptTokens { get; init; }
    /// <summary>Of those, tokens already in the KV cache from earlier turns (not evaluated again).</summary>
    public required int CachedPromptTokens { get; init; }
    public required int CompletionTokens { get; init; }
    public required LlmStopReason StopReason { get; init; }
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as LoadDurationMs (JsonShape.cs)
    public required TimeSpan LoadDuration { get; init; }
    /// <summary>LoadDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double LoadDurationMs => JsonShape.Milliseconds(LoadDuration);
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as TimeToFirstTokenMs (JsonShape.cs)
    public required TimeSpan TimeToFirstToken { get; init; }
    /// <summary>TimeToFirstToken in milliseconds: what ConvertTo-Json writes.</summary>
    public double TimeToFirstTokenMs => JsonShape.Milliseconds(TimeToFirstToken);
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as TotalDurationMs (JsonShape.cs)
    public required TimeSpan TotalDuration { get; init; }
    /// <summary>TotalDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double TotalDurationMs => JsonShape.Milliseconds(TotalDuration);
    public required double PromptTokensPerSecond { get; init; }
    public required double TokensPerSecond { get; init; }
    public required uint? Seed { get; init; }
    /// <summary>The stop string that ended the reply, when StopReason is StopString (the end-of-turn marker never is one).</summary>
    public string? StopString { get; init; }
    public string ModelPath { get; init; } = "";
    public int ContextSize { get; init; }
    public int Threads { get; init; }
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as PromptDurationMs (JsonShape.cs)
    public TimeSpan PromptDuration { get; init; }
    /// <summary>PromptDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double PromptDurationMs => JsonShape.Milliseconds(PromptDuration);
    [Newtonsoft.Json.JsonIgnore, System.Management.Automation.Hidden] // serialised as GenerationDurationMs (JsonShape.cs)
    public TimeSpan GenerationDuration { get; init; }
    /// <summary>GenerationDuration in milliseconds: what ConvertTo-Json writes.</summary>
    public double GenerationDurationMs => JsonShape.Milliseconds(GenerationDuration);

    /// <summary>With -JsonSchema: the reply parsed as JSON (as ConvertFrom-Json gives it); null otherwise.</summary>
    public object? Value { get; set; }

    /// <summary>The reply made from a completion of the rendered conversation: the one place both are built from.</summary>
    public static LlmChatReply From(LlmCompletionResult r, string message, int turn, string? text = null) => new()
    {
        Text = text ?? r.Text,
        Message = message,
        Turn = turn,
        ModelName = r.ModelName,
        ModelPath = r.ModelPath,
        PromptTokens = r.PromptTokens,
        CachedPromptTokens = r.CachedPromptTokens,
        CompletionTokens = r.CompletionTokens,
        StopReason = r.StopReason,
        StopString = r.StopString,
        LoadDuration = r.LoadDuration,
        PromptDuration = r.PromptDuration,
        TimeToFirstToken = r.TimeToFirstToken,
        GenerationDuration = r.GenerationDuration,
        TotalDuration = r.TotalDuration,
        PromptTokensPerSecond = r.PromptTokensPerSecond,
        TokensPerSecond = r.TokensPerSecond,
        Seed = r.Seed,
        ContextSize = r.ContextSize,
        Threads = r.Threads,
        Value = r.Value,
    };

    public override string ToString() => Text;
}
