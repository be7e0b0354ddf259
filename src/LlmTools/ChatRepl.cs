using System.Globalization;
using LlmTools.Engine.Remote;

namespace LlmTools;

/// <summary>
/// What Start-LlmChat needs of a conversation, local (<see cref="ChatSession"/>) or on a server
/// (<see cref="RemoteChatSession"/>): one REPL drives both.
/// </summary>
internal abstract class ReplChat : IDisposable
{
    public abstract string Model { get; }
    /// <summary>The model file, or the server's URL.</summary>
    public abstract string Where { get; }
    /// <summary>0 when the server decides (remote).</summary>
    public abstract int ContextSize { get; }
    public abstract int Turns { get; }
    public abstract int TokensUsed { get; }
    public abstract IReadOnlyList<LlmChatMessage> Messages { get; }
    public abstract string? SystemPrompt { get; set; }
    public abstract void Reset();
    public abstract bool TrimOldestExchange();
    public abstract string ToJson();
    public abstract void LoadJson(string json);
    public abstract LlmChatReply Send(string message, ReplOptions overrides, IEngineEvents events, CancellationToken cancel);
    /// <summary>The sampling options the next turn uses, as text (only those that apply).</summary>
    public abstract string DescribeOptions(ReplOptions overrides);
    /// <summary>Which template formats the conversation, in a few words.</summary>
    public abstract string DescribeTemplate();
    /// <summary>The template's text; null when there is none to show.</summary>
    public abstract string? TemplateText { get; }
    /// <summary>Tokens the messages take as the model sees them (with the prompt for the reply); null when unknown (remote).</summary>
    public abstract int? CountTokens(IReadOnlyList<LlmChatMessage> messages, IEngineEvents events, CancellationToken cancel);
    public abstract void Dispose();

    public static string Quote(IEnumerable<string> strings) =>
        "[" + string.Join(", ", strings.Select(s => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n") + "\"")) + "]";
}

internal sealed class LocalReplChat(ChatSession session) : ReplChat
{
    public ChatSession Session { get; } = session;
    public override string Model => Session.Model;
    public override string Where => Session.ModelPath;
    public override int ContextSize => Session.ContextSize;
    public override int Turns => Session.Turns;
    public override int TokensUsed => Session.TokensUsed;
    public override IReadOnlyList<LlmChatMessage> Messages => Session.Messages;
    public override string? SystemPrompt { get => Session.SystemPrompt; set => Session.SystemPrompt = value; }
    public override void Reset() => Session.Reset();
    public override bool TrimOldestExchange() => Session.TrimOldestExchange();
    public override string ToJson() => Session.ToJson();
    public override void LoadJson(string json) => Session.LoadJson(json);

    public override LlmChatReply Send(string message, ReplOptions overrides, IEngineEvents events, CancellationToken cancel) =>
        Session.Send(message, events, cancel, trimHistory: false, adjust: overrides.IsEmpty ? null : Apply(overrides));

    /// <summary>The results of the last reply's tool calls, with the same /set options.</summary>
    public LlmChatReply SendToolResults(IReadOnlyList<LlmToolResult> results, ReplOptions overrides, IEngineEvents events, CancellationToken cancel) =>
        Session.SendToolResults(results, events, cancel, trimHistory: false, adjust: overrides.IsEmpty ? null : Apply(overrides));

    private Func<CompletionOptions, CompletionOptions> Apply(ReplOptions o)
    {
        var formatStops = Session.Format.StopStrings;
        return x => x with
        {
            MaxTokens = o.MaxTokens ?? x.MaxTokens,
            Temperature = o.Temperature ?? x.Temperature,
            TopK = o.TopK ?? x.TopK,
            TopP = o.TopP ?? x.TopP,
            MinP = o.MinP ?? x.MinP,
            RepeatPenalty = o.RepeatPenalty ?? x.RepeatPenalty,
            Seed = o.SeedSet ? o.Seed : x.Seed,
            Stop = o.Stop is null ? x.Stop : [.. o.Stop, .. formatStops],
        };
    }

    public override string DescribeOptions(ReplOptions overrides)
    {
        var x = overrides.IsEmpty ? Session.Options : Apply(overrides)(Session.Options);
        var formatStops = Session.Format.StopStrings;
        var userStops = x.Stop.Take(Math.Max(0, x.Stop.Count - formatStops.Count));
        var text = FormattableString.Invariant(
            $"max-tokens {x.MaxTokens}, temperature {x.Temperature}, top-k {x.TopK}, top-p {x.TopP}, min-p {x.MinP}, repeat-penalty {x.RepeatPenalty}, seed {(x.Seed?.ToString(CultureInfo.InvariantCulture) ?? "random")}, stop {Quote(userStops)}");
        return formatStops.Count > 0 ? $"{text} (and the end-of-turn markers {Quote(formatStops)})" : text;
    }

