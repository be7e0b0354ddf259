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

    /// <summary>An assistant message's tool calls (OpenAI's tool_calls); null when it called none.</summary>
    [JsonPropertyName("tool_calls")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public List<LlmToolCall>? ToolCalls { get; set; }

    /// <summary>A tool message's call id: which call this is the result of.</summary>
    [JsonPropertyName("tool_call_id")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ToolCallId { get; set; }

    /// <summary>A tool message's tool name.</summary>
    [JsonPropertyName("name")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Name { get; set; }

    public override string ToString() => ToolCalls is { Count: > 0 } calls
        ? $"{Role}: {Content}{(Content.Length > 0 ? " " : "")}[{string.Join(", ", calls)}]"
        : $"{Role}: {Content}";
}

/// <summary>
/// A tool call the model made: the tool's name, its arguments, and an id that the tool's result message quotes.
/// Saved in OpenAI's shape: {"id", "type": "function", "function": {"name", "arguments": "&lt;JSON text&gt;"}}.
/// </summary>
[JsonConverter(typeof(LlmToolCallJsonConverter))]
public sealed class LlmToolCall
{
    public LlmToolCall(string id, string name, string argumentsJson)
    {
        Id = id;
        Name = name;
        ArgumentsJson = argumentsJson;
    }

    public string Id { get; }
    public string Name { get; }
    /// <summary>The arguments as the model wrote them (a JSON object).</summary>
    public string ArgumentsJson { get; }

    /// <summary>
    /// The arguments as an ordered dictionary (nested objects too; arrays as object[]; integers as Int64), ready to
    /// splat into a command. Empty when the JSON is not an object.
    /// </summary>
    public System.Collections.Specialized.OrderedDictionary Arguments => _arguments ??= ReadArguments(ArgumentsJson);
    private System.Collections.Specialized.OrderedDictionary? _arguments;

    private static System.Collections.Specialized.OrderedDictionary ReadArguments(string json)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(json);
            return doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                ? (System.Collections.Specialized.OrderedDictionary)Plain(doc.RootElement)!
                : new();
        }
        catch (System.Text.Json.JsonException)
        {
            return new();
        }
    }

    private static object? Plain(System.Text.Json.JsonElement e)
    {
        switch (e.ValueKind)
        {
            case System.Text.Json.JsonValueKind.Object:
                var d = new System.Collections.Specialized.OrderedDictionary(StringComparer.OrdinalIgnoreCase);
                foreach (var p in e.EnumerateObject()) d[p.Name] = Plain(p.Value);
                return d;
            case System.Text.Json.JsonValueKind.Array: return e.EnumerateArray().Select(Plain).ToArray();
            case System.Text.Json.JsonValueKind.String: return e.GetString();
            case System.Text.Json.JsonValueKind.Number: return e.TryGetInt64(out long l) ? (object)l : e.GetDouble();
            case System.Text.Json.JsonValueKind.True: return true;
            case System.Text.Json.JsonValueKind.False: return false;
            default: return null;
        }
    }

    public override string ToString() => $"{Name}({ArgumentsJson})";
}

/// <summary>Reads and writes <see cref="LlmToolCall"/> in OpenAI's shape; arguments may be a JSON string or an object.</summary>
public sealed class LlmToolCallJsonConverter : JsonConverter<LlmToolCall>
{
    public override LlmToolCall Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options)
    {
        using var doc = System.Text.Json.JsonDocument.ParseValue(ref reader);
        var e = doc.RootElement;
        if (e.ValueKind != System.Text.Json.JsonValueKind.Object) throw new System.Text.Json.JsonException("A tool call is an object.");
        string id = e.TryGetProperty("id", out var i) && i.ValueKind == System.Text.Json.JsonValueKind.String ? i.GetString()! : "";
        var f = e.TryGetProperty("function", out var fn) && fn.ValueKind == System.Text.Json.JsonValueKind.Object ? fn : e;
        if (!f.TryGetProperty("name", out var n) || n.ValueKind != System.Text.Json.JsonValueKind.String)
            throw new System.Text.Json.JsonException("A tool call needs a function name.");
        string args = "{}";
        if (f.TryGetProperty("arguments", out var a))
            args = a.ValueKind == System.Text.Json.JsonValueKind.String ? a.GetString()! : a.GetRawText();
        return new LlmToolCall(id, n.GetString()!, args);
    }

    public override void Write(System.Text.Json.Utf8JsonWriter writer, LlmToolCall value, System.Text.Json.JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        writer.WriteString("id", value.Id);
        writer.WriteString("type", "function");
        writer.WriteStartObject("function");
        writer.WriteString("name", value.Name);
        writer.WriteString("arguments", value.ArgumentsJson);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }
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

    /// <summary>The tools the model called in this reply (empty when it answered in text); Text is what it wrote besides.</summary>
    public IReadOnlyList<LlmToolCall> ToolCalls { get; init; } = [];

    /// <summary>With -InvokeTools: the tool calls run and their results, in order, over every round of this turn.</summary>
    public IReadOnlyList<LlmToolResult> ToolResults { get; set; } = [];

    /// <summary>The reply made from a completion of the rendered conversation: the one place both are built from.</summary>
    public static LlmChatReply From(LlmCompletionResult r, string message, int turn, string? text = null, IReadOnlyList<LlmToolCall>? toolCalls = null) => new()
    {
        ToolCalls = toolCalls ?? [],
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

/// <summary>A tool call that was run (or refused, or failed), and what was sent back to the model.</summary>
public sealed class LlmToolResult
{
    public required LlmToolCall Call { get; init; }
    public string Name => Call.Name;
    /// <summary>The text the model was given as the tool's result (an error text when it failed).</summary>
    public required string Content { get; init; }
    /// <summary>False when the tool threw, was unknown, or was declined (-WhatIf, a "No" at the confirmation).</summary>
    public required bool Succeeded { get; init; }
    /// <summary>The objects the tool wrote, as it wrote them; empty when it did not run.</summary>
    public object?[] Output { get; init; } = [];

    public override string ToString() => $"{Call} -> {Content}";
}
