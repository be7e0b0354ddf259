using System.Collections;
using System.Management.Automation;
using LlmTools.Templates;

namespace LlmTools;

/// <summary>
/// Turns what users pipe as messages (hashtables, objects with role/content, strings) and tools into plain values.
/// Script input is untrusted in shape: a hashtable that contains itself, or nests thousands of levels deep, is an
/// error here rather than a stack overflow that ends pwsh; a message with an unknown role, or an object that is no
/// message at all, is an error rather than a turn the template silently drops.
/// </summary>
internal static class ChatInput
{
    /// <summary>Nesting of messages and tools (a JSON schema in a tool is a few levels; 64 is far beyond any real one).</summary>
    public const int MaxDepth = 64;

    /// <summary>The roles of the chat templates in use (OpenAI's and transformers' roles, and Llama 3.1's ipython).</summary>
    public static readonly IReadOnlyList<string> Roles = ["system", "developer", "user", "assistant", "tool", "ipython", "function"];

    /// <summary>A PowerShell value as plain .NET: dictionaries, lists, strings, numbers.</summary>
    public static object? ToPlain(object? value) => ToPlain(value, 0, new HashSet<object>(ReferenceEqualityComparer.Instance), value);

    private static object? ToPlain(object? value, int depth, HashSet<object> path, object? top)
    {
        switch (value)
        {
            case null: return null;
            case PSObject pso when pso.BaseObject is PSCustomObject:
                return Container(pso, depth, path, top, () =>
                {
                    var d = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (var p in pso.Properties) d[p.Name] = ToPlain(PropertyValue(p, top), depth + 1, path, top);
                    return d;
                });
            case PSObject pso: return ToPlain(pso.BaseObject, depth, path, top);
            case LlmChatMessage m: return new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content };
            case string or bool or int or long or double or float or decimal: return value;
            case IDictionary dict:
                return Container(dict, depth, path, top, () =>
                {
                    var d = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (DictionaryEntry e in dict) d[e.Key.ToString() ?? ""] = ToPlain(e.Value, depth + 1, path, top);
                    return d;
                });
            case IEnumerable list:
                return Container(list, depth, path, top, () =>
                {
                    var items = new List<object?>();
                    foreach (var x in list)
                    {
                        if (items.Count >= TemplateLimits.MaxListLength)
                            throw Invalid($"A message or tool list has more than {TemplateLimits.MaxListLength} items.", top);
                        items.Add(ToPlain(x, depth + 1, path, top));
                    }
                    return items;
                });
            default: return value.ToString();
        }
    }

    // A dictionary, list or object: refuses one that contains itself or nests too deeply, before recursing into it.
    private static object Container(object container, int depth, HashSet<object> path, object? top, Func<object> convert)
    {
        if (depth >= MaxDepth)
            throw Invalid($"A message or tool nests more than {MaxDepth} levels deep.", top);
        if (!path.Add(container))
            throw Invalid("A message or tool contains itself (e.g. $h.self = $h): it cannot be given to a chat template.", top);
        try
        {
            return convert();
        }
        finally
        {
            path.Remove(container);
        }
    }

    private static object? PropertyValue(PSPropertyInfo p, object? top)
    {
        try
        {
            return p.Value;
        }
        catch (Exception e) when (e is GetValueException or ExtendedTypeSystemException)
        {
            throw Invalid($"The property '{p.Name}' of a message or tool cannot be read: {e.Message}", top);
        }
    }

    private static LlmException Invalid(string message, object? target) =>
        new("ChatMessageInvalid", LlmErrorKind.InvalidArgument, message, target);

    private static object? BaseOf(object? value) => value is PSObject { BaseObject: not PSCustomObject } p ? p.BaseObject : value;

    /// <summary>The message as a dictionary: from a hashtable, a custom object or any object with Role and Content properties.</summary>
    private static Dictionary<string, object?> AsMessage(object? value)
    {
        var b = BaseOf(value);
        if (b is null || (b is not (IDictionary or PSObject or LlmChatMessage) && PSObject.AsPSObject(b).Properties["role"] is null))
            throw Invalid($"A message is a string, or a hashtable or object with role and content, e.g. @{{ role = 'user'; content = 'Hello' }}; " +
                          $"got {(b is null ? "nothing" : $"a {b.GetType().Name}")}.", value);
        object? plain;
        if (b is IDictionary or PSObject or LlmChatMessage) plain = ToPlain(value);
        else
        {
            // an object of some class with Role and Content properties: those two
            var o = PSObject.AsPSObject(b);
            plain = new Dictionary<string, object?>
            {
                ["role"] = ToPlain(PropertyValue(o.Properties["role"], value)),
                ["content"] = o.Properties["content"] is { } c ? ToPlain(PropertyValue(c, value)) : null,
            };
        }
        var d = (Dictionary<string, object?>)plain!;
        var normalized = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in d)
            normalized[k.ToLowerInvariant() is "role" or "content" ? k.ToLowerInvariant() : k] = v;
        var role = normalized.GetValueOrDefault("role") as string;
        if (string.IsNullOrEmpty(role))
            throw Invalid("A message needs a role (system, user or assistant) and a content, e.g. @{ role = 'user'; content = 'Hello' }.", value);
        var known = Roles.FirstOrDefault(r => string.Equals(r, role, StringComparison.OrdinalIgnoreCase))
            ?? throw Invalid($"'{role}' is not a message role; use one of: {string.Join(", ", Roles)}.", value);
        normalized["role"] = known;
        return normalized;
    }

    /// <summary>One message: an object or hashtable with role and content, or a string (a user message).</summary>
    public static LlmChatMessage ToMessage(object? value)
    {
        if (BaseOf(value) is string s) return new LlmChatMessage("user", s);
        var m = AsMessage(value);
        return new LlmChatMessage((string)m["role"]!, ContentText(m.GetValueOrDefault("content"), value));
    }

    /// <summary>
    /// A message's content as text: a string, or content parts as transformers takes them
    /// ([{type: 'text', text: '...'}], or plain strings), joined by newlines as llama.cpp's server joins them.
    /// </summary>
    private static string ContentText(object? content, object? message)
    {
        switch (content)
        {
            case null: return "";
            case string s: return s;
            case List<object?> parts:
            {
                var texts = new List<string>();
                foreach (var part in parts)
                {
                    if (part is string ps) { texts.Add(ps); continue; }
                    if (part is not Dictionary<string, object?> d)
                        throw Invalid("A content part is a hashtable like @{ type = 'text'; text = '...' }.", message);
                    var type = d.FirstOrDefault(kv => string.Equals(kv.Key, "type", StringComparison.OrdinalIgnoreCase)).Value as string;
                    var text = d.FirstOrDefault(kv => string.Equals(kv.Key, "text", StringComparison.OrdinalIgnoreCase)).Value;
                    if (type is null && text is string) type = "text";
                    if (!string.Equals(type, "text", StringComparison.OrdinalIgnoreCase))
                        throw Invalid($"Only text content parts can be given to a text model; this one is '{type ?? "(no type)"}'.", message);
                    if (text is not string t)
                        throw Invalid("A text content part needs its text, e.g. @{ type = 'text'; text = 'Hello' }.", message);
                    texts.Add(t);
                }
                return string.Join("\n", texts);
            }
            case Dictionary<string, object?>:
                throw Invalid("A message's content is text, or a list of content parts like @{ type = 'text'; text = '...' }.", message);
            default: return Convert.ToString(content, System.Globalization.CultureInfo.InvariantCulture) ?? "";
        }
    }

    /// <summary>Message dictionaries with lower-case keys for role and content, as templates expect.</summary>
    public static object? ForTemplate(object? value)
    {
        if (BaseOf(value) is string s) return new Dictionary<string, object?> { ["role"] = "user", ["content"] = s };
        var m = AsMessage(value);
        // content parts go to the template as they are (templates that take parts, images too, loop over them)
        switch (m.GetValueOrDefault("content"))
        {
            case Dictionary<string, object?>:
                throw Invalid("A message's content is text, or a list of content parts like @{ type = 'text'; text = '...' }.", value);
            case List<object?> parts when parts.Any(p => p is not Dictionary<string, object?> d || !d.Keys.Any(k => string.Equals(k, "type", StringComparison.OrdinalIgnoreCase))):
                throw Invalid("A content part is a hashtable with a type, like @{ type = 'text'; text = '...' }.", value);
        }
        return m;
    }
}