    public override string DescribeTemplate() =>
        Session.Format.IsTranscript ? "none: a plain User:/Assistant: transcript (the model has no chat template)"
        : $"a Jinja chat template of {Session.Format.TemplateSource?.Length ?? 0} characters (/show template prints it)";

    public override string? TemplateText => Session.Format.TemplateSource;

    public override int? CountTokens(IReadOnlyList<LlmChatMessage> messages, IEngineEvents events, CancellationToken cancel)
    {
        var text = Session.Format.Render(messages, addGenerationPrompt: true);
        using var lease = ModelCache.Instance.AcquireTokenizer(Session.ModelPath, events, cancel);
        return CompletionEngine.Tokenize(lease, text, addSpecial: Session.Format.AddBos(text) != false).Count;
    }

    public override void Dispose() => Session.Dispose();
}

internal sealed class RemoteReplChat(RemoteChatSession session) : ReplChat
{
    public RemoteChatSession Session { get; } = session;
    public override string Model => Session.Model;
    public override string Where => Session.Endpoint.Url;
    public override int ContextSize => 0;
    public override int Turns => Session.Turns;
    public override int TokensUsed => Session.TokensUsed;
    public override IReadOnlyList<LlmChatMessage> Messages => Session.Messages;
    public override string? SystemPrompt { get => Session.SystemPrompt; set => Session.SystemPrompt = value; }
    public override void Reset() => Session.Reset();
    public override bool TrimOldestExchange() => Session.TrimOldestExchange();
    public override string ToJson() => Session.ToJson();
    public override void LoadJson(string json) => Session.LoadJson(json);

    public override LlmChatReply Send(string message, ReplOptions overrides, IEngineEvents events, CancellationToken cancel) =>
        Session.Send(message, events, cancel, stream: true, adjust: overrides.IsEmpty ? null : Apply(overrides));

    private static Func<RemoteOptions, RemoteOptions> Apply(ReplOptions o) => x => x with
    {
        MaxTokens = o.MaxTokens ?? x.MaxTokens,
        Temperature = o.Temperature ?? x.Temperature,
        TopK = o.TopK ?? x.TopK,
        TopP = o.TopP ?? x.TopP,
        MinP = o.MinP ?? x.MinP,
        RepeatPenalty = o.RepeatPenalty ?? x.RepeatPenalty,
        Seed = o.SeedSet ? o.Seed : x.Seed,
        Stop = o.Stop ?? x.Stop,
    };

    public override string DescribeOptions(ReplOptions overrides)
    {
        var x = overrides.IsEmpty ? Session.Options : Apply(overrides)(Session.Options);
        string Or(object? v) => v is null ? "server's default" : Convert.ToString(v, CultureInfo.InvariantCulture)!;
        return $"max-tokens {x.MaxTokens}, temperature {Or(x.Temperature)}, top-k {Or(x.TopK)}, top-p {Or(x.TopP)}, min-p {Or(x.MinP)}, " +
               $"repeat-penalty {Or(x.RepeatPenalty)}, seed {(x.Seed is { } s ? s.ToString(CultureInfo.InvariantCulture) : "random")}, stop {Quote(x.Stop)}";
    }

    public override string DescribeTemplate() => "the server's (it formats the conversation with the model's own template)";
    public override string? TemplateText => null;
    public override int? CountTokens(IReadOnlyList<LlmChatMessage> messages, IEngineEvents events, CancellationToken cancel) => null;
    public override void Dispose() => Session.Dispose();
}

/// <summary>Sampling options changed with /set: null keeps the session's own.</summary>
internal sealed class ReplOptions
{
    public int? MaxTokens { get; private set; }
    public float? Temperature { get; private set; }
    public int? TopK { get; private set; }
    public float? TopP { get; private set; }
    public float? MinP { get; private set; }
    public float? RepeatPenalty { get; private set; }
    public bool SeedSet { get; private set; }
    public uint? Seed { get; private set; }
    public IReadOnlyList<string>? Stop { get; private set; }

    public bool IsEmpty => MaxTokens is null && Temperature is null && TopK is null && TopP is null && MinP is null &&
                           RepeatPenalty is null && !SeedSet && Stop is null;

    public const string Names = "temperature, top-p, top-k, min-p, repeat-penalty, seed, max-tokens, stop";

