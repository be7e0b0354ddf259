using System.Collections;
using System.Management.Automation;

namespace LlmTools;

/// <summary>
/// What Measure-LlmSimilarity and Find-LlmSimilar accept as a vector: an LlmEmbedding, an array of numbers, or any
/// object with a Vector property (an embedding read back by Import-Clixml or ConvertFrom-Json); or a text to embed.
/// </summary>
internal static class EmbeddingInput
{
    /// <summary>The vector <paramref name="value"/> holds, or its text (<paramref name="text"/>) when it is a string.</summary>
    public static float[]? VectorOf(object? value, out string? text)
    {
        text = null;
        var wrapped = value is PSObject ? value : null; // a PSCustomObject's properties live on its PSObject
        value = Unwrap(value);
        switch (value)
        {
            case null:
                throw NoVector("$null");
            case string s:
                text = s;
                return null;
            case LlmEmbedding e:
                return e.Vector;
            case float[] f:
                return f;
        }
        if (value is IEnumerable list and not IDictionary) return Numbers(list, value);
        var property = PSObject.AsPSObject(wrapped ?? value).Properties["Vector"];
        if (property?.Value is { } vector && Unwrap(vector) is IEnumerable numbers and not string) return Numbers(numbers, value);
        throw NoVector(value.GetType().Name);
    }

    /// <summary>The Text property of an item, for Find-LlmSimilar's results; null when it has none.</summary>
    public static string? TextOf(object? value) => Unwrap(value) switch
    {
        string s => s,
        LlmEmbedding e => e.Text,
        null => null,
        _ => PSObject.AsPSObject(value!).Properties["Text"]?.Value?.ToString(),
    };

    private static object? Unwrap(object? value) => value is PSObject p ? p.BaseObject : value;

    private static float[] Numbers(IEnumerable list, object whole)
    {
        var result = new List<float>();
        foreach (var item in list)
        {
            try
            {
                result.Add(LanguagePrimitives.ConvertTo<float>(Unwrap(item)));
            }
            catch (PSInvalidCastException)
            {
                throw NoVector(whole.GetType().Name);
            }
        }
        return [.. result];
    }

    private static LlmException NoVector(string what) => new("NotAVector", LlmErrorKind.InvalidArgument,
        $"A {what} is not a vector: give an LlmEmbedding (Get-LlmEmbedding), an array of numbers, an object with a Vector property, " +
        "or a text with -Model.", what);
}
