namespace LlmTools.Engine.Remote;

/// <summary>
/// A conversation with a model on an OpenAI-compatible server: the client keeps the messages and sends the whole
/// conversation each turn (the server's own prompt cache, where it has one, avoids evaluating it again). The same
/// members as a local <see cref="ChatSession"/> that scripts use: Send, Messages, SystemPrompt, Reset, ToJson, LoadJson.
/// </summary>
public sealed class RemoteChatSession : IDisposable
{
    private readonly ChatHistory _history = new();
    private List<LlmChatMessage> _messages => _history.Messages;
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
    public int Turns => _history.Turns;
    /// <summary>Tokens the conversation took on the server at the last turn (prompt plus reply, from usage).</summary>
    public int TokensUsed { get; private set; }
    /// <summary>Unknown for a remote model (the server decides); 0.</summary>
    public int ContextSize => 0;

    public string? SystemPrompt
    {
        get => _history.SystemPrompt;
        set => _history.SystemPrompt = value;
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
    public bool TrimOldestExchange() => _history.TrimOldest(keepLastUser: false);

    /// <summary>Forgets the conversation (the system prompt stays).</summary>
    public void Reset()
    {
        _history.ClearKeepingSystem();
        TokensUsed = 0;
    }

    public string ToJson() => _history.ToJson();

    public void LoadJson(string json)
    {
        _history.Replace(ChatHistory.Parse(json));
        TokensUsed = 0;
    }

    public void Dispose() { }

    public override string ToString() => $"{Model} at {Endpoint.Url}: {Turns} turns";
}
