using System.Text.Json;

namespace LlmTools.Engine.Grammar;

/// <summary>
/// A lazy grammar: GBNF that applies only once a trigger string has been generated (a tool call's opening marker).
/// The triggers travel in the grammar text itself, as leading GBNF comment lines (<c># lazy-trigger: "&lt;tool_call&gt;"</c>),
/// so a lazy grammar goes wherever a grammar goes (<see cref="CompletionOptions.Grammar"/>) and llama.cpp, which
/// skips comments, sees the same grammar. The grammar describes the text after the trigger.
/// </summary>
public static class LazyGrammar
{
    private const string Directive = "# lazy-trigger: ";

    /// <summary>The grammar <paramref name="gbnf"/>, applied from the end of the first of <paramref name="triggers"/> generated.</summary>
    public static string Make(string gbnf, IEnumerable<string> triggers)
    {
        var list = triggers.ToList();
        if (list.Count == 0 || list.Any(string.IsNullOrEmpty))
            throw new ArgumentException("A lazy grammar needs at least one non-empty trigger.", nameof(triggers));
        // JSON-escaped, so a trigger with a line break cannot end its comment line.
        return string.Concat(list.Select(t => Directive + JsonSerializer.Serialize(t, Readable) + "\n")) + gbnf;
    }

    private static readonly JsonSerializerOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The triggers of a lazy grammar; empty for an ordinary one.</summary>
    public static IReadOnlyList<string> Triggers(string gbnf)
    {
        var result = new List<string>();
        int at = 0;
        while (gbnf.AsSpan(at).StartsWith(Directive, StringComparison.Ordinal))
        {
            int end = gbnf.IndexOf('\n', at);
            if (end < 0) end = gbnf.Length;
            var json = gbnf[(at + Directive.Length)..end];
            string? trigger;
            try
            {
                trigger = JsonSerializer.Deserialize<string>(json);
            }
            catch (JsonException e)
            {
                throw GbnfGrammar.Invalid($"the lazy-trigger line '{json}' is not a JSON string ({e.Message})");
            }
            if (string.IsNullOrEmpty(trigger)) throw GbnfGrammar.Invalid("a lazy-trigger is empty");
            result.Add(trigger);
            at = Math.Min(end + 1, gbnf.Length);
        }
        return result;
    }
}
