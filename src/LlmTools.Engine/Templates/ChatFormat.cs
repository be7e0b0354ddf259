using System.Security.Cryptography;
using System.Text;
using LlmTools.Templates;

namespace LlmTools;

/// <summary>
/// A piece of a rendered prompt: text the template wrote (its markers: tokenize with special-token parsing), or text
/// that comes from a message's content (tokenize without it, so a user who types &lt;|im_end|&gt; cannot end a turn).
/// </summary>
public readonly record struct PromptSegment(string Text, bool IsContent);

/// <summary>
/// How conversations are turned into a model's prompt: its own chat template (or one given instead), or, for a base
/// model without one, a plain "User:/Assistant:" transcript that stops at the next turn marker so the model cannot
/// write the user's lines. Also where a turn ends: the template's end-of-turn marker, as a token and as text.
/// </summary>
public sealed class ChatFormat
{
    private const string Sentinel = "\u2063LLMTOOLS_SENTINEL\u2063";
    private readonly ChatTemplate? _template;
    private readonly Dictionary<string, object?> _variables;

    private ChatFormat(ChatTemplate? template, string? bos, string? eos, string? source)
    {
        _template = template;
        BosToken = bos ?? "";
        EosToken = eos ?? "";
        TemplateSource = source;
        _variables = new Dictionary<string, object?> { ["bos_token"] = BosToken, ["eos_token"] = EosToken };
    }

    /// <summary>True for the plain transcript used when there is no chat template (a base model).</summary>
    public bool IsTranscript => _template is null;
    public string? TemplateSource { get; }
    public string BosToken { get; }
    public string EosToken { get; }
    /// <summary>Text that ends a reply: the template's end-of-turn marker, or the transcript's next turn.</summary>
    public IReadOnlyList<string> StopStrings { get; private set; } = [];
    /// <summary>The end-of-turn marker as a token, when it is one (e.g. &lt;|im_end|&gt;, &lt;|eot_id|&gt;).</summary>
    public IReadOnlyList<int> StopTokenIds { get; private set; } = [];

    /// <summary>The format of a template text (ConvertTo-LlmPrompt -Template), without a model.</summary>
    public static ChatFormat FromTemplate(string template, string? bos, string? eos) =>
        new(Parse(template), bos, eos, template);

    /// <summary>The format for a loaded model: its template, or <paramref name="templateOverride"/>, or the transcript.</summary>
    public static ChatFormat ForModel(ModelLease lease, string? templateOverride, IEngineEvents events)
    {
        var info = lease.Info;
        var source = templateOverride ?? info.ChatTemplate;
        if (string.IsNullOrEmpty(source))
        {
            events.Warning($"'{info.Name}' has no chat template, so it is probably a base model, not a chat model: using a plain " +
                           "User:/Assistant: transcript that stops at the next 'User:'. Give -Template to use a template instead.");
            return new ChatFormat(null, info.BosToken, info.EosToken, null) { StopStrings = ["\nUser:", "\nAssistant:"] };
        }
        var format = new ChatFormat(Parse(source), info.BosToken, info.EosToken, source);
        format.FindTurnMarker(lease);
        return format;
    }

    private static ChatTemplate Parse(string source)
    {
        try
        {
            return ChatTemplate.Parse(source);
        }
        catch (TemplateException e)
        {
            throw new LlmException("ChatTemplateInvalid", LlmErrorKind.InvalidData,
                $"The chat template cannot be read: {e.Message}. Give a corrected one with -Template.", source, e);
        }
    }

    /// <summary>Renders messages as the model will see them.</summary>
    public string Render(IReadOnlyList<LlmChatMessage> messages, bool addGenerationPrompt, object? tools = null, DateTime? now = null,
        CancellationToken cancellationToken = default)
    {
        if (_template is null) return string.Concat(Transcript(messages, addGenerationPrompt).Select(x => x.Text));
        return RenderTemplate(messages.Select(m => m.Content).ToList(), messages, addGenerationPrompt, tools, now, cancellationToken);
    }

    private string RenderTemplate(IReadOnlyList<string> contents, IReadOnlyList<LlmChatMessage> messages, bool addGenerationPrompt, object? tools,
        DateTime? now, CancellationToken cancellationToken)
    {
        try
        {
            var list = messages.Select((m, i) => (object?)MessageValue(m, contents[i])).ToList();
            return _template!.Render(list, addGenerationPrompt, _variables, tools, now: now, cancellationToken: cancellationToken);
        }
        catch (TemplateException e)
        {
            throw new LlmException("ChatTemplateError", LlmErrorKind.InvalidOperation,
                $"The model's chat template refused this conversation{AtLine(e)}: {e.Message}", messages.Count, e);
        }
    }

