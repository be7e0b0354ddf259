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
    public required string Model { get; init; }
    /// <summary>Tokens of the whole conversation as the model saw it this turn.</summary>
    public required int PromptTokens { get; init; }
    /// <summary>Of those, tokens already in the KV cache from earlier turns (not evaluated again).</summary>
    public required int CachedPromptTokens { get; init; }
    public required int CompletionTokens { get; init; }
    public required LlmStopReason StopReason { get; init; }
    public required TimeSpan LoadDuration { get; init; }
    public required TimeSpan TimeToFirstToken { get; init; }
    public required TimeSpan TotalDuration { get; init; }
    public required double PromptTokensPerSecond { get; init; }
    public required double TokensPerSecond { get; init; }
    public required uint? Seed { get; init; }

    public override string ToString() => Text;
}
