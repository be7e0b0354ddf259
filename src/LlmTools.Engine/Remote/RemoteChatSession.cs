using System.Text.Json;

namespace LlmTools.Engine.Remote;

/// <summary>
/// A conversation with a model on an OpenAI-compatible server: the client keeps the messages and sends the whole
/// conversation each turn (the server's own prompt cache, where it has one, avoids evaluating it again). The same
/// members as a local <see cref="ChatSession"/> that scripts use: Send, Messages, SystemPrompt, Reset, ToJson, LoadJson.
/// </summary>
public sealed class RemoteChatSession : IDisposable
{
    private readonly List<LlmChatMessage> _messages = [];
    private int _busy;

    public RemoteChatSession(RemoteEndpoint endpoint, string model, string? systemPrompt, RemoteOptions options)
    {
        Endpoint = endpoint;
        Model = model;
        Options = options;
        SystemPrompt = systemPrompt;
    }

    public RemoteEndpoint Endpoint { get; }
    public RemoteOptions Options { get; }
    public string Model { get; }
    public string ModelPath => Endpoint.Url;
    public IReadOnlyList<LlmChatMessage> Messages => _messages;
    public int Turns => _messages.Count(m => m.Role == "assistant");
    /// <summary>Tokens the conversation took on the server at the last turn (prompt plus reply, from usage).</summary>
    public int TokensUsed { get; private set; }
    /// <summary>Unknown for a remote model (the server decides); 0.</summary>
    public int ContextSize => 0;

    public string? SystemPrompt
    {
        get => _messages.FirstOrDefault(m => m.Role == "system")?.Content;
        set
        {
            _messages.RemoveAll(m => m.Role == "system");
            if (!string.IsNullOrEmpty(value)) _messages.Insert(0, new LlmChatMessage("system", value));
        }
    }

    /// <summary>Sends a user message and returns the reply, which joins the conversation.</summary>
    public LlmChatReply Send(string message, IEngineEvents events, CancellationToken cancel, bool stream = false,
        Func<RemoteOptions, RemoteOptions>? adjust = null)
    {
        if (Interlocked.Exchange(ref _busy, 1) == 1)
            throw new LlmException("ChatSessionBusy", LlmErrorKind.ResourceBusy,
                "This chat session is answering another message right now; a session takes one message at a time. Use one session per thread.");
        try
        {
            _messages.Add(new LlmChatMessage("user", message));
            LlmCompletionResult r;
            try
            {
                r = OpenAiClient.Chat(Endpoint, Model, _messages, adjust is null ? Options : adjust(Options), events, cancel, stream);
            }
            catch
            {
                _messages.RemoveAt(_messages.Count - 1); // the conversation stays as it was
                throw;
            }
            if (r.StopReason != LlmStopReason.Cancelled || r.Text.Length > 0) _messages.Add(new LlmChatMessage("assistant", r.Text));
            else _messages.RemoveAt(_messages.Count - 1);
            TokensUsed = r.PromptTokens + r.CompletionTokens;
            return LlmChatReply.From(r, message, Turns);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Drops the oldest user message and the replies after it (the system prompt stays).</summary>
    public bool TrimOldestExchange()
    {
        int first = _messages.FindIndex(m => m.Role != "system");
        if (first < 0) return false;
        int next = _messages.FindIndex(first + 1, m => m.Role == "user");
        _messages.RemoveRange(first, (next < 0 ? _messages.Count : next) - first);
        return true;
    }

    /// <summary>Forgets the conversation (the system prompt stays).</summary>
    public void Reset()
    {
        var system = SystemPrompt;
        _messages.Clear();
        SystemPrompt = system;
        TokensUsed = 0;
    }

    public string ToJson() => JsonSerializer.Serialize(_messages, JsonOptions);

    public void LoadJson(string json)
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
        _messages.Clear();
        _messages.AddRange(loaded);
        TokensUsed = 0;
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNameCaseInsensitive = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public void Dispose() { }

    public override string ToString() => $"{Model} at {Endpoint.Url}: {Turns} turns";
}