    /// <summary>
    /// A message as transformers gives it to a template: role and content, an assistant's tool_calls as
    /// [{"id", "type": "function", "function": {"name", "arguments": {...}}}] (arguments as a mapping, which the
    /// templates iterate or tojson), a tool result's tool_call_id and name.
    /// </summary>
    private static Dictionary<string, object?> MessageValue(LlmChatMessage m, string content)
    {
        var d = new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = content };
        if (m.ToolCalls is { Count: > 0 } calls)
            d["tool_calls"] = calls.Select(c => (object?)new Dictionary<string, object?>
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new Dictionary<string, object?> { ["name"] = c.Name, ["arguments"] = ArgumentsValue(c.ArgumentsJson) },
            }).ToList();
        if (m.ToolCallId is not null) d["tool_call_id"] = m.ToolCallId;
        if (m.Name is not null) d["name"] = m.Name;
        return d;
    }

    private static object? ArgumentsValue(string json)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(json);
            return doc.RootElement.Clone();
        }
        catch (System.Text.Json.JsonException)
        {
            return json;
        }
    }

    private static string AtLine(TemplateException e) => e.Line is { } line ? $" (template line {line})" : "";

    /// <summary>
    /// Renders messages as <see cref="Render"/> does, split into what the template wrote and what comes from message
    /// content, so that content can be tokenized without special-token parsing. The segments joined are exactly the
    /// rendered prompt. How: the template is rendered again with a unique sentinel in place of each message's content,
    /// and the real rendering is matched against it piece by piece. A template that changes content beyond trimming
    /// whitespace (upper-cases it, splits it, or branches on what it contains) cannot be matched: then the whole prompt
    /// is one template segment, as before (<see cref="PromptSegments.ContentMarked"/> is false).
    /// </summary>
    public PromptSegments RenderSegments(IReadOnlyList<LlmChatMessage> messages, bool addGenerationPrompt, object? tools = null, DateTime? now = null,
        CancellationToken cancellationToken = default)
    {
        if (_template is null) return new PromptSegments(Merge(Transcript(messages, addGenerationPrompt)), true);
        var plain = RenderTemplate(messages.Select(m => m.Content).ToList(), messages, addGenerationPrompt, tools, now, cancellationToken);
        var whole = new PromptSegments(plain.Length == 0 ? [] : [new PromptSegment(plain, false)], false);
        if (messages.All(m => string.IsNullOrEmpty(m.Content))) return new PromptSegments(whole.Segments, true);

        // Private-use marks around digits: no template lower/upper-cases digits, and no message or template contains the mark pair.
        var nonce = RandomNumberGenerator.GetInt32(100_000_000).ToString("00000000", System.Globalization.CultureInfo.InvariantCulture);
        string Sentinel(int i) => "\uE000" + nonce + "_" + i + "\uE001";
        if (plain.Contains('\uE000') || messages.Any(m => m.Content.Contains('\uE000'))) return whole;
        var sentinels = messages.Select((m, i) => string.IsNullOrEmpty(m.Content) ? m.Content : Sentinel(i)).ToList();
        string marked;
        try
        {
            marked = RenderTemplate(sentinels, messages, addGenerationPrompt, tools, now, cancellationToken);
        }
        catch (LlmException)
        {
            return whole; // the template looks at content (e.g. refuses an unexpected one): no marking
        }
        return Match(plain, marked, messages, nonce) is { } segments ? new PromptSegments(segments, true) : whole;
    }

    /// <summary>Walks the real rendering along the sentinel rendering: literal pieces must agree, sentinels take the content (or it trimmed).</summary>
    private static List<PromptSegment>? Match(string plain, string marked, IReadOnlyList<LlmChatMessage> messages, string nonce)
    {
        var result = new List<PromptSegment>();
        int pos = 0, at = 0;
        string prefix = "\uE000" + nonce + "_";
        while (true)
        {
            int s = marked.IndexOf(prefix, at, StringComparison.Ordinal);
            int literalEnd = s < 0 ? marked.Length : s;
            var literal = marked.AsSpan(at, literalEnd - at);
            if (!plain.AsSpan(pos).StartsWith(literal, StringComparison.Ordinal)) return null;
            if (literal.Length > 0) result.Add(new PromptSegment(literal.ToString(), false));
            pos += literal.Length;
            if (s < 0) return pos == plain.Length ? Merge(result) : null;
            int close = marked.IndexOf('\uE001', s);
            if (close < 0 || !int.TryParse(marked.AsSpan(s + prefix.Length, close - s - prefix.Length), out int index) || index >= messages.Count) return null;
            at = close + 1;
            int next = marked.IndexOf(prefix, at, StringComparison.Ordinal);
            var following = marked.AsSpan(at, (next < 0 ? marked.Length : next) - at);
            var content = messages[index].Content;
            string? chosen = null;
            foreach (var candidate in (string[])[content, content.Trim(), content.TrimStart(), content.TrimEnd()])
            {
                var rest = plain.AsSpan(pos);
                if (rest.StartsWith(candidate, StringComparison.Ordinal) && rest[candidate.Length..].StartsWith(following, StringComparison.Ordinal))
                {
                    chosen = candidate;
                    break;
                }
            }
            if (chosen is null) return null;
            if (chosen.Length > 0) result.Add(new PromptSegment(chosen, true));
            pos += chosen.Length;
        }
    }

    private static List<PromptSegment> Merge(IEnumerable<PromptSegment> segments)
    {
        var merged = new List<PromptSegment>();
        foreach (var x in segments)
        {
            if (x.Text.Length == 0) continue;
            if (merged.Count > 0 && merged[^1].IsContent == x.IsContent) merged[^1] = new PromptSegment(merged[^1].Text + x.Text, x.IsContent);
            else merged.Add(x);
        }
        return merged;
    }

    /// <summary>Renders raw message dictionaries (any keys, tool calls...): ConvertTo-LlmPrompt.</summary>
    public string RenderRaw(IEnumerable<object?> messages, bool addGenerationPrompt, object? tools, DateTime? now = null,
        CancellationToken cancellationToken = default)
    {
        if (_template is null)
            return Transcript(messages.Select(m => m is LlmChatMessage c ? c : new LlmChatMessage(
                Py.Str(Runtime.GetItem(Py.FromClr(m), "role")), Py.Str(Runtime.GetItem(Py.FromClr(m), "content")))).ToList(), addGenerationPrompt)
                .Aggregate("", (a, x) => a + x.Text);
        try
        {
            return _template.Render(messages, addGenerationPrompt, _variables, tools, now: now, cancellationToken: cancellationToken);
        }
        catch (TemplateException e)
        {
            throw new LlmException("ChatTemplateError", LlmErrorKind.InvalidOperation, $"The chat template raised an error{AtLine(e)}: {e.Message}", null, e);
        }
    }

    /// <summary>Whether BOS is to be added when tokenizing a rendered prompt (not when the text already starts with it).</summary>
    public bool? AddBos(string rendered) => BosToken.Length > 0 && rendered.StartsWith(BosToken, StringComparison.Ordinal) ? false : null;

    private static List<PromptSegment> Transcript(IReadOnlyList<LlmChatMessage> messages, bool addGenerationPrompt)
    {
        var result = new List<PromptSegment>();
        void Add(string text, bool content) => result.Add(new PromptSegment(text, content));
        foreach (var m in messages)
        {
            switch (m.Role)
            {
                case "system": Add(m.Content, true); Add("\n\n", false); break;
                case "assistant": Add("Assistant: ", false); Add(m.Content.Trim(), true); Add("\n", false); break;
                default: Add(m.Role.Length == 0 ? ": " : char.ToUpperInvariant(m.Role[0]) + m.Role[1..] + ": ", false); Add(m.Content, true); Add("\n", false); break;
            }
        }
        if (addGenerationPrompt) Add("Assistant:", false);
        return result;
    }

    /// <summary>Finds what the template writes after an assistant's text: that is where a turn ends.</summary>
    private void FindTurnMarker(ModelLease lease)
    {
        string rendered;
        try
        {
            rendered = _template!.Render([
                new Dictionary<string, object?> { ["role"] = "user", ["content"] = "Hi" },
                new Dictionary<string, object?> { ["role"] = "assistant", ["content"] = Sentinel },
            ], false, _variables);
        }
        catch (TemplateException)
        {
            return;
        }
        int at = rendered.IndexOf(Sentinel, StringComparison.Ordinal);
        if (at < 0) return;
        var after = rendered[(at + Sentinel.Length)..].TrimStart(' ');
        int end = 0;
        while (end < after.Length && !char.IsWhiteSpace(after[end])) end++;
        var marker = after[..end];
        if (marker.Length == 0) return;
        StopStrings = [marker];
        var tokens = lease.Model.Handle.Tokenize(marker, false, true, Encoding.UTF8);
        if (tokens.Length == 1) StopTokenIds = [(int)tokens[0]];
    }
}

/// <summary>A rendered prompt in segments; ContentMarked is false when the template's handling of content could not be traced.</summary>
public sealed record PromptSegments(IReadOnlyList<PromptSegment> Segments, bool ContentMarked)
{
    /// <summary>The whole prompt, exactly as <see cref="ChatFormat.Render"/> returns it.</summary>
    public string Text => string.Concat(Segments.Select(x => x.Text));
}
