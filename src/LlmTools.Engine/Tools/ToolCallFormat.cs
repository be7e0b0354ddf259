using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LlmTools.Engine.Grammar;

namespace LlmTools.Engine.Tools;

/// <summary>The ways chat templates write a tool call (one per family of models whose templates show it).</summary>
public enum ToolCallFamily
{
    /// <summary>Hermes/Qwen2.5, QwQ, Granite 4, MiMo, Bielik: &lt;tool_call&gt;{"name": ..., "arguments": {...}}&lt;/tool_call&gt;.</summary>
    Hermes,
    /// <summary>Llama 3.1-3.3: a bare {"name": ..., "parameters": {...}}.</summary>
    Llama3Json,
    /// <summary>Mistral Small 3.2, Devstral, Ministral 3: [TOOL_CALLS]name[ARGS]{...}.</summary>
    MistralArgs,
    /// <summary>Older Mistral (v0.3): [TOOL_CALLS][{"name": ..., "arguments": {...}}].</summary>
    MistralJson,
    /// <summary>Apriel: &lt;tool_calls&gt;[{"name": ..., "arguments": {...}}]&lt;/tool_calls&gt;.</summary>
    Apriel,
    /// <summary>Qwen3.5, Nemotron 3, Step 3.5: &lt;tool_call&gt;&lt;function=name&gt;&lt;parameter=key&gt;value&lt;/parameter&gt;...</summary>
    QwenXml,
    /// <summary>GLM 4.7: &lt;tool_call&gt;name&lt;arg_key&gt;key&lt;/arg_key&gt;&lt;arg_value&gt;value&lt;/arg_value&gt;...&lt;/tool_call&gt;.</summary>
    Glm,
    /// <summary>Functionary v3.1: &lt;function=name&gt;{...}&lt;/function&gt;.</summary>
    Functionary,
    /// <summary>LFM2/LFM2.5: &lt;|tool_call_start|&gt;[name(key='value', n=2)]&lt;|tool_call_end|&gt; (Python call syntax).</summary>
    Pythonic,
    /// <summary>Kimi K2: &lt;|tool_calls_section_begin|&gt;&lt;|tool_call_begin|&gt;functions.name:0&lt;|tool_call_argument_begin|&gt;{...}&lt;|tool_call_end|&gt;...</summary>
    Kimi,
}

/// <summary>What a reply holds: its text besides the calls, and the calls.</summary>
public sealed record ParsedToolCalls(string Content, IReadOnlyList<LlmToolCall> Calls);

/// <summary>
/// How one template family writes tool calls: the string that opens a call (the lazy grammar's trigger), the grammar
/// of the calls after it (each tool's arguments held to its schema, the name to the tools' names), and the parser that
/// reads the calls back out of a reply. The family is recognised from the template's source.
/// </summary>
public sealed partial class ToolCallFormat
{
    private ToolCallFormat(ToolCallFamily family) => Family = family;

    public ToolCallFamily Family { get; }

    /// <summary>The text that opens a call; the grammar applies from its end.</summary>
    public string Trigger => Family switch
    {
        ToolCallFamily.Llama3Json => "{\"name\"",
        ToolCallFamily.MistralArgs or ToolCallFamily.MistralJson => "[TOOL_CALLS]",
        ToolCallFamily.Apriel => "<tool_calls>",
        ToolCallFamily.Functionary => "<function=",
        ToolCallFamily.Kimi => "<|tool_calls_section_begin|>",
        ToolCallFamily.Pythonic => "<|tool_call_start|>",
        _ => "<tool_call>",
    };

