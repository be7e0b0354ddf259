namespace LlmTools;

/// <summary>An OpenAI-compatible endpoint the session uses by default (Connect-LlmEndpoint).</summary>
public sealed class LlmEndpointInfo
{
    /// <summary>The base URL, e.g. http://127.0.0.1:8080/v1.</summary>
    public required string Endpoint { get; init; }
    /// <summary>The models the server serves (GET /models), the names -Model takes.</summary>
    public required string[] Models { get; init; }
    /// <summary>Whether a key is sent (the key itself is never shown).</summary>
    public required bool HasApiKey { get; init; }

    public override string ToString() => Endpoint;
}
