using System.Management.Automation;
using System.Management.Automation.Host;

namespace LlmTools.Commands;

/// <summary>
/// An interactive chat in the terminal: replies stream as they are generated, the conversation goes on turn by turn
/// without evaluating again what the model has already seen, and slash commands manage it.
/// </summary>
/// <remarks>
/// <para>Commands: /help, /reset, /system TEXT, /save FILE, /load FILE, /trim, /stats, /exit. Ctrl+C stops the
/// reply and stays in the chat. After each reply a short line gives tokens and speed.</para>
/// <para>Lines can come from the pipeline or redirected input (a file, another process) instead of the keyboard:
/// each line is a message or a command.</para>
/// </remarks>
/// <example>
/// <code>Start-LlmChat -Model Qwen/Qwen2.5-0.5B-Instruct-GGUF -SystemPrompt 'You are a helpful assistant.'</code>
/// <para>Chats until /exit (or end of input).</para>
/// </example>
/// <example>
/// <code>Get-Content script.txt | Start-LlmChat -Model ./chat.gguf -Temperature 0</code>
/// <para>Runs the lines of a file as a conversation.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Start, "LlmChat")]
[OutputType(typeof(void))]
public sealed class StartLlmChatCommand : ChatSessionCmdlet
{
    /// <summary>Lines to use instead of the keyboard: messages, or slash commands.</summary>
    [Parameter(ValueFromPipeline = true)]
    [AllowEmptyString]
    public string[]? InputObject { get; set; }

    /// <summary>Leave out the statistics line after each reply.</summary>
    [Parameter]
    public SwitchParameter NoStatistics { get; set; }

    private ChatSession? _session;
    private bool _exited;
    private bool _sawInput;

    private const string Help =
        "/help             this list\n" +
        "/reset            forget the conversation (keeps the system prompt)\n" +
        "/system TEXT      set the system prompt (and start over)\n" +
        "/save FILE        save the conversation as JSON ([{role, content}])\n" +
        "/load FILE        load a saved conversation\n" +
        "/trim             drop the oldest exchange (when the context is full)\n" +
        "/stats            tokens used of the context\n" +
        "/exit             leave (also /quit, /bye, or end of input)\n" +
        "Ctrl+C stops a reply and stays in the chat.";

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        try
        {
            _session = OpenSession();
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
        Say($"Chatting with {_session!.Model} ({_session.ContextSize} tokens of context). /help lists the commands, /exit leaves.");
    }

    protected override void ProcessRecord()
    {
        if (InputObject is null) return;
        _sawInput = true;
        foreach (var line in InputObject)
        {
            if (_exited) return;
            Say("> " + line);
            Handle(line);
        }
    }

    protected override void EndProcessing()
    {
        // Without pipeline input, read lines from the host: the keyboard, or redirected standard input.
        while (!_sawInput && !_exited)
        {
            if (!Console.IsInputRedirected) Host.UI.Write("> ");
            var line = Console.IsInputRedirected ? Console.In.ReadLine() : Host.UI.ReadLine();
            if (line is null) break;
            if (Console.IsInputRedirected) Say("> " + line);
            Handle(line);
        }
        Say("Bye.");
    }

    protected override void DisposeResources() => _session?.Dispose();

    private void Say(string text) => Host.UI.WriteLine(text);

    private void Handle(string line)
    {
        var session = _session!;
        var trimmed = line.Trim();
        if (trimmed.Length == 0) return;
        if (trimmed.StartsWith('/'))
        {
            var parts = trimmed.Split(' ', 2, StringSplitOptions.TrimEntries);
            var argument = parts.Length > 1 ? parts[1] : "";
            try
            {
                switch (parts[0].ToLowerInvariant())
                {
                    case "/help": Say(Help); break;
                    case "/reset": session.Reset(); Say("The conversation was reset."); break;
                    case "/system":
                        session.SystemPrompt = argument;
                        session.Reset();
                        Say(argument.Length > 0 ? "System prompt set; the conversation starts over." : "System prompt removed; the conversation starts over.");
                        break;
                    case "/save":
                        File.WriteAllText(ResolvePath(argument), session.ToJson());
                        Say($"Saved {session.Messages.Count} messages to {argument}.");
                        break;
                    case "/load":
                        session.LoadJson(File.ReadAllText(ResolvePath(argument)));
                        Say($"Loaded {session.Messages.Count} messages from {argument}.");
                        break;
                    case "/trim": Say(session.TrimOldestExchange() ? "The oldest exchange was dropped." : "Nothing to drop."); break;
                    case "/stats": Say($"{session.Turns} exchanges, {session.TokensUsed} of {session.ContextSize} tokens of context used."); break;
                    case "/exit" or "/quit" or "/bye": _exited = true; break;
                    default: Say($"Unknown command {parts[0]}; /help lists them."); break;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or LlmException)
            {
                WriteError(new ErrorRecord(e, e is LlmException le ? le.ErrorId : "ChatCommandFailed", ErrorCategory.InvalidOperation, line));
            }
            return;
        }
        Reply(session, line);
    }

    /// <summary>One reply, streamed; Ctrl+C (read as a key while the reply runs) stops it without leaving the chat.</summary>
    private void Reply(ChatSession session, string message)
    {
        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(Cancellation);
        bool keyboard = !Console.IsInputRedirected;
        bool treatCtrlC = false;
        if (keyboard)
        {
            try { treatCtrlC = Console.TreatControlCAsInput; Console.TreatControlCAsInput = true; }
            catch (IOException) { keyboard = false; }
        }
        try
        {
            using var watcher = keyboard ? new Timer(_ => WatchForCtrlC(interrupt), null, 50, 50) : null;
            var reply = RunEngine((events, _) => session.Send(message, events, interrupt.Token), streamText: true);
            Host.UI.WriteLine();
            if (reply.StopReason == LlmStopReason.Cancelled && !Cancellation.IsCancellationRequested) Say("[stopped]");
            if (!NoStatistics)
                Say($"[{reply.CompletionTokens} tokens, {reply.TokensPerSecond:F1} tok/s; prompt {reply.PromptTokens - reply.CachedPromptTokens} new of {reply.PromptTokens}; " +
                    $"{session.TokensUsed} of {session.ContextSize} context; {reply.StopReason}]");
        }
        catch (LlmException e) when (e.ErrorId == "ConversationTooLong")
        {
            WriteWarning(e.Message);
            Say("Type /trim to drop the oldest exchange and send again, or /reset to start over.");
        }
        catch (LlmException e)
        {
            WriteLlmError(e);
        }
        finally
        {
            if (keyboard)
                try { Console.TreatControlCAsInput = treatCtrlC; } catch (IOException) { }
        }
    }

    private static void WatchForCtrlC(CancellationTokenSource interrupt)
    {
        try
        {
            while (Console.KeyAvailable)
            {
                var key = Console.ReadKey(intercept: true);
                if (key.Key == ConsoleKey.C && key.Modifiers.HasFlag(ConsoleModifiers.Control)) interrupt.Cancel();
            }
        }
        catch (InvalidOperationException) { }
        catch (IOException) { }
    }
}