    /// <summary>The family a template's tool-call markup belongs to; Hermes (the most common) when it shows none.</summary>
    public static ToolCallFormat For(string? templateSource)
    {
        var s = templateSource ?? "";
        var family =
            s.Contains("<|tool_calls_section_begin|>", StringComparison.Ordinal) ? ToolCallFamily.Kimi
            : s.Contains("<|tool_call_start|>", StringComparison.Ordinal) ? ToolCallFamily.Pythonic
            : s.Contains("[TOOL_CALLS]", StringComparison.Ordinal) ? (s.Contains("[ARGS]", StringComparison.Ordinal) ? ToolCallFamily.MistralArgs : ToolCallFamily.MistralJson)
            : s.Contains("<tool_calls>", StringComparison.Ordinal) ? ToolCallFamily.Apriel
            : s.Contains("<function=", StringComparison.Ordinal) && s.Contains("<parameter=", StringComparison.Ordinal) ? ToolCallFamily.QwenXml
            : s.Contains("<arg_key>", StringComparison.Ordinal) ? ToolCallFamily.Glm
            : s.Contains("<tool_call>", StringComparison.Ordinal) ? ToolCallFamily.Hermes
            : s.Contains("<function=", StringComparison.Ordinal) ? ToolCallFamily.Functionary
            : s.Contains("\"parameters\"", StringComparison.Ordinal) && s.Contains("{\"name\"", StringComparison.Ordinal) ? ToolCallFamily.Llama3Json
            : ToolCallFamily.Hermes;
        return new ToolCallFormat(family);
    }

    public static ToolCallFormat Of(ToolCallFamily family) => new(family);

    /// <summary>A new call id: 9 letters and digits (Mistral's templates refuse any other shape; the rest take anything).</summary>
    public static string NewId()
    {
        const string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        return string.Create(9, 0, (span, _) =>
        {
            for (int i = 0; i < span.Length; i++) span[i] = chars[RandomNumberGenerator.GetInt32(chars.Length)];
        });
    }

    // ----- grammar -----

    /// <summary>
    /// The grammar of tool calls for these tools. <paramref name="required"/>: the reply must be a call (the grammar
    /// starts with the trigger); else a lazy grammar (<see cref="LazyGrammar"/>) that applies once the model writes
    /// the trigger, so it may also answer in text.
    /// </summary>
    public string Grammar(IReadOnlyList<ToolDefinition> tools, bool required)
    {
        if (tools.Count == 0) throw new ArgumentException("No tools to call.", nameof(tools));
        var rules = new StringBuilder();
        var calls = CallsRule(tools, rules);
        var root = required ? $"root ::= {JsonSchemaGrammar.Literal(Trigger)} calls\n" : "root ::= calls\n";
        var gbnf = root + "calls ::= " + calls + "\n" + rules;
        return required ? gbnf : LazyGrammar.Make(gbnf, [Trigger]);
    }

