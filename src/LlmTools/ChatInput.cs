using System.Collections;
using System.Management.Automation;

namespace LlmTools;

/// <summary>Turns what users pipe as messages (hashtables, objects with role/content, strings) into plain values.</summary>
internal static class ChatInput
{
    /// <summary>A PowerShell value as plain .NET: dictionaries, lists, strings, numbers.</summary>
    public static object? ToPlain(object? value)
    {
        switch (value)
        {
            case null: return null;
            case PSObject pso when pso.BaseObject is PSCustomObject:
            {
                var d = new Dictionary<string, object?>(StringComparer.Ordinal);
                foreach (var p in pso.Properties) d[p.Name] = ToPlain(p.Value);
                return d;
            }
            case PSObject pso: return ToPlain(pso.BaseObject);
            case LlmChatMessage m: return new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content };
            case string or bool or int or long or double or float or decimal: return value;
            case IDictionary dict:
            {
                var d = new Dictionary<string, object?>(StringComparer.Ordinal);
                foreach (DictionaryEntry e in dict) d[e.Key.ToString()!] = ToPlain(e.Value);
                return d;
            }
            case IEnumerable list: return list.Cast<object?>().Select(ToPlain).ToList();
            default: return value.ToString();
        }
    }

    /// <summary>One message: an object or hashtable with role and content, or a string (a user message).</summary>
    public static LlmChatMessage ToMessage(object? value)
    {
        var plain = ToPlain(value);
        if (plain is string s) return new LlmChatMessage("user", s);
        if (plain is Dictionary<string, object?> d)
        {
            string? Get(string key) => d.FirstOrDefault(kv => string.Equals(kv.Key, key, StringComparison.OrdinalIgnoreCase)).Value?.ToString();
            var role = Get("role");
            if (string.IsNullOrEmpty(role))
                throw new LlmException("ChatMessageInvalid", LlmErrorKind.InvalidArgument,
                    "A message needs a role (system, user or assistant) and a content, e.g. @{ role = 'user'; content = 'Hello' }.", value);
            return new LlmChatMessage(role, Get("content") ?? "");
        }
        throw new LlmException("ChatMessageInvalid", LlmErrorKind.InvalidArgument,
            "A message is a string, or an object or hashtable with role and content.", value);
    }

    /// <summary>Message dictionaries with lower-case keys for role and content, as templates expect.</summary>
    public static object? ForTemplate(object? value)
    {
        var plain = ToPlain(value);
        if (plain is string s) return new Dictionary<string, object?> { ["role"] = "user", ["content"] = s };
        if (plain is Dictionary<string, object?> d)
        {
            var normalized = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (k, v) in d)
                normalized[k.ToLowerInvariant() is "role" or "content" ? k.ToLowerInvariant() : k] = v;
            return normalized;
        }
        return plain;
    }
}
