using System.Text.Json;

namespace LlmTools.Engine;

/// <summary>
/// The messages of a conversation, shared by local and remote chat sessions: the system prompt kept first, the oldest
/// exchange dropped on request, and the [{"role", "content"}] JSON the Hub tools use.
/// </summary>
internal sealed class ChatHistory
{
    private readonly List<LlmChatMessage> _messages = [];

    public List<LlmChatMessage> Messages => _messages;

    /// <summary>Exchanges so far (user messages answered; tool-call rounds within one answer count once).</summary>
    public int Turns
    {
        get
        {
            int turns = 0;
            bool pending = true; // an assistant message before any user message (a loaded history) counts too
            foreach (var m in _messages)
            {
                if (m.Role == "user") pending = true;
                else if (m.Role == "assistant" && pending)
                {
                    turns++;
                    pending = false;
                }
            }
            return turns;
        }
    }

    public string? SystemPrompt
    {
        get => _messages.FirstOrDefault(m => m.Role == "system")?.Content;
        set
        {
            _messages.RemoveAll(m => m.Role == "system");
            if (!string.IsNullOrEmpty(value)) _messages.Insert(0, new LlmChatMessage("system", value));
        }
    }

    /// <summary>Drops the oldest user message and the replies after it (the system prompt stays). False when nothing can go.</summary>
    /// <param name="keepLastUser">While answering, the newest user message is the one being answered: it stays.</param>
    public bool TrimOldest(bool keepLastUser)
    {
        int first = _messages.FindIndex(m => m.Role != "system");
        int limit = keepLastUser ? _messages.FindLastIndex(m => m.Role == "user") : _messages.Count;
        if (first < 0 || first >= limit) return false;
        int next = _messages.FindIndex(first + 1, m => m.Role == "user");
        if (next < 0 || next > limit) next = limit;
        _messages.RemoveRange(first, next - first);
        return true;
    }

    /// <summary>Forgets the conversation; the system prompt stays.</summary>
    public void ClearKeepingSystem()
    {
        var system = SystemPrompt;
        _messages.Clear();
        SystemPrompt = system;
    }

    public string ToJson() => JsonSerializer.Serialize(_messages, JsonOptions);

    /// <summary>Reads a conversation saved by <see cref="ToJson"/> (or any [{role, content}] array); throws ChatHistoryInvalid.</summary>
    public static List<LlmChatMessage> Parse(string json)
    {
        List<LlmChatMessage>? loaded;
        try
        {
            loaded = JsonSerializer.Deserialize<List<LlmChatMessage>>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new LlmException("ChatHistoryInvalid", LlmErrorKind.InvalidData,
                $"The conversation is not a JSON array of {{\"role\", \"content\"}} objects: {e.Message}", null, e);
        }
        if (loaded is null || loaded.Any(m => m is null || string.IsNullOrEmpty(m.Role)))
            throw new LlmException("ChatHistoryInvalid", LlmErrorKind.InvalidData, "Every message needs a role and a content.");
        foreach (var m in loaded) m.Content ??= ""; // OpenAI's "content": null beside tool_calls
        return loaded;
    }

    public void Replace(IEnumerable<LlmChatMessage> messages)
    {
        _messages.Clear();
        _messages.AddRange(messages);
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = true,
        PropertyNameCaseInsensitive = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}