    private string CallsRule(IReadOnlyList<ToolDefinition> tools, StringBuilder rules)
    {
        string L(string s) => JsonSchemaGrammar.Literal(s);
        string Alternatives(Func<ToolDefinition, int, string> one) => "( " + string.Join(" | ", tools.Select((t, i) => one(t, i))) + " )";
        string Args(int i) => AddSchema(rules, Closed(tools[i].Parameters), $"t{i}-");
        string JsonCall(string argsKey) => "\"{\\\"name\\\": \" " + Alternatives((t, i) =>
            L(JsonSerializer.Serialize(t.Name) + ", \"" + argsKey + "\": ") + " " + Args(i)) + " \"}\"";
        switch (Family)
        {
            case ToolCallFamily.Hermes:
                Rule(rules, "call", JsonCall("arguments"));
                return "\"\\n\"? call \"\\n\"? \"</tool_call>\" ( \"\\n\"? \"<tool_call>\" \"\\n\"? call \"\\n\"? \"</tool_call>\" )*";
            case ToolCallFamily.Llama3Json:
                return "\": \" " + Alternatives((t, i) => L(JsonSerializer.Serialize(t.Name) + ", \"parameters\": ") + " " + Args(i)) + " \"}\"";
            case ToolCallFamily.MistralArgs:
                Rule(rules, "call", Alternatives((t, i) => L(t.Name + "[ARGS]") + " " + Args(i)));
                return "call ( \"[TOOL_CALLS]\" call )*";
            case ToolCallFamily.MistralJson:
                Rule(rules, "call", JsonCall("arguments"));
                return "\" \"? \"[\" call ( \", \" call )* \"]\"";
            case ToolCallFamily.Apriel:
                Rule(rules, "call", JsonCall("arguments"));
                return "\"[\" call ( \", \" call )* \"]</tool_calls>\"";
            case ToolCallFamily.Functionary:
                return Alternatives((t, i) => L(t.Name + ">") + " " + Args(i)) + " \"</function>\"";
            case ToolCallFamily.Pythonic:
                Rule(rules, "call", Alternatives((t, i) => L(t.Name + "(") + " " + PythonArgs(rules, t, i) + " \")\""));
                return "\"[\" call ( \", \" call )* \"]<|tool_call_end|>\"";
            case ToolCallFamily.Kimi:
                Rule(rules, "call", "\"<|tool_call_begin|>functions.\" " + Alternatives((t, i) =>
                    L(t.Name + ":") + " [0-9]{1,3} \"<|tool_call_argument_begin|>\" " + Args(i)) + " \"<|tool_call_end|>\"");
                return "call+ \"<|tool_calls_section_end|>\"";
            case ToolCallFamily.QwenXml:
                Rule(rules, "call", "\"\\n<function=\" " + Alternatives((t, i) =>
                    L(t.Name + ">\n") + " " + Params(rules, t, i, (k, v) => $"{L("<parameter=" + k + ">\n")} {v} {L("\n</parameter>\n")}"))
                    + " \"</function>\\n</tool_call>\"");
                return "call ( \"\\n<tool_call>\" call )*";
            case ToolCallFamily.Glm:
                Rule(rules, "call", Alternatives((t, i) =>
                    L(t.Name) + " " + Params(rules, t, i, (k, v) => $"{L("<arg_key>" + k + "</arg_key><arg_value>")} {v} \"</arg_value>\"")) + " \"</tool_call>\"");
                return "call ( \"<tool_call>\" call )*";
            default:
                throw new InvalidOperationException(Family.ToString());
        }
    }

    /// <summary>
    /// The arguments' schema with no properties beyond those it lists, unless it says otherwise: a command has no
    /// parameter the schema does not name, and a model that invents one would make the call fail.
    /// </summary>
    private static JsonNode Closed(JsonObject schema)
    {
        var copy = (JsonObject)schema.DeepClone();
        if (!copy.ContainsKey("additionalProperties")) copy["additionalProperties"] = false;
        return copy;
    }

    /// <summary>Adds a rule whose body was built first (building it may add the rules it refers to).</summary>
    private static void Rule(StringBuilder rules, string name, string body) => rules.Append(name).Append(" ::= ").Append(body).Append('\n');

    /// <summary>
    /// XML-style arguments, one element per property in the schema's order (required ones always, others optional):
    /// a plain string is written raw (anything but '&lt;'), any other value as JSON valid against its schema.
    /// </summary>
    private static string Params(StringBuilder rules, ToolDefinition tool, int i, Func<string, string, string> element)
    {
        var props = tool.Parameters["properties"] as JsonObject ?? [];
        var required = (tool.Parameters["required"] as JsonArray)?.Select(x => x?.GetValue<string>()).ToHashSet() ?? [];
        var parts = new List<string>();
        int j = 0;
        foreach (var (key, schema) in props)
        {
            string value = StringEnum(schema) is { } names ? "( " + string.Join(" | ", names.Select(JsonSchemaGrammar.Literal)) + " )"
                : IsString(schema) ? "[^<]*" : AddSchema(rules, schema, $"t{i}-p{j}-");
            var e = "( " + element(key, value) + " )";
            parts.Add(required.Contains(key) ? e : e + "?");
            j++;
        }
        if (parts.Count == 0) return "\"\"";
        var name = $"t{i}-params";
        rules.Append(name).Append(" ::= ").Append(string.Join(" ", parts)).Append('\n');
        return name;
    }

