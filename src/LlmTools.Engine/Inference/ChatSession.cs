using LlmTools.Engine.Inference;
using LlmTools.Engine.Tools;

namespace LlmTools.Engine;

/// <summary>
/// A conversation with a model that keeps its KV state between turns: each turn renders the whole conversation with
/// the model's chat template, and only the tokens that are new since the last turn are evaluated. Used by one call at
/// a time; a second concurrent call is refused, never interleaved.
/// </summary>
public sealed class ChatSession : IDisposable
{
    private readonly ModelLease _lease;
    // The sequence the model's scheduler keeps for this conversation between turns (its KV cells).
    private readonly ModelScheduler.SequenceOwner _sequence = new(forgetOnRelease: false);
    private readonly int _threads;
    private readonly ChatHistory _history = new();
    private List<LlmChatMessage> _messages => _history.Messages;
    private int _busy;
    private bool _disposed;

    public ChatSession(ModelLease lease, ChatFormat format, string? systemPrompt, CompletionOptions options, ContextOptions contextOptions,
        IEngineEvents events)
    {
        CompletionEngine.ValidateOptions(options);
        CompletionEngine.RequireWeights(lease.Model);
        _lease = lease;
        Format = format;
        Options = options with
        {
            Stop = [.. options.Stop, .. format.StopStrings],
            StopTokenIds = [.. options.StopTokenIds, .. format.StopTokenIds],
        };
        var resolved = lease.Model.Resolve(contextOptions);
        LoadedModel.WarnAboutThreads(resolved.Threads, events);
        ContextSize = resolved.ContextSize;
        _threads = resolved.Threads;
        SystemPrompt = systemPrompt;
    }

    public ChatFormat Format { get; }
    public CompletionOptions Options { get; }
    public int ContextSize { get; }
    public string Model => _lease.Info.Name;
    public string ModelPath => _lease.Info.Path;
    public IReadOnlyList<LlmChatMessage> Messages => _messages;
    /// <summary>Exchanges so far (user messages answered).</summary>
    public int Turns => _history.Turns;
    /// <summary>Tokens the conversation takes now, as of the last turn.</summary>
    public int TokensUsed { get; private set; }

    public string? SystemPrompt
    {
        get => _history.SystemPrompt;
        set => _history.SystemPrompt = value;
    }

    /// <summary>
    /// Tools the model may call: the template shows them, a call is held to their schemas by a grammar, and a reply's
    /// calls are in <see cref="LlmChatReply.ToolCalls"/>. Running them is the caller's: <see cref="SendToolResults"/>.
    /// </summary>
    public IReadOnlyList<ToolDefinition> Tools
    {
        get => _tools;
        set
        {
            var tools = value ?? [];
            if (tools.Count > 0 && Format.IsTranscript)
                throw new LlmException("ToolsNeedChatTemplate", LlmErrorKind.InvalidArgument,
                    $"'{Model}' has no chat template, so it cannot be shown tools: give -Template with one that renders 'tools'.");
            var duplicate = tools.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
            if (duplicate is not null)
                throw new LlmException("ToolNameDuplicate", LlmErrorKind.InvalidArgument, $"Two tools are named '{duplicate.Key}'; tool names must differ.", duplicate.Key);
            _tools = tools;
            CheckChoice(ToolChoice, tools);
        }
    }
    private IReadOnlyList<ToolDefinition> _tools = [];
    private IReadOnlyList<ToolDefinition>? _toolsChecked; // the tools whose rendering was checked (once per set)

    /// <summary>Auto (the model decides), Required (its first reply to each message is a call), None, or one tool's name.</summary>
    public ToolChoice ToolChoice
    {
        get => _toolChoice;
        set
        {
            CheckChoice(value ?? ToolChoice.Auto, _tools);
            _toolChoice = value ?? ToolChoice.Auto;
        }
    }
    private ToolChoice _toolChoice = ToolChoice.Auto;

