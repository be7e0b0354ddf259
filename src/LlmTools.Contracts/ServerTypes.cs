namespace LlmTools;

/// <summary>An OpenAI-compatible server of this session (Start-LlmServer), as it stands when this snapshot was taken.</summary>
public sealed class LlmServerInfo
{
    /// <summary>Session-unique number; Stop-LlmServer -Id takes it.</summary>
    public required int Id { get; init; }
    /// <summary>The base URL clients use, e.g. http://127.0.0.1:8080/v1 (OPENAI_BASE_URL).</summary>
    public required string Endpoint { get; init; }
    public required string Address { get; init; }
    /// <summary>The port listened on (the one picked when -Port 0 was given).</summary>
    public required int Port { get; init; }
    /// <summary>The names clients pass as "model": the aliases, else the model files' names.</summary>
    public required IReadOnlyList<string> Models { get; init; }
    public required IReadOnlyList<string> ModelPaths { get; init; }
    /// <summary>Completions answered (streamed or not), failures and cancellations excluded.</summary>
    public required long RequestsServed { get; init; }
    /// <summary>Generations stopped because their client disconnected (or the server stopped).</summary>
    public required long RequestsCancelled { get; init; }
    /// <summary>Generations running now, and requests waiting for a free slot.</summary>
    public required int ActiveRequests { get; init; }
    public required int QueuedRequests { get; init; }
    public required int MaxConcurrency { get; init; }
    public required int MaxQueue { get; init; }
    public required bool RequiresApiKey { get; init; }
    public required DateTime StartedAt { get; init; }
    public required bool IsRunning { get; init; }

    public override string ToString() => Endpoint;
}