    /// <summary>
    /// Sets one option from "/set NAME VALUE" (names as in Ollama's /set parameter too: top_p, num_predict); returns
    /// what was set, in words. A wrong name or value is an LlmException and changes nothing.
    /// </summary>
    public string Set(string name, string value)
    {
        var key = name.ToLowerInvariant().Replace("_", "-");
        var next = Clone();
        string said;
        switch (key)
        {
            case "temperature" or "temp": next.Temperature = Float(); said = $"temperature {next.Temperature.Value.ToString(CultureInfo.InvariantCulture)}"; break;
            case "top-p" or "topp": next.TopP = Float(); said = $"top-p {next.TopP.Value.ToString(CultureInfo.InvariantCulture)}"; break;
            case "top-k" or "topk": next.TopK = Int(); said = $"top-k {next.TopK}"; break;
            case "min-p" or "minp": next.MinP = Float(); said = $"min-p {next.MinP.Value.ToString(CultureInfo.InvariantCulture)}"; break;
            case "repeat-penalty" or "repeatpenalty": next.RepeatPenalty = Float(); said = $"repeat-penalty {next.RepeatPenalty.Value.ToString(CultureInfo.InvariantCulture)}"; break;
            case "max-tokens" or "maxtokens" or "num-predict":
                next.MaxTokens = Int();
                said = $"max-tokens {next.MaxTokens}";
                break;
            case "seed":
                next.SeedSet = true;
                if (value.Trim().ToLowerInvariant() is "random" or "none" or "")
                {
                    next.Seed = null;
                    said = "seed random (a new one each reply)";
                }
                else
                {
                    next.Seed = uint.TryParse(value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? s
                        : throw Bad("a whole number from 0 to 4294967295, or random");
                    said = $"seed {next.Seed}";
                }
                break;
            case "stop":
                next.Stop = value.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                said = next.Stop.Count == 0 ? "no stop strings" : $"stop {ReplChat.Quote(next.Stop)}";
                break;
            default:
                throw new LlmException("ChatSetUnknown", LlmErrorKind.InvalidArgument,
                    $"/set does not know '{name}': it sets {Names} (and /system sets the system prompt).", name);
        }
        // The same checks as the parameters, before anything changes.
        CompletionEngine.ValidateOptions(new CompletionOptions
        {
            MaxTokens = next.MaxTokens ?? CompletionOptions.DefaultMaxTokens,
            Temperature = next.Temperature ?? 0.8f,
            TopK = next.TopK ?? 40,
            TopP = next.TopP ?? 0.95f,
            MinP = next.MinP ?? 0.05f,
            RepeatPenalty = next.RepeatPenalty ?? 1.1f,
            Stop = next.Stop ?? [],
        });
        CopyFrom(next);
        return said;

        float Float() => float.TryParse(value.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && float.IsFinite(f) ? f
            : throw Bad("a number such as 0.7");
        int Int() => int.TryParse(value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i
            : throw Bad("a whole number");
        LlmException Bad(string what) => new("ChatSetInvalid", LlmErrorKind.InvalidArgument,
            $"/set {name} takes {what}, not '{value}'.", value);
    }

    private ReplOptions Clone() => (ReplOptions)MemberwiseClone();

    private void CopyFrom(ReplOptions o)
    {
        MaxTokens = o.MaxTokens; Temperature = o.Temperature; TopK = o.TopK; TopP = o.TopP; MinP = o.MinP;
        RepeatPenalty = o.RepeatPenalty; SeedSet = o.SeedSet; Seed = o.Seed; Stop = o.Stop;
    }
}

/// <summary>
/// Lines become messages as in Ollama: a line ending in a backslash goes on in the next line, and a block between
/// """ and """ is one message, newlines kept.
/// </summary>
internal sealed class MultiLineInput
{
    private const string Fence = "\"\"\"";
    private readonly List<string> _lines = [];
    private bool _inBlock;
    private bool _continued;

    /// <summary>True while a message is incomplete (the next line continues it).</summary>
    public bool Pending => _inBlock || _continued;

    /// <summary>Adds a line; returns the message once it is complete (IsBlock: it came from a """ block, never a command).</summary>
    public (string Text, bool IsBlock)? Add(string line)
    {
        if (_inBlock)
        {
            var end = line.TrimEnd();
            if (!end.EndsWith(Fence, StringComparison.Ordinal))
            {
                _lines.Add(line);
                return null;
            }
            _lines.Add(end[..^Fence.Length]);
            return Take(isBlock: true);
        }
        if (!_continued && line.TrimStart().StartsWith(Fence, StringComparison.Ordinal))
        {
            var rest = line.TrimStart()[Fence.Length..];
            var restEnd = rest.TrimEnd();
            if (restEnd.EndsWith(Fence, StringComparison.Ordinal))
            {
                _lines.Add(restEnd[..^Fence.Length]);
                return Take(isBlock: true);
            }
            _inBlock = true;
            if (rest.Trim().Length > 0) _lines.Add(rest);
            return null;
        }
        if (line.EndsWith('\\'))
        {
            _lines.Add(line[..^1]);
            _continued = true;
            return null;
        }
        _lines.Add(line);
        bool wasContinued = _continued;
        return Take(isBlock: wasContinued);
    }

    /// <summary>What is left at the end of input: an unfinished block or continuation is sent as it is.</summary>
    public (string Text, bool IsBlock)? Flush() => _lines.Count > 0 ? Take(isBlock: true) : null;

    private (string, bool) Take(bool isBlock)
    {
        var text = string.Join("\n", _lines);
        _lines.Clear();
        _inBlock = _continued = false;
        return (text, isBlock);
    }
}
