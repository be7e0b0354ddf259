using System.Collections.Concurrent;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Security;
using LlmTools.Hub;

namespace LlmTools;

/// <summary>
/// The Hub token a user connected with, kept per runspace (a user's session), never process-wide and never written
/// to any stream. Without one, huggingface_hub's order applies: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, the token file.
/// </summary>
internal static class HubSession
{
    private static readonly ConcurrentDictionary<Guid, string> Tokens = new();

    private static Guid Key => Runspace.DefaultRunspace?.InstanceId ?? Guid.Empty;

    public static void Set(string token) => Tokens[Key] = token;

    public static bool Forget() => Tokens.TryRemove(Key, out _);

    /// <summary>The token for a Hub call: the session's, else the environment's or the token file's.</summary>
    public static (string? Token, HubTokenSource Source) Resolve(HubSettings settings) =>
        Tokens.TryGetValue(Key, out var t) ? (t, HubTokenSource.Session) : HubToken.Resolve(null, HubTokenSource.None, settings);

    /// <summary>A token given as a SecureString, a plain string, or a PSCredential (its password).</summary>
    public static string? FromParameter(object? value) => value switch
    {
        null => null,
        PSObject pso => FromParameter(pso.BaseObject),
        SecureString s => new System.Net.NetworkCredential("", s).Password,
        PSCredential c => c.GetNetworkCredential().Password,
        string s => s,
        _ => throw new LlmException("HubTokenType", LlmErrorKind.InvalidArgument,
            "-Token takes a string or a SecureString (Read-Host -AsSecureString).", value.GetType().Name),
    };
}
