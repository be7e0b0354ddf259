using System.Collections.Concurrent;
using System.Management.Automation.Runspaces;
using LlmTools.Engine.Remote;

namespace LlmTools;

/// <summary>
/// The endpoint Connect-LlmEndpoint set, kept per runspace (a user's session), never process-wide; its key is never
/// written to any stream. Keys: -ApiKey, else the connected endpoint's (only for that endpoint), else OPENAI_API_KEY.
/// </summary>
internal static class RemoteSession
{
    private static readonly ConcurrentDictionary<Guid, RemoteEndpoint> Defaults = new();

    private static Guid Key => Runspace.DefaultRunspace?.InstanceId ?? Guid.Empty;

    public static void Set(RemoteEndpoint endpoint) => Defaults[Key] = endpoint;

    public static bool Forget() => Defaults.TryRemove(Key, out _);

    public static RemoteEndpoint? Current => Defaults.TryGetValue(Key, out var e) ? e : null;

    public static string? EnvironmentKey => Environment.GetEnvironmentVariable("OPENAI_API_KEY") is { Length: > 0 } k ? k : null;

    /// <summary>The endpoint of a call: -Endpoint (with its key), else the connected one; null runs locally.</summary>
    public static RemoteEndpoint? Resolve(Uri? endpoint, string? apiKey)
    {
        var connected = Current;
        if (endpoint is null)
            return connected is null ? null : apiKey is null ? connected : new RemoteEndpoint(connected.BaseUri, apiKey);
        var e = new RemoteEndpoint(endpoint, null);
        // The connected key goes only to the endpoint it was given for.
        string? key = apiKey ?? (connected is not null && connected.Url == e.Url ? connected.ApiKey : null) ?? EnvironmentKey;
        return new RemoteEndpoint(e.BaseUri, key);
    }
}