    /// <summary>
    /// Python keyword arguments in the schema's order (required ones always, others optional, ", " between those
    /// present): strings in single quotes (anything but a quote or a line break), booleans True/False, numbers, objects
    /// and arrays as JSON (which Python's literal syntax reads too).
    /// </summary>
    private static string PythonArgs(StringBuilder rules, ToolDefinition tool, int i)
    {
        var props = (tool.Parameters["properties"] as JsonObject ?? []).ToList();
        var required = (tool.Parameters["required"] as JsonArray)?.Select(x => x?.GetValue<string>()).ToHashSet() ?? [];
        var parts = new List<string>();
        for (int j = 0; j < props.Count; j++)
        {
            var (key, schema) = props[j];
            string value = StringEnum(schema) is { } names ? "( " + string.Join(" | ", names.Select(n => JsonSchemaGrammar.Literal("'" + n + "'"))) + " )"
                : IsString(schema) ? "\"'\" [^'\\n]* \"'\""
                : schema is JsonObject o && o["type"] is JsonValue t && t.GetValueKind() == JsonValueKind.String && t.GetValue<string>() == "boolean" ? "( \"True\" | \"False\" )"
                : AddSchema(rules, schema, $"t{i}-p{j}-");
            parts.Add(JsonSchemaGrammar.Literal(key + "=") + " " + value);
        }
        if (parts.Count == 0) return "\"\"";
        // args{k}-f / args{k}-n: the arguments from k on, when none / some was written before (then ", " first).
        for (int k = parts.Count - 1; k >= 0; k--)
            foreach (var first in new[] { true, false })
            {
                string Next(bool f) => k + 1 < parts.Count ? $" t{i}-args{k + 1}-{(f ? "f" : "n")}" : "";
                var present = (first ? "" : "\", \" ") + parts[k] + Next(false);
                var body = required.Contains(props[k].Key) ? present
                    : k + 1 < parts.Count ? $"( {present} ) | ( {Next(first).Trim()} )" : $"( {present} )?";
                Rule(rules, $"t{i}-args{k}-{(first ? "f" : "n")}", body);
            }
        return $"t{i}-args0-f";
    }

    /// <summary>
    /// A string schema, which the XML families write as raw text (anything but '&lt;'; its length and pattern are not
    /// held there: the JSON families hold them).
    /// </summary>
    internal static bool IsString(JsonNode? schema) =>
        (schema is JsonObject o && o["type"] is JsonValue t && t.GetValueKind() == JsonValueKind.String && t.GetValue<string>() == "string")
        || StringEnum(schema) is not null;

    /// <summary>The names of an enum of strings only; null otherwise.</summary>
    private static List<string>? StringEnum(JsonNode? schema) =>
        schema is JsonObject o && o["enum"] is JsonArray a && a.Count > 0 && a.All(x => x is JsonValue v && v.GetValueKind() == JsonValueKind.String)
            ? [.. a.Select(x => x!.GetValue<string>())] : null;

    /// <summary>Adds a schema's grammar with every rule renamed under <paramref name="prefix"/>; returns its root rule.</summary>
    private static string AddSchema(StringBuilder rules, JsonNode? schema, string prefix)
    {
        var gbnf = JsonSchemaGrammar.Convert(schema?.DeepClone());
        rules.Append(Prefixed(gbnf, prefix));
        return prefix + "root";
    }

