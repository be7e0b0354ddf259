using System.Management.Automation;
using LlmTools.Engine.Remote;

namespace LlmTools.Commands;

/// <summary>
/// An interactive chat in the terminal: replies stream as they are generated, the conversation goes on turn by turn
/// without evaluating again what the model has already seen, and slash commands manage it. With -Endpoint the same
/// chat runs against a model on an OpenAI-compatible server.
/// </summary>
/// <remarks>
/// <para>Commands: /help; /set NAME VALUE (temperature, top-p, top-k, min-p, repeat-penalty, seed, max-tokens, stop;
/// also written as Ollama's /set parameter NAME VALUE) changes the sampling of the next replies; /show (model, context,
/// template, system prompt, options; /show template prints the template); /system TEXT; /reset; /save [FILE] (without
/// a name: chat-DATE-TIME.json in the current folder; an existing file is never replaced without saying so);
/// /load FILE; /trim [N] drops the N oldest exchanges; /stats (tokens of the conversation, also right after /load);
/// /exit (also /quit, /bye, Ctrl+D, or the end of input).</para>
/// <para>Multi-line messages as in Ollama: a line ending in a backslash goes on in the next line, and a block between
/// """ and """ is one message. At the keyboard, keys typed while a reply is generated are kept and read as the next
/// input (type /exit during a reply to leave after it); Up and Down recall this chat's earlier lines, and nothing typed
/// in the chat goes to the shell's history. The chat edits lines itself rather than through PSReadLine, whose Enter
/// reads the line as PowerShell and would not send a message such as "I don't know". Ctrl+C stops the reply and stays
/// in the chat; at the prompt it clears the line. After each reply a short line gives tokens and speed.</para>
/// <para>When a message does not fit the context, the chat says how long the conversation is and what the context
/// holds, and offers /trim only where dropping exchanges would make the message fit.</para>
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
/// <example>
/// <code>Start-LlmChat -Endpoint http://127.0.0.1:8080/v1 -Model qwen</code>
/// <para>The same chat with a model on an OpenAI-compatible server (Start-LlmServer, llama-server, vLLM, Ollama's /v1);
/// -ApiKey, or Connect-LlmEndpoint's key, or OPENAI_API_KEY is sent.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Start, "LlmChat", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
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

    /// <summary>
    /// Tools the model may call (local models): commands (Get-Command results), script blocks with a param block, or
    /// JSON tool definitions in OpenAI's shape. Each call the model makes is shown and runs after you confirm it
    /// (-Confirm:$false runs them without asking); its result goes back to the model, which then answers.
    /// </summary>
    [Parameter]
    public object[]? Tool { get; set; }

    /// <summary>Auto (default), Required (the first reply to each message must be a tool call), None (tools shown, never called), or a tool's name.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(ToolChoiceCompleter))]
    public string? ToolChoice { get; set; }

    /// <summary>Rounds of tool calls one message may lead to before the chat stops asking the model again. Default 5.</summary>
    [Parameter]
    [ValidateRange(1, 100)]
    public int MaxToolRounds { get; set; } = 5;

    private ReplChat? _chat;
    private ToolSet? _tools;
    private readonly ReplOptions _overrides = new();
    private readonly MultiLineInput _multiLine = new();
    private ConsoleLineReader? _reader;
    private bool _exited;
    private bool _sawInput;
    // Tokens of the conversation after /load or /trim, counted then (the session knows them only after its next turn).
    private int? _countedTokens;

    private const string Help =
        "/help                this list\n" +
        "/set NAME VALUE      change a sampling option for the next replies: " + ReplOptions.Names + "\n" +
        "                     (e.g. /set temperature 0.2, /set seed 42, /set stop END ###, /set stop to clear)\n" +
        "/show [template]     model, context, template, system prompt and options (template: its text)\n" +
        "/system TEXT         set the system prompt (and start over)\n" +
        "/reset               forget the conversation (keeps the system prompt)\n" +
        "/save [FILE]         save the conversation as JSON ([{role, content}]); without FILE: chat-DATE-TIME.json\n" +
        "/load FILE           load a saved conversation\n" +
        "/trim [N]            drop the N oldest exchanges (default 1), when the context is full\n" +
        "/stats               tokens used of the context\n" +
        "/exit                leave (also /quit, /bye, Ctrl+D, or end of input)\n" +
        "A line ending in \\ goes on in the next line; \"\"\" starts and ends a multi-line message.\n" +
        "Up and Down recall earlier lines; keys typed during a reply are kept for the next line.\n" +
        "Ctrl+C stops a reply and stays in the chat.";

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        try
        {
            if (Remote is not null && (Tool is not null || ToolChoice is not null))
                throw new LlmException("RemoteOptionNotSupported", LlmErrorKind.InvalidArgument,
                    $"-{(Tool is not null ? "Tool" : "ToolChoice")} applies to local models only for now.", Tool is not null ? "Tool" : "ToolChoice");
            _tools = Tool is { Length: > 0 } ? ToolSet.From(Tool, this) : null;
            var choice = ToolChoice is null ? null : LlmTools.Engine.Tools.ToolChoice.Parse(ToolChoice);
            if (Remote is not null) _chat = new RemoteReplChat(new RemoteChatSession(Remote, Model, SystemPrompt, RemoteOptions));
            else
            {
                var session = OpenSession();
                _chat = new LocalReplChat(session);
                if (_tools is not null) session.Tools = _tools.Definitions;
                if (choice is not null) session.ToolChoice = choice;
            }
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
        var context = _chat!.ContextSize > 0 ? $"{_chat.ContextSize} tokens of context" : $"at {_chat.Where}";
        Say($"Chatting with {_chat.Model} ({context}). /help lists the commands, /exit leaves.");
    }

    protected override void ProcessRecord()
    {
        if (InputObject is null) return;
        _sawInput = true;
        foreach (var line in InputObject)
        {
            if (_exited) return;
            Say((_multiLine.Pending ? "... " : "> ") + line);
            Feed(line);
        }
    }

    protected override void EndProcessing()
    {
        // Without pipeline input, read lines from the host: the keyboard, or redirected standard input.
        bool keyboard = !Console.IsInputRedirected;
        if (!_sawInput && keyboard) _reader = new ConsoleLineReader();
        while (!_sawInput && !_exited)
        {
            var prompt = _multiLine.Pending ? "... " : "> ";
            var line = keyboard ? _reader!.ReadLine(prompt) : Console.In.ReadLine();
            if (line is null) break;
            if (!keyboard) Say(prompt + line);
            Feed(line);
        }
        if (!_exited && _multiLine.Flush() is { } rest) Handle(rest.Text, rest.IsBlock);
        Say("Bye.");
    }

    protected override void DisposeResources() => _chat?.Dispose();

    private void Say(string text) => Host.UI.WriteLine(text);

    private void Feed(string line)
    {
        if (_multiLine.Add(line) is { } message) Handle(message.Text, message.IsBlock);
    }

    private void Handle(string line, bool isBlock)
    {
        var chat = _chat!;
        var trimmed = line.Trim();
        if (trimmed.Length == 0) return;
        if (!isBlock && trimmed.StartsWith('/'))
        {
            var parts = trimmed.Split(' ', 2, StringSplitOptions.TrimEntries);
            var argument = parts.Length > 1 ? parts[1] : "";
            try
            {
                switch (parts[0].ToLowerInvariant())
                {
                    case "/help" or "/?": Say(Help); break;
                    case "/reset":
                        chat.Reset();
                        _countedTokens = null;
                        Say("The conversation was reset.");
                        break;
                    case "/system": SetSystem(chat, argument); break;
                    case "/set": Set(chat, argument); break;
                    case "/show": Show(chat, argument); break;
                    case "/save": Save(chat, argument); break;
                    case "/load":
                        if (argument.Length == 0) throw new LlmException("ChatLoadNeedsFile", LlmErrorKind.InvalidArgument, "/load takes a file name: /load chat.json.");
                        chat.LoadJson(ReadChatFile(ResolvePath(argument), argument));
                        _countedTokens = RunEngine((events, cancel) => chat.CountTokens(chat.Messages, events, cancel));
                        Say($"Loaded {chat.Messages.Count} messages ({chat.Turns} exchanges{(_countedTokens is { } n ? $", {n} tokens" : "")}) from {argument}.");
                        break;
                    case "/trim": Trim(chat, argument); break;
                    case "/stats": Stats(chat); break;
                    case "/exit" or "/quit" or "/bye": _exited = true; break;
                    default: Say($"Unknown command {parts[0]}; /help lists them."); break;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or LlmException)
            {
                WriteError(new ErrorRecord(e, e is LlmException le ? le.ErrorId : "ChatCommandFailed",
                    e is LlmException ? ErrorCategory.InvalidArgument : ErrorCategory.WriteError, line));
            }
            return;
        }
        Reply(chat, line);
    }

    private void SetSystem(ReplChat chat, string text)
    {
        chat.SystemPrompt = text;
        chat.Reset();
        _countedTokens = null;
        Say(text.Length > 0 ? "System prompt set; the conversation starts over." : "System prompt removed; the conversation starts over.");
    }

    private void Set(ReplChat chat, string argument)
    {
        var parts = argument.Split(' ', 2, StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length > 0 && parts[0].Equals("parameter", StringComparison.OrdinalIgnoreCase)) // Ollama's spelling
            parts = (parts.Length > 1 ? parts[1] : "").Split(' ', 2, StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length > 0 && parts[0].Equals("system", StringComparison.OrdinalIgnoreCase))
        {
            SetSystem(chat, parts.Length > 1 ? parts[1] : "");
            return;
        }
        if (parts.Length == 0 || (parts.Length == 1 && !parts[0].Equals("stop", StringComparison.OrdinalIgnoreCase) && !parts[0].Equals("seed", StringComparison.OrdinalIgnoreCase)))
            throw new LlmException("ChatSetInvalid", LlmErrorKind.InvalidArgument,
                $"/set takes a name and a value, e.g. /set temperature 0.2; the names: {ReplOptions.Names}.", argument);
        Say($"Set {_overrides.Set(parts[0], parts.Length > 1 ? parts[1] : "")} for the next replies.");
    }

    private void Show(ReplChat chat, string argument)
    {
        if (argument.Equals("template", StringComparison.OrdinalIgnoreCase))
        {
            Say(chat.TemplateText ?? $"The template is {chat.DescribeTemplate()}.");
            return;
        }
        Say($"Model:    {chat.Model} ({chat.Where})");
        Say(chat.ContextSize > 0 ? $"Context:  {UsedTokens(chat)} of {chat.ContextSize} tokens, {chat.Turns} exchanges" : $"Context:  the server's; {chat.Turns} exchanges");
        Say($"Template: {chat.DescribeTemplate()}");
        Say($"System:   {(string.IsNullOrEmpty(chat.SystemPrompt) ? "(none)" : chat.SystemPrompt)}");
        Say($"Options:  {chat.DescribeOptions(_overrides)}");
    }

    private int UsedTokens(ReplChat chat) => _countedTokens ?? chat.TokensUsed;

    private void Stats(ReplChat chat)
    {
        Say(chat.ContextSize > 0
            ? $"{chat.Turns} exchanges, {UsedTokens(chat)} of {chat.ContextSize} tokens of context used."
            : $"{chat.Turns} exchanges, {UsedTokens(chat)} tokens at the last turn (the server's context).");
    }

    private void Trim(ReplChat chat, string argument)
    {
        int count = 1;
        if (argument.Length > 0 && (!int.TryParse(argument, out count) || count < 1))
            throw new LlmException("ChatTrimInvalid", LlmErrorKind.InvalidArgument, $"/trim takes a number of exchanges (1 or more), not '{argument}'.", argument);
        int dropped = 0;
        while (dropped < count && chat.TrimOldestExchange()) dropped++;
        if (dropped > 0) _countedTokens = RunEngine((events, cancel) => chat.CountTokens(chat.Messages, events, cancel));
        Say(dropped switch
        {
            0 => "Nothing to drop.",
            1 => "The oldest exchange was dropped.",
            _ => $"The {dropped} oldest exchanges were dropped.",
        });
    }

    /// <summary>A default file name that is not taken: chat-DATE-TIME.json, then -2, -3, … in the current folder.</summary>
    private string DefaultSaveName()
    {
        var stem = $"chat-{DateTime.Now:yyyyMMdd-HHmmss}";
        var name = stem + ".json";
        for (int i = 2; File.Exists(ResolvePath(name)); i++) name = $"{stem}-{i}.json";
        return name;
    }

    private void Save(ReplChat chat, string argument)
    {
        var name = argument.Length > 0 ? argument : DefaultSaveName();
        var path = ResolvePath(name);
        bool replaced = File.Exists(path);
        File.WriteAllText(path, chat.ToJson());
        Say($"Saved {chat.Messages.Count} messages to {path}{(replaced ? " (it replaced the file that was there)" : "")}.");
    }

    /// <summary>One reply, streamed; Ctrl+C (read as a key while the reply runs) stops it without leaving the chat.</summary>
    /// <summary>
    /// While the reply calls tools: each call is shown and run after confirmation (ShouldProcess), the results go back
    /// and the model's next reply is shown, at most -MaxToolRounds times for one message.
    /// </summary>
    private LlmChatReply RunToolRounds(ReplChat chat, LlmChatReply reply, CancellationTokenSource interrupt, bool keyboard)
    {
        if (_tools is null || chat is not LocalReplChat local) return reply;
        for (int round = 0; reply.ToolCalls.Count > 0 && reply.StopReason != LlmStopReason.Cancelled; round++)
        {
            if (round == MaxToolRounds)
            {
                Say($"[the model still calls tools after {MaxToolRounds} rounds; ask again, or raise -MaxToolRounds]");
                break;
            }
            foreach (var call in reply.ToolCalls) Say($"[tool call: {call.Name} {Compact(call.ArgumentsJson)}]");
            if (!_tools.CanRunAll(reply.ToolCalls)) break;
            var results = _tools.RunCalls(reply.ToolCalls, this, out bool whatIf);
            if (whatIf || interrupt.IsCancellationRequested) break;
            foreach (var result in results) Say($"[tool {result.Call.Name}: {(result.Succeeded ? "done" : "failed")}]");
            using (var watcher = keyboard ? new KeyWatcher(interrupt, _reader) : null)
                reply = RunEngine((events, cancel) => local.SendToolResults(results, _overrides, events, interrupt.Token), streamText: true);
            Host.UI.WriteLine();
        }
        return reply;
    }

    /// <summary>Most bytes /load reads: far more than any context holds as text.</summary>
    internal const int MaxLoadBytes = 64 * 1024 * 1024;

    /// <summary>
    /// A conversation file's text, read up to <see cref="MaxLoadBytes"/>: /load of /dev/zero or a huge file used to read
    /// until OutOfMemoryException, which ended the chat; a folder was "Access to the path is denied".
    /// </summary>
    private static string ReadChatFile(string path, string name)
    {
        if (Directory.Exists(path))
            throw new LlmException("ChatFileInvalid", LlmErrorKind.InvalidArgument, $"{name} is a folder: /load takes a file saved with /save.", name);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int n;
        while ((n = stream.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (buffer.Length + n > MaxLoadBytes)
                throw new LlmException("ChatFileInvalid", LlmErrorKind.InvalidArgument, $"{name} is larger than {MaxLoadBytes / (1024 * 1024)} MB: it is not a conversation saved with /save.", name);
            buffer.Write(chunk, 0, n);
        }
        buffer.Position = 0;
        using var reader = new StreamReader(buffer, System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true); // as File.ReadAllText
        return reader.ReadToEnd();
    }

    /// <summary>Arguments on one line, however the model spaced them.</summary>
    private static string Compact(string json)
    {
        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(json)?.ToJsonString() ?? json;
        }
        catch (System.Text.Json.JsonException)
        {
            return json;
        }
    }

    private void Reply(ReplChat chat, string message)
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
            LlmChatReply reply;
            using (var watcher = keyboard ? new KeyWatcher(interrupt, _reader) : null)
                reply = RunEngine((events, cancel) => chat.Send(message, _overrides, events, interrupt.Token), streamText: true);
            _countedTokens = null;
            Host.UI.WriteLine();
            reply = RunToolRounds(chat, reply, interrupt, keyboard);
            if (reply.StopReason == LlmStopReason.Cancelled && !Cancellation.IsCancellationRequested) Say("[stopped]");
            if (!NoStatistics)
            {
                var context = chat.ContextSize > 0 ? $"{chat.TokensUsed} of {chat.ContextSize} context" : $"{chat.TokensUsed} tokens of context";
                Say($"[{reply.CompletionTokens} tokens, {reply.TokensPerSecond:F1} tok/s; prompt {reply.PromptTokens - reply.CachedPromptTokens} new of {reply.PromptTokens}; " +
                    $"{context}; {reply.StopReason}]");
            }
        }
        catch (LlmException e) when (e.ErrorId == "ConversationTooLong")
        {
            ExplainTooLong(chat, message, e);
        }
        catch (LlmException e) when (e.ErrorId is "RemoteBadRequest" or "RemoteRequestTooLarge" && chat.Turns > 0)
        {
            WriteLlmError(e);
            Say("If the conversation outgrew the server's context, /trim drops the oldest exchange (or /reset starts over).");
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

    /// <summary>Why the message did not fit, in numbers, and /trim only when dropping exchanges makes it fit.</summary>
    private void ExplainTooLong(ReplChat chat, string message, LlmException e)
    {
        int context = chat.ContextSize;
        string size = e.Target is int n ? $"{n} tokens" : "longer than the context";
        Say($"This message does not fit: with it the conversation is {size}, and the context holds {context}.");
        try
        {
            var system = string.IsNullOrEmpty(chat.SystemPrompt) ? [] : new[] { new LlmChatMessage("system", chat.SystemPrompt) };
            var user = new LlmChatMessage("user", message);
            int? alone = RunEngine((events, cancel) => chat.CountTokens([.. system, user], events, cancel));
            if (alone >= context)
            {
                Say($"The message alone{(system.Length > 0 ? " with the system prompt" : "")} is {alone} tokens: shorten it, or start again with a larger -ContextSize. /trim would not help.");
                return;
            }
            // The fewest oldest exchanges to drop for the message to fit.
            var history = chat.Messages.Where(m => m.Role != "system").ToList();
            var userAt = history.Select((m, i) => (m, i)).Where(x => x.m.Role == "user").Select(x => x.i).ToList();
            for (int k = 1; k <= userAt.Count; k++)
            {
                var rest = k < userAt.Count ? history.Skip(userAt[k]) : [];
                int? tokens = RunEngine((events, cancel) => chat.CountTokens([.. system, .. rest, user], events, cancel));
                if (tokens < context)
                {
                    Say(k == 1
                        ? "Type /trim to drop the oldest exchange and send the message again, or /reset to start over."
                        : $"Type /trim {k} to drop the {k} oldest exchanges and send the message again, or /reset to start over.");
                    return;
                }
            }
        }
        catch (LlmException)
        {
            // Counting failed: the plain advice below still holds.
        }
        Say(chat.Turns > 0 ? "Type /trim to drop the oldest exchange, or /reset to start over." : "Shorten the message, or start again with a larger -ContextSize.");
    }

    /// <summary>
    /// Reads the keys typed while a reply runs, on a thread of its own until disposed (which waits for it, so no key
    /// is read behind the next line's back): Ctrl+C stops the reply; at the keyboard prompt every other key is kept
    /// for the next line (type-ahead), so nothing typed is lost.
    /// </summary>
    private sealed class KeyWatcher : IDisposable
    {
        private readonly ManualResetEventSlim _stop = new();
        private readonly Thread _thread;

        public KeyWatcher(CancellationTokenSource interrupt, ConsoleLineReader? reader)
        {
            _thread = new Thread(() =>
            {
                try
                {
                    do
                    {
                        while (Console.KeyAvailable)
                        {
                            var key = Console.ReadKey(intercept: true);
                            if (key.Key == ConsoleKey.C && key.Modifiers.HasFlag(ConsoleModifiers.Control)) interrupt.Cancel();
                            else reader?.KeepTypedAhead(key);
                        }
                    } while (!_stop.Wait(30));
                }
                catch (InvalidOperationException) { }
                catch (IOException) { }
            }) { IsBackground = true, Name = "Start-LlmChat keys" };
            _thread.Start();
        }

        public void Dispose()
        {
            _stop.Set();
            _thread.Join();
            _stop.Dispose();
        }
    }
}
