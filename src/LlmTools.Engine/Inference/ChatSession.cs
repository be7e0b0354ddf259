using LlmTools.Engine.Inference;

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
                return Answer(message, events, cancel, trimHistory, adjust);
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

    private LlmChatReply Answer(string message, IEngineEvents events, CancellationToken cancel, bool trimHistory,
        Func<CompletionOptions, CompletionOptions>? adjust)
    {
        var model = _lease.Model;
        string prompt;
        LLama.Native.LLamaToken[] tokens;
        while (true)
        {
            var segments = Format.RenderSegments(_messages, addGenerationPrompt: true, cancellationToken: cancel);
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
        var sequence = new Sequence(model, "", prompt, options, ContextSize, _lease.TakeLoadDuration(), tokens);
        var result = model.Scheduler.Run(new ModelScheduler.Job(model.Scheduler, sequence, ContextSize, _threads, events, cancel) { Session = _sequence });
        if (result.StopReason != LlmStopReason.Cancelled || result.Text.Length > 0)
            _messages.Add(new LlmChatMessage("assistant", Format.IsTranscript ? result.Text.Trim() : result.Text));
        else
            _messages.RemoveAt(_messages.Count - 1);
        TokensUsed = result.PromptTokens + result.CompletionTokens;
        return LlmChatReply.From(result, message, Turns);
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