    /// <summary>Renames every rule of a GBNF text (definitions and references) by putting <paramref name="prefix"/> in front.</summary>
    internal static string Prefixed(string gbnf, string prefix)
    {
        var sb = new StringBuilder(gbnf.Length + 256);
        for (int i = 0; i < gbnf.Length;)
        {
            char c = gbnf[i];
            if (c is '"' or '[')
            {
                // a literal or a class, with its escapes, copied as is
                char close = c == '"' ? '"' : ']';
                int j = i + 1;
                while (j < gbnf.Length && gbnf[j] != close) j += gbnf[j] == '\\' ? 2 : 1;
                j = Math.Min(j + 1, gbnf.Length);
                sb.Append(gbnf, i, j - i);
                i = j;
            }
            else if (c == '{')
            {
                int j = gbnf.IndexOf('}', i);
                j = j < 0 ? gbnf.Length : j + 1;
                sb.Append(gbnf, i, j - i);
                i = j;
            }
            else if (c == '#')
            {
                int j = gbnf.IndexOf('\n', i);
                j = j < 0 ? gbnf.Length : j;
                sb.Append(gbnf, i, j - i);
                i = j;
            }
            else if (char.IsAsciiLetterOrDigit(c) || c is '-' or '_')
            {
                int j = i;
                while (j < gbnf.Length && (char.IsAsciiLetterOrDigit(gbnf[j]) || gbnf[j] is '-' or '_')) j++;
                sb.Append(prefix).Append(gbnf, i, j - i);
                i = j;
            }
            else
            {
                sb.Append(c);
                i++;
            }
        }
        return sb.ToString();
    }

    // ----- parsing -----

    /// <summary>
    /// Reads the tool calls out of a reply. A call whose JSON does not parse stays text (a reply cut short by
    /// MaxTokens). Ids are new (models do not write them).
    /// </summary>
    public ParsedToolCalls Parse(string text, IReadOnlyList<ToolDefinition> tools)
    {
        var calls = new List<LlmToolCall>();
        string content = text;
        switch (Family)
        {
            case ToolCallFamily.Hermes:
                content = Remove(text, HermesBlock(), m => JsonCallFrom(m.Groups[1].Value, "arguments", calls));
                break;
            case ToolCallFamily.Llama3Json:
            {
                var t = text.Replace("<|python_tag|>", "", StringComparison.Ordinal);
                int at = t.IndexOf(Trigger, StringComparison.Ordinal);
                if (at < 0) at = t.TrimStart().StartsWith('{') ? t.IndexOf('{') : -1;
                if (at >= 0 && ReadJson(t, at) is { } json && JsonCallFrom(json.Text, "parameters", calls))
                    content = (t[..at] + t[json.End..]).Trim();
                break;
            }
            case ToolCallFamily.MistralArgs:
            case ToolCallFamily.MistralJson:
            {
                int at = text.IndexOf(Trigger, StringComparison.Ordinal);
                // [TOOL_CALLS] is a control token in Mistral's vocabularies, which the text does not show: a reply
                // that starts like a call of one of these tools is one.
                string rest = at >= 0 ? text[(at + Trigger.Length)..] : text.TrimStart();
                var found = new List<LlmToolCall>();
                if (Family == ToolCallFamily.MistralJson ? MistralJson(rest, found) : MistralArgs(rest, tools, found, at >= 0))
                {
                    calls.AddRange(found);
                    content = at >= 0 ? text[..at].Trim() : "";
                }
                break;
            }
            case ToolCallFamily.Apriel:
                content = Remove(text, AprielBlock(), m => MistralJson(m.Groups[1].Value, calls));
                break;
            case ToolCallFamily.Functionary:
                content = Remove(text, FunctionaryBlock(), m => JsonArgs(m.Groups[1].Value.Trim(), m.Groups[2].Value, calls));
                break;
            case ToolCallFamily.Pythonic:
            {
                // [name(key=value, ...), ...], after <|tool_call_start|> (a control token the text may not show).
                int at = text.IndexOf(Trigger, StringComparison.Ordinal);
                var rest = at >= 0 ? text[(at + Trigger.Length)..] : text.TrimStart();
                var found = new List<LlmToolCall>();
                if (PythonCalls(rest, tools, found, marked: at >= 0))
                {
                    calls.AddRange(found);
                    content = at >= 0 ? text[..at].Trim() : "";
                }
                break;
            }
            case ToolCallFamily.Kimi:
            {
                // The markers are control tokens in Kimi's vocabulary, which the text may not show: the calls are read
                // from "functions.name:N" and the JSON after it.
                var found = new List<LlmToolCall>();
                int first = -1, end = 0;
                foreach (Match m in KimiCall().Matches(text))
                {
                    if (m.Index < end) continue;
                    if (ReadJson(text, m.Index + m.Length) is not { } json || !JsonArgs(m.Groups[1].Value, json.Text, found)) break;
                    if (first < 0) first = m.Index;
                    end = json.End;
                }
                if (found.Count > 0)
                {
                    calls.AddRange(found);
                    var before = text[..first];
                    int section = before.IndexOf(Trigger, StringComparison.Ordinal);
                    content = (section >= 0 ? before[..section] : before).Replace("<|tool_call_begin|>", "", StringComparison.Ordinal).Trim();
                }
                break;
            }
            case ToolCallFamily.QwenXml:
                content = Remove(text, QwenXmlBlock(), m => XmlCall(m.Groups[1].Value.Trim(),
                    QwenXmlParameter().Matches(m.Groups[2].Value).Select(p => (p.Groups[1].Value.Trim(), p.Groups[2].Value)), tools, calls));
                break;
            case ToolCallFamily.Glm:
                content = Remove(text, GlmBlock(), m => XmlCall(m.Groups[1].Value.Trim(),
                    GlmArgument().Matches(m.Groups[2].Value).Select(p => (p.Groups[1].Value.Trim(), p.Groups[2].Value)), tools, calls));
                break;
        }
        return new ParsedToolCalls(calls.Count == 0 ? text : content, calls);
    }

