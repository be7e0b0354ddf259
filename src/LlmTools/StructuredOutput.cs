using System.Collections;
using System.Collections.Specialized;
using System.Management.Automation;
using System.Text.Json;
using System.Text.Json.Nodes;
using LlmTools.Engine.Grammar;

namespace LlmTools;

/// <summary>
/// -JsonSchema as PowerShell users give it (a JSON string, a hashtable, a PSCustomObject, a class) turned into the
/// grammar the engine enforces, and the generated JSON turned back into objects as ConvertFrom-Json would give them.
/// </summary>
internal static class StructuredOutput
{
    private const int MaxDepth = 64;

    /// <summary>The grammar that enforces a -JsonSchema value (for local generation).</summary>
    public static string GrammarFor(object schema) => Read(() => JsonSchemaGrammar.Convert(SchemaJsonFor(schema)));

    /// <summary>A -JsonSchema value as JSON schema text (what a server receives in response_format).</summary>
    public static string SchemaJsonFor(object schema)
    {
        var value = schema is PSObject ps ? ps.BaseObject : schema;
        return Read(() => value switch
        {
            string json => JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = MaxDepth }) is JsonObject
                ? json
                : throw new LlmException("JsonSchemaInvalid", LlmErrorKind.InvalidArgument, "A JSON schema is a JSON object ({ ... })."),
            Type type => JsonSchemaGrammar.SchemaFromType(type),
            IDictionary dictionary => JsonSchemaGrammar.SchemaFromDictionary(ToPlain(dictionary, 0) as IDictionary ?? dictionary),
            PSCustomObject => JsonSchemaGrammar.SchemaFromDictionary((IDictionary)ToPlain(schema, 0)!),
            _ => throw new LlmException("JsonSchemaInvalid", LlmErrorKind.InvalidArgument,
                $"-JsonSchema takes a JSON string, a hashtable, a PSCustomObject or a class type, not {value.GetType().Name}."),
        });
    }

    private static string Read(Func<string> read)
    {
        try
        {
            return read();
        }
        catch (LlmException)
        {
            throw;
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or NotSupportedException)
        {
            throw new LlmException("JsonSchemaInvalid", LlmErrorKind.InvalidArgument, $"The JSON schema cannot be read: {e.Message}", null, e);
        }
    }

    /// <summary>Hashtables and PSCustomObjects as plain dictionaries and lists, with a depth limit (a schema that contains itself).</summary>
    private static object? ToPlain(object? value, int depth)
    {
        if (depth > MaxDepth)
            throw new LlmException("JsonSchemaInvalid", LlmErrorKind.InvalidArgument, $"The JSON schema is nested more than {MaxDepth} deep (does it contain itself?).");
        if (value is PSObject ps)
        {
            if (ps.BaseObject is PSCustomObject)
            {
                var d = new OrderedDictionary();
                foreach (var p in ps.Properties) d[p.Name] = ToPlain(p.Value, depth + 1);
                return d;
            }
            value = ps.BaseObject;
        }
        switch (value)
        {
            case null or string or bool or Type: return value;
            case IDictionary dictionary:
                var copy = new OrderedDictionary();
                foreach (DictionaryEntry e in dictionary) copy[e.Key.ToString()!] = ToPlain(e.Value, depth + 1);
                return copy;
            case IEnumerable list:
                var items = new List<object?>();
                foreach (var item in list) items.Add(ToPlain(item, depth + 1));
                return items;
            default: return value;
        }
    }

    /// <summary>Parses JSON into what ConvertFrom-Json gives: PSCustomObject, object[], long/double/decimal, string, bool, null.</summary>
    public static bool TryParse(string text, out object? value)
    {
        value = null;
        try
        {
            using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 256 });
            value = Convert(doc.RootElement);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static object? Convert(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                var o = new PSObject();
                foreach (var p in e.EnumerateObject()) o.Properties.Add(new PSNoteProperty(p.Name, Convert(p.Value)));
                return o;
            case JsonValueKind.Array: return e.EnumerateArray().Select(Convert).ToArray();
            case JsonValueKind.String: return e.GetString();
            case JsonValueKind.Number:
                return e.TryGetInt64(out long l) ? (object)l : e.GetDouble(); // object arms: a long must stay a long
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            default: return null;
        }
    }
}