    /// <summary>How this model's template writes tool calls (recognised from the template's source).</summary>
    public ToolCallFormat ToolFormat => _toolFormat ??= ToolCallFormat.For(Format.TemplateSource);
    private ToolCallFormat? _toolFormat;

    private static void CheckChoice(ToolChoice choice, IReadOnlyList<ToolDefinition> tools)
    {
        if (choice.Mode == ToolChoiceMode.Named && tools.Count > 0 && !tools.Any(t => t.Name == choice.Name))
            throw new LlmException("ToolChoiceUnknown", LlmErrorKind.InvalidArgument,
                $"-ToolChoice '{choice.Name}' is none of the tools ({string.Join(", ", tools.Select(t => t.Name))}), nor Auto, Required or None.", choice.Name);
    }

    /// <summary>Sends a user message and returns the reply, which joins the conversation.</summary>
    /// <param name="trimHistory">Drop the oldest exchanges when the conversation no longer fits the context.</param>
    /// <param name="adjust">Changes the session's sampling options for this turn only (Invoke-LlmChat -Session -Temperature 0.2).</param>
    public LlmChatReply Send(string message, IEngineEvents events, CancellationToken cancel, bool trimHistory = false,
        Func<CompletionOptions, CompletionOptions>? adjust = null)
    {
        EnterBusy();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _messages.Add(new LlmChatMessage("user", message));
            try
            {
                return Answer(message, events, cancel, trimHistory, adjust, firstRound: true);
            }
            catch
            {
                _messages.RemoveAt(_messages.Count - 1); // the conversation stays as it was
                throw;
            }
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// Gives the model the results of the tool calls of its last reply (as "tool" messages, in order) and returns its
    /// next reply, which may call tools again. Required or a named -ToolChoice applies to the first reply to a message
    /// only: after results the model decides (Auto), or it could never answer.
    /// </summary>
    public LlmChatReply SendToolResults(IReadOnlyList<LlmToolResult> results, IEngineEvents events, CancellationToken cancel,
        bool trimHistory = false, Func<CompletionOptions, CompletionOptions>? adjust = null)
    {
        ArgumentNullException.ThrowIfNull(results);
        EnterBusy();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var last = _messages.LastOrDefault();
            if (last is not { Role: "assistant", ToolCalls.Count: > 0 })
                throw new LlmException("NoToolCallsPending", LlmErrorKind.InvalidOperation,
                    "The last reply called no tools, so there are no results to give; send a message instead.");
            int count = _messages.Count;
            foreach (var r in results)
                _messages.Add(new LlmChatMessage("tool", r.Content) { ToolCallId = r.Call.Id, Name = r.Call.Name });
            var message = _messages.LastOrDefault(m => m.Role == "user")?.Content ?? "";
            try
            {
                FitToolResults(count, events, cancel);
            }
            catch
            {
                _messages.RemoveRange(count, _messages.Count - count);
                throw;
            }
            try
            {
                return Answer(message, events, cancel, trimHistory, adjust, firstRound: false);
            }
            catch
            {
                _messages.RemoveRange(count, _messages.Count - count);
                throw;
            }
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// Cuts the longest of the tool results from <paramref name="first"/> on until the conversation leaves room for a
    /// reply (a quarter of the context, or MaxTokens if less): a command that writes more than the context holds
    /// would otherwise fail the whole turn and lose every result. The model is told what was cut.
    /// </summary>
    private void FitToolResults(int first, IEngineEvents events, CancellationToken cancel)
    {
        var tools = _tools.Count == 0 ? null : _tools.Select(t => (object?)t.ToTemplateValue()).ToList();
        int room = ContextSize - Math.Min(Options.MaxTokens, ContextSize / 4);
        var cuts = new Dictionary<int, (string Original, int Kept)>(); // message index -> the whole result, characters kept
        for (int attempt = 0; attempt < 16; attempt++)
        {
            var segments = Format.RenderSegments(_messages, addGenerationPrompt: true, tools, cancellationToken: cancel);
            int count = Sequence.TokenizeChat(_lease.Model, segments, Format.AddBos(segments.Text)).Length;
            if (count <= room) break;
            int Kept(int i) => cuts.TryGetValue(i, out var c) ? c.Kept : _messages[i].Content.Length;
            int longest = Enumerable.Range(first, _messages.Count - first).MaxBy(Kept);
            string original = cuts.TryGetValue(longest, out var cut) ? cut.Original : _messages[longest].Content;
            // Characters a token in this result (1 for a byte-level vocabulary, ~4 for English in most), a little more
            // cut than the overflow needs; the next pass checks.
            int kept = Kept(longest);
            int tokensOfResult = Math.Max(1, _lease.Model.Handle.Tokenize(original[..kept], false, false, System.Text.Encoding.UTF8).Length);
            int keep = Math.Max(64, kept - (int)Math.Ceiling((count - room + 8) * 1.1 * kept / tokensOfResult));
            if (keep >= kept) break; // cut to the bone and still too long: the send says the conversation is too long
            cuts[longest] = (original, keep);
            var m = _messages[longest];
            _messages[longest] = new LlmChatMessage("tool",
                original[..keep] + $"\n[... cut: the result was {original.Length} characters, more than the context of {ContextSize} tokens holds]")
                { ToolCallId = m.ToolCallId, Name = m.Name };
        }
        foreach (var (i, c) in cuts)
            events.Warning($"The result of tool '{_messages[i].Name}' was cut to {c.Kept} of {c.Original.Length} characters to fit the context of {ContextSize} tokens.");
    }

    private LlmChatReply Answer(string message, IEngineEvents events, CancellationToken cancel, bool trimHistory,
        Func<CompletionOptions, CompletionOptions>? adjust, bool firstRound)
    {
        var tools = _tools.Count == 0 ? null : _tools.Select(t => (object?)t.ToTemplateValue()).ToList();
        var choice = _toolChoice.Mode;
        // A call that must be made with no tool to call: an error, as OpenAI's API (and the server) answer it, not a
        // reply in text as if the choice had not been given. (The setters allow either order: checked at the send.)
        if (tools is null && choice is ToolChoiceMode.Required or ToolChoiceMode.Named)
            throw new LlmException("ToolChoiceNeedsTools", LlmErrorKind.InvalidArgument,
                $"-ToolChoice {_toolChoice} needs tools, and none were given: add -Tool, or leave -ToolChoice out.", _toolChoice.ToString());
        if (!firstRound && choice is ToolChoiceMode.Required or ToolChoiceMode.Named) choice = ToolChoiceMode.Auto;
        var model = _lease.Model;
        string prompt;
        LLama.Native.LLamaToken[] tokens;
        while (true)
        {
            var segments = Format.RenderSegments(_messages, addGenerationPrompt: true, tools, cancellationToken: cancel);
            prompt = segments.Text;
            tokens = Sequence.TokenizeChat(model, segments, Format.AddBos(prompt));
            int count = tokens.Length;
            if (count < ContextSize) break;
            if (!trimHistory || !TrimOldest(keepLastUser: true))
                throw new LlmException("ConversationTooLong", LlmErrorKind.LimitsExceeded,
                    $"The conversation is {count} tokens but the context holds {ContextSize}. Drop the oldest turns (/trim in Start-LlmChat, " +
                    "-TrimHistory in Invoke-LlmChat), start over (/reset), or use a larger -ContextSize.", count);
            events.Warning("The conversation outgrew the context: the oldest exchange was dropped.");
        }
        var options = (adjust is null ? Options : adjust(Options)) with { AddBos = Format.AddBos(prompt) };
        if (adjust is not null) CompletionEngine.ValidateOptions(options);
        if (tools is not null && !ReferenceEquals(_toolsChecked, _tools))
        {
            // A template that ignores 'tools' would leave the model calling tools it was never shown.
            _toolsChecked = _tools;
            if (Format.Render(_messages, addGenerationPrompt: true, cancellationToken: cancel) == prompt)
                events.Warning("The chat template does not show tools to the model (it ignores the 'tools' variable): give -Template with one that renders them.");
        }
        if (tools is not null && choice != ToolChoiceMode.None)
        {
            if (options.Grammar is not null)
                throw new LlmException("GrammarConflict", LlmErrorKind.InvalidArgument,
                    "Tool calls are held to the tools' schemas by a grammar of their own: -JsonSchema or -Grammar cannot be given with tools (use -ToolChoice None).");
            var callable = choice == ToolChoiceMode.Named ? _tools.Where(t => t.Name == _toolChoice.Name).ToList() : _tools;
            options = options with { Grammar = ToolFormat.Grammar(callable, required: choice != ToolChoiceMode.Auto) };
        }
        var sequence = new Sequence(model, "", prompt, options, ContextSize, _lease.TakeLoadDuration(), tokens);
        var result = model.Scheduler.Run(new ModelScheduler.Job(model.Scheduler, sequence, ContextSize, _threads, events, cancel) { Session = _sequence });
        var text = Format.IsTranscript ? result.Text.Trim() : result.Text;
        IReadOnlyList<LlmToolCall> calls = [];
        if (tools is not null && choice != ToolChoiceMode.None && result.StopReason != LlmStopReason.Cancelled)
        {
            var parsed = ToolFormat.Parse(result.Text, _tools);
            if (parsed.Calls.Count > 0) (text, calls) = (parsed.Content, parsed.Calls);
        }
        if (result.StopReason != LlmStopReason.Cancelled || result.Text.Length > 0)
            _messages.Add(new LlmChatMessage("assistant", text) { ToolCalls = calls.Count > 0 ? [.. calls] : null });
        else if (firstRound)
            _messages.RemoveAt(_messages.Count - 1);
        TokensUsed = result.PromptTokens + result.CompletionTokens;
        return LlmChatReply.From(result, message, Turns, text, calls);
    }

    /// <summary>Drops the oldest user message and the replies after it (the system prompt stays). False when nothing can go.</summary>
    public bool TrimOldestExchange() => TrimOldest(keepLastUser: false);

    private bool TrimOldest(bool keepLastUser) => _history.TrimOldest(keepLastUser);

    /// <summary>Forgets the conversation (the system prompt stays) and the KV state.</summary>
    public void Reset()
    {
        EnterBusy();
        try
        {
            _history.ClearKeepingSystem();
            _lease.Model.Scheduler.Clear(_sequence, NullEngineEvents.Instance);
            TokensUsed = 0;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>One call at a time: a second concurrent one is refused, never interleaved.</summary>
    private void EnterBusy()
    {
        if (Interlocked.Exchange(ref _busy, 1) == 1)
            throw new LlmException("ChatSessionBusy", LlmErrorKind.ResourceBusy,
                "This chat session is answering another message right now; a session takes one message at a time. Use one session per thread.");
    }

    /// <summary>The conversation as JSON: [{"role": ..., "content": ...}], the form the Hub tools use.</summary>
    public string ToJson() => _history.ToJson();

    /// <summary>Replaces the conversation with one saved by <see cref="ToJson"/> (or any [{role, content}] array).</summary>
    public void LoadJson(string json)
    {
        var loaded = ChatHistory.Parse(json);
        EnterBusy();
        try
        {
            _history.Replace(loaded);
            TokensUsed = 0;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Ends the session; a turn under way is answered first (Ctrl+C stops it).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        // Wait for a turn in progress: its sequence is the scheduler's until it ends.
        var spin = new SpinWait();
        while (Interlocked.CompareExchange(ref _busy, 1, 0) == 1) spin.SpinOnce();
        try
        {
            if (_disposed) return;
            _disposed = true;
            _lease.Model.Scheduler.Release(_sequence, NullEngineEvents.Instance);
            _lease.Dispose();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    public override string ToString() => $"{Model}: {Turns} turns, {TokensUsed} of {ContextSize} tokens";
}