    [GeneratedRegex(@"<tool_call>\s*(\{.*?\})\s*(?:</tool_call>|\z)", RegexOptions.Singleline)]
    private static partial Regex HermesBlock();
    [GeneratedRegex(@"functions\.([A-Za-z0-9_.\-]+):\d+\s*(?:<\|tool_call_argument_begin\|>)?")]
    private static partial Regex KimiCall();
    [GeneratedRegex(@"<tool_calls>\s*(\[.*?\])\s*(?:</tool_calls>|\z)", RegexOptions.Singleline)]
    private static partial Regex AprielBlock();
    [GeneratedRegex(@"<function=([^>\n]+)>\s*(\{.*?\})\s*(?:</function>|\z)", RegexOptions.Singleline)]
    private static partial Regex FunctionaryBlock();
    [GeneratedRegex(@"<tool_call>\s*<function=([^>\n]+)>(.*?)</function>\s*(?:</tool_call>|\z)", RegexOptions.Singleline)]
    private static partial Regex QwenXmlBlock();
    [GeneratedRegex(@"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", RegexOptions.Singleline)]
    private static partial Regex QwenXmlParameter();
    [GeneratedRegex(@"<tool_call>\s*([A-Za-z0-9_.\-]+)((?:\s*<arg_key>.*?</arg_key>\s*<arg_value>.*?</arg_value>)*)\s*(?:</tool_call>|\z)", RegexOptions.Singleline)]
    private static partial Regex GlmBlock();
    [GeneratedRegex(@"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", RegexOptions.Singleline)]
    private static partial Regex GlmArgument();

    /// <summary>The text without the blocks that <paramref name="take"/> read as calls (a block it refuses stays).</summary>
    private static string Remove(string text, Regex block, Func<Match, bool> take)
    {
        var sb = new StringBuilder();
        int at = 0;
        foreach (Match m in block.Matches(text))
        {
            if (!take(m)) continue;
            sb.Append(text, at, m.Index - at);
            at = m.Index + m.Length;
        }
        sb.Append(text, at, text.Length - at);
        return sb.ToString().Trim();
    }

