using System.Text;
using LlmTools.Templates;

namespace LlmTools;

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
    public string Render(IReadOnlyList<LlmChatMessage> messages, bool addGenerationPrompt, object? tools = null, DateTime? now = null)
    {
        if (_template is null) return Transcript(messages, addGenerationPrompt);
        try
        {
            var list = messages.Select(m => (object?)new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList();
            return _template.Render(list, addGenerationPrompt, _variables, tools, now: now);
        }
        catch (TemplateException e)
        {
            throw new LlmException("ChatTemplateError", LlmErrorKind.InvalidOperation,
                $"The model's chat template refused this conversation: {e.Message}", messages.Count, e);
        }
    }

    /// <summary>Renders raw message dictionaries (any keys, tool calls...): ConvertTo-LlmPrompt.</summary>
    public string RenderRaw(IEnumerable<object?> messages, bool addGenerationPrompt, object? tools, DateTime? now = null)
    {
        if (_template is null)
            return Transcript(messages.Select(m => m is LlmChatMessage c ? c : new LlmChatMessage(
                Py.Str(Runtime.GetItem(Py.FromClr(m), "role")), Py.Str(Runtime.GetItem(Py.FromClr(m), "content")))).ToList(), addGenerationPrompt);
        try
        {
            return _template.Render(messages, addGenerationPrompt, _variables, tools, now: now);
        }
        catch (TemplateException e)
        {
            throw new LlmException("ChatTemplateError", LlmErrorKind.InvalidOperation, $"The chat template raised an error: {e.Message}", null, e);
        }
    }

    /// <summary>Whether BOS is to be added when tokenizing a rendered prompt (not when the text already starts with it).</summary>
    public bool? AddBos(string rendered) => BosToken.Length > 0 && rendered.StartsWith(BosToken, StringComparison.Ordinal) ? false : null;

    private static string Transcript(IReadOnlyList<LlmChatMessage> messages, bool addGenerationPrompt)
    {
        var sb = new StringBuilder();
        foreach (var m in messages)
        {
            switch (m.Role)
            {
                case "system": sb.Append(m.Content).Append("\n\n"); break;
                case "assistant": sb.Append("Assistant: ").Append(m.Content.Trim()).Append('\n'); break;
                default: sb.Append(char.ToUpperInvariant(m.Role[0])).Append(m.Role[1..]).Append(": ").Append(m.Content).Append('\n'); break;
            }
        }
        if (addGenerationPrompt) sb.Append("Assistant:");
        return sb.ToString();
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