    /// <summary>{"name": ..., "arguments"|"parameters": {...} or "&lt;JSON&gt;"} as a call.</summary>
    private static bool JsonCallFrom(string json, string argsKey, List<LlmToolCall> calls)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return JsonCallFrom(doc.RootElement, argsKey, calls);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool JsonCallFrom(JsonElement e, string argsKey, List<LlmToolCall> calls)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String) return false;
        if (!e.TryGetProperty(argsKey, out var a) && !e.TryGetProperty(argsKey == "arguments" ? "parameters" : "arguments", out a))
        {
            calls.Add(new LlmToolCall(NewId(), n.GetString()!, "{}"));
            return true;
        }
        return JsonArgs(n.GetString()!, a.ValueKind == JsonValueKind.String ? a.GetString()! : a.GetRawText(), calls);
    }

    private static bool JsonArgs(string name, string argsJson, List<LlmToolCall> calls)
    {
        try
        {
            using var doc = JsonDocument.Parse(argsJson);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return false;
            calls.Add(new LlmToolCall(NewId(), name, doc.RootElement.GetRawText()));
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool MistralJson(string text, List<LlmToolCall> calls)
    {
        var t = text.TrimStart();
        if (!t.StartsWith('[') || ReadJson(t, 0) is not { } json) return false;
        using var doc = JsonDocument.Parse(json.Text);
        var found = new List<LlmToolCall>();
        foreach (var e in doc.RootElement.EnumerateArray())
            if (!JsonCallFrom(e, "arguments", found)) return false;
        calls.AddRange(found);
        return found.Count > 0;
    }

    /// <summary>name[ARGS]{...}, repeated with [TOOL_CALLS] between; without the marker, only names of these tools count.</summary>
    private static bool MistralArgs(string text, IReadOnlyList<ToolDefinition> tools, List<LlmToolCall> calls, bool marked)
    {
        foreach (var part in text.Split("[TOOL_CALLS]"))
        {
            int args = part.IndexOf("[ARGS]", StringComparison.Ordinal);
            if (args < 0) return false;
            var name = part[..args].Trim();
            if (!marked && !tools.Any(t => t.Name == name)) return false;
            if (ReadJson(part, args + "[ARGS]".Length) is not { } json || !JsonArgs(name, json.Text, calls)) return false;
        }
        return calls.Count > 0;
    }

    /// <summary>[name(key=value, ...), ...]: Python call syntax with literal values; without the marker, only these tools' names count.</summary>
    private static bool PythonCalls(string text, IReadOnlyList<ToolDefinition> tools, List<LlmToolCall> calls, bool marked)
    {
        int i = 0;
        Skip(text, ref i);
        if (i >= text.Length || text[i] != '[') return false;
        i++;
        var found = new List<LlmToolCall>();
        while (true)
        {
            Skip(text, ref i);
            int start = i;
            while (i < text.Length && (char.IsAsciiLetterOrDigit(text[i]) || text[i] is '_' or '.' or '-')) i++;
            var name = text[start..i];
            if (name.Length == 0 || i >= text.Length || text[i] != '(') return false;
            if (!marked && !tools.Any(t => t.Name == name)) return false;
            i++;
            var args = new JsonObject();
            Skip(text, ref i);
            while (i < text.Length && text[i] != ')')
            {
                start = i;
                while (i < text.Length && (char.IsAsciiLetterOrDigit(text[i]) || text[i] == '_')) i++;
                var key = text[start..i];
                Skip(text, ref i);
                if (key.Length == 0 || i >= text.Length || text[i] != '=') return false;
                i++;
                if (!PythonValue(text, ref i, topLevel: true, out var value)) return false;
                args[key] = value;
                Skip(text, ref i);
                if (i < text.Length && text[i] == ',') { i++; Skip(text, ref i); }
            }
            if (i >= text.Length) return false;
            i++; // ')'
            found.Add(new LlmToolCall(NewId(), name, args.ToJsonString()));
            Skip(text, ref i);
            if (i < text.Length && text[i] == ',') { i++; continue; }
            if (i < text.Length && text[i] == ']') break;
            return false;
        }
        calls.AddRange(found);
        return true;
    }

    private static void Skip(string s, ref int i)
    {
        while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
    }

    /// <summary>A Python (or JSON) literal: quoted strings, numbers, True/False/None (true/false/null), lists, dicts.</summary>
    private static bool PythonValue(string s, ref int i, bool topLevel, out JsonNode? value)
    {
        value = null;
        Skip(s, ref i);
        if (i >= s.Length) return false;
        char c = s[i];
        if (c is '\'' or '"')
        {
            // The templates write strings unescaped ('...'): at the top level a quote ends the string only before , or ).
            var sb = new StringBuilder();
            for (int j = i + 1; j < s.Length; j++)
            {
                if (s[j] == '\\' && j + 1 < s.Length && !topLevel) { sb.Append(s[++j]); continue; }
                if (s[j] == c)
                {
                    int k = j + 1;
                    Skip(s, ref k);
                    if (!topLevel || k >= s.Length || s[k] is ',' or ')')
                    {
                        i = j + 1;
                        value = JsonValue.Create(sb.ToString());
                        return true;
                    }
                }
                sb.Append(s[j]);
            }
            return false;
        }
        if (c == '[' || c == '{')
        {
            char close = c == '[' ? ']' : '}';
            var node = c == '[' ? (JsonNode)new JsonArray() : new JsonObject();
            i++;
            Skip(s, ref i);
            while (i < s.Length && s[i] != close)
            {
                if (node is JsonObject o)
                {
                    if (!PythonValue(s, ref i, false, out var key) || key is not JsonValue kv || kv.GetValueKind() != JsonValueKind.String) return false;
                    Skip(s, ref i);
                    if (i >= s.Length || s[i] != ':') return false;
                    i++;
                    if (!PythonValue(s, ref i, false, out var v)) return false;
                    o[kv.GetValue<string>()] = v;
                }
                else
                {
                    if (!PythonValue(s, ref i, false, out var v)) return false;
                    ((JsonArray)node).Add(v);
                }
                Skip(s, ref i);
                if (i < s.Length && s[i] == ',') { i++; Skip(s, ref i); }
            }
            if (i >= s.Length) return false;
            i++;
            value = node;
            return true;
        }
        var m = PythonScalar().Match(s, i);
        if (!m.Success || m.Index != i) return false;
        i += m.Length;
        value = m.Value switch
        {
            "True" or "true" => JsonValue.Create(true),
            "False" or "false" => JsonValue.Create(false),
            "None" or "null" => null,
            var n when long.TryParse(n, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long l) => JsonValue.Create(l),
            var n => JsonValue.Create(double.Parse(n, System.Globalization.CultureInfo.InvariantCulture)),
        };
        return true;
    }

    [GeneratedRegex(@"True|False|None|true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")]
    private static partial Regex PythonScalar();

    /// <summary>XML-style arguments: a value is a string when the schema says string (or the text is not JSON), else JSON.</summary>
    private static bool XmlCall(string name, IEnumerable<(string Key, string Value)> arguments, IReadOnlyList<ToolDefinition> tools, List<LlmToolCall> calls)
    {
        var tool = tools.FirstOrDefault(t => t.Name == name);
        var args = new JsonObject();
        foreach (var (key, raw) in arguments)
        {
            var schema = tool?.Property(key);
            JsonNode? value = null;
            bool isString = IsString(schema);
            if (!isString)
            {
                try
                {
                    value = JsonNode.Parse(raw.Trim());
                }
                catch (JsonException)
                {
                    isString = true;
                }
            }
            args[key] = isString ? JsonValue.Create(raw) : value;
        }
        calls.Add(new LlmToolCall(NewId(), name, args.ToJsonString()));
        return true;
    }

    /// <summary>The one JSON value that starts at <paramref name="start"/> (after whitespace), and where it ends; null when none parses.</summary>
    private static (string Text, int End)? ReadJson(string text, int start)
    {
        while (start < text.Length && char.IsWhiteSpace(text[start])) start++;
        if (start >= text.Length) return null;
        var bytes = Encoding.UTF8.GetBytes(text[start..]);
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { AllowMultipleValues = true });
        try
        {
            if (!reader.Read() || !reader.TrySkip()) return null;
        }
        catch (JsonException)
        {
            return null;
        }
        int consumed = (int)reader.BytesConsumed;
        var json = Encoding.UTF8.GetString(bytes, 0, consumed);
        return (json, start + json.Length);
    }
}
