using System.Management.Automation;
using LlmTools.Engine.Remote;

namespace LlmTools.Commands;

/// <summary>
/// Sends messages to a chat model and returns the replies. With -Session the conversation goes on (each message is
/// the next turn); without it every piped message is a fresh single-turn conversation, decoded in batches.
/// </summary>
/// <remarks>
/// <para>Replies end at the model's end-of-turn marker (e.g. &lt;|im_end|&gt;, &lt;|eot_id|&gt;), which is never part of the
/// text. A conversation that outgrows the context is an error unless -TrimHistory drops the oldest turns.</para>
/// </remarks>
/// <example>
/// <code>Get-Content questions.txt | Invoke-LlmChat -Model Qwen/Qwen2.5-0.5B-Instruct-GGUF -SystemPrompt 'Answer in one line' | Select-Object Message, Text</code>
/// <para>Each line is its own question; the system prompt is evaluated once for all of them.</para>
/// </example>
/// <example>
/// <code>'Hi', 'What did I just say?' | Invoke-LlmChat -Session $chat</code>
/// <para>Two turns of one conversation.</para>
/// </example>
/// <example>
/// <code>function Get-Weather { param([Parameter(Mandatory)][ValidateSet('Paris', 'Oslo')][string]$City) "Sunny in $City" }
/// Invoke-LlmChat -Model Qwen/Qwen2.5-0.5B-Instruct-GGUF -Message 'Weather in Oslo?' -Tool (Get-Command Get-Weather) -InvokeTools -Confirm:$false</code>
/// <para>The model may call Get-Weather (its arguments held to the command's parameters); the call runs, its output goes back to the model, and the reply that answers in text is written, with ToolResults.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "LlmChat", DefaultParameterSetName = ModelSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(LlmChatReply))]
public sealed class InvokeLlmChatCommand : BatchedGenerationCmdlet
{
    private const string SessionSet = "Session";

    /// <summary>The user's message; every element (and every piped string) is one message.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [AllowEmptyString]
    public string[] Message { get; set; } = [];

    /// <summary>A session from New-LlmChatSession (local, or on a server with -Endpoint): the messages become the next turns of its conversation.</summary>
    [Parameter(Mandatory = true, ParameterSetName = SessionSet)]
    [ValidateNotNull]
    public object? Session { get; set; }

    /// <summary>Drop the oldest turns of the session when the conversation no longer fits the context.</summary>
    [Parameter(ParameterSetName = SessionSet)]
    public SwitchParameter TrimHistory { get; set; }

    /// <summary>The system message of each single-turn conversation (evaluated once for all of them).</summary>
    [Parameter(ParameterSetName = ModelSet)]
    public string? SystemPrompt { get; set; }

    /// <summary>A chat template (Jinja) to use instead of the model's.</summary>
    [Parameter(ParameterSetName = ModelSet)]
    public string? Template { get; set; }

    /// <summary>
    /// Tools the model may call: commands (Get-Command results), script blocks with a param block (or
    /// @{ Name = 'name'; ScriptBlock = { param(...) ... }; Description = '...' }), or JSON tool definitions in OpenAI's
    /// shape ({"type": "function", "function": {"name", "description", "parameters"}}, as a string or a hashtable). A
    /// command's parameters (one parameter set, common parameters left out) give the JSON schema of its arguments:
    /// types, Mandatory, ValidateSet, ValidateRange, ValidateLength, ValidateCount and help text. With -Session, these
    /// replace the session's tools for this call. The reply's ToolCalls holds the calls the model made.
    /// </summary>
    [Parameter]
    public object[]? Tool { get; set; }

    /// <summary>
    /// Auto (default: the model decides; a call it starts is held to the tools' schemas), Required (its first reply to
    /// each message must be a call), None (tools shown, never called), or a tool's name (that tool must be called).
    /// </summary>
    [Parameter]
    [ArgumentCompleter(typeof(ToolChoiceCompleter))]
    public string? ToolChoice { get; set; }

    /// <summary>
    /// Runs the tool calls the model makes (each asks for confirmation unless -Confirm:$false; -WhatIf shows them and
    /// stops), gives their results back to the model as tool messages, and goes on until it answers in text or
    /// -MaxToolRounds is reached. A tool that throws becomes an error text for the model. The reply's ToolResults lists
    /// what ran. Calls of tools given as JSON definitions are left to the script: the reply is written with them.
    /// </summary>
    [Parameter]
    public SwitchParameter InvokeTools { get; set; }

    /// <summary>With -InvokeTools: rounds of tool calls at most for one message (default 5); beyond it, the last reply is written with a ToolRoundsExceeded error.</summary>
    [Parameter]
    [ValidateRange(1, 100)]
    public int MaxToolRounds { get; set; } = 5;

    private ChatFormat? _format;
    private ToolSet? _tools;
    private string _prefix = "";

    protected override void BeginProcessing()
    {
        if (ParameterSetName == SessionSet)
        {
            // The context and the loaded weights belong to the session; sampling and length can change for a turn.
            foreach (var name in new[] { "ContextSize", "Threads", "GpuLayers" })
                if (MyInvocation.BoundParameters.ContainsKey(name))
                    ThrowLlmError(new LlmException("ChatSessionOptionsFixed", LlmErrorKind.InvalidArgument,
                        $"-{name} belongs to the session: give it to New-LlmChatSession.", name));
        }
        base.BeginProcessing();
        if (ParameterSetName == SessionSet && (Session is PSObject pso ? pso.BaseObject : Session) is not (ChatSession or RemoteChatSession))
            ThrowLlmError(new LlmException("ChatSessionInvalid", LlmErrorKind.InvalidArgument,
                "-Session takes a session from New-LlmChatSession.", Session?.GetType().Name));
        var remote = Remote is not null || (Session is PSObject rp ? rp.BaseObject : Session) is RemoteChatSession;
        var toolParameter = new[] { "Tool", "ToolChoice", "InvokeTools" }.FirstOrDefault(MyInvocation.BoundParameters.ContainsKey);
        if (remote && toolParameter is not null)
            ThrowLlmError(new LlmException("RemoteOptionNotSupported", LlmErrorKind.InvalidArgument,
                $"-{toolParameter} applies to local models only for now.", toolParameter));
        try
        {
            if (Tool is { Length: > 0 }) _tools = ToolSet.From(Tool, this);
            if (ToolChoice is not null && LlmTools.Engine.Tools.ToolChoice.Parse(ToolChoice) is { Mode: LlmTools.Engine.Tools.ToolChoiceMode.Required or LlmTools.Engine.Tools.ToolChoiceMode.Named } needs
                && ParameterSetName != SessionSet && _tools is null)
                // (a session's own tools are checked when it sends; without one, the batched path would ignore the choice)
                throw new LlmException("ToolChoiceNeedsTools", LlmErrorKind.InvalidArgument,
                    $"-ToolChoice {needs} needs tools, and none were given: add -Tool, or leave -ToolChoice out.", needs.ToString());
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }

    protected override void ProcessRecord()
    {
        if (ParameterSetName != SessionSet && _tools is not null && Remote is null)
        {
            // Tools need a conversation of several rounds: each message gets a session of its own (one at a time).
            foreach (var m in Message)
            {
                if (Cancellation.IsCancellationRequested) return;
                try
                {
                    using var session = OpenToolSession();
                    Converse(session, m, _tools, null);
                }
                catch (LlmException e)
                {
                    WriteLlmError(e);
                }
            }
            return;
        }
        if (ParameterSetName != SessionSet)
        {
            Submit(Message);
            return;
        }
        if ((Session is PSObject p ? p.BaseObject : Session) is RemoteChatSession remote)
        {
            SendRemote(remote);
            return;
        }
        foreach (var m in Message)
        {
            if (Cancellation.IsCancellationRequested) return;
            var session = (ChatSession)(Session is PSObject pso ? pso.BaseObject : Session)!;
            var savedTools = session.Tools;
            var savedChoice = session.ToolChoice;
            try
            {
                var tools = _tools ?? ToolSet.Of(session);
                if (_tools is not null)
                {
                    session.ToolChoice = LlmTools.Engine.Tools.ToolChoice.Auto;
                    session.Tools = _tools.Definitions;
                    if (savedChoice.Name is null || _tools.Knows(savedChoice.Name)) session.ToolChoice = savedChoice;
                }
                if (ToolChoice is not null) session.ToolChoice = LlmTools.Engine.Tools.ToolChoice.Parse(ToolChoice);
                Converse(session, m, tools, TurnOptions(session));
            }
            catch (LlmException e)
            {
                WriteLlmError(e);
            }
            finally
            {
                session.ToolChoice = LlmTools.Engine.Tools.ToolChoice.Auto;
                session.Tools = savedTools;
                session.ToolChoice = savedChoice;
            }
        }
    }

    private ChatSession OpenToolSession()
    {
        var path = ResolveModelPath();
        var session = RunEngine((events, cancel) =>
        {
            var lease = ModelCache.Instance.Acquire(path, LoadOptions, events, cancel);
            try
            {
                return new ChatSession(lease, ChatFormat.ForModel(lease, Template, events), SystemPrompt, Options, ContextOptions, events);
            }
            catch
            {
                lease.Dispose();
                throw;
            }
        });
        try
        {
            session.Tools = _tools!.Definitions;
            if (ToolChoice is not null) session.ToolChoice = LlmTools.Engine.Tools.ToolChoice.Parse(ToolChoice);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// One message and its answer: with -InvokeTools, the model's tool calls are run (each through ShouldProcess) and
    /// their results sent back, round after round, until it answers in text, a call must be left to the script, or
    /// -MaxToolRounds is reached.
    /// </summary>
    private void Converse(ChatSession session, string message, ToolSet? tools, Func<CompletionOptions, CompletionOptions>? adjust)
    {
        var reply = RunEngine((events, cancel) => session.Send(message, events, cancel, TrimHistory, adjust), Stream);
        if (Stream) Host.UI.WriteLine();
        var results = new List<LlmToolResult>();
        int rounds = 0;
        bool exceeded = false;
        while (InvokeTools && tools is not null && reply.ToolCalls.Count > 0 && tools.CanRunAll(reply.ToolCalls))
        {
            if (rounds == MaxToolRounds)
            {
                exceeded = true;
                break;
            }
            var round = tools.RunCalls(reply.ToolCalls, this, out bool whatIf);
            if (whatIf || Cancellation.IsCancellationRequested) break; // shown, not run: the reply with its calls is the answer
            results.AddRange(round);
            rounds++;
            reply = RunEngine((events, cancel) => session.SendToolResults(round, events, cancel, TrimHistory, adjust), Stream);
            if (Stream) Host.UI.WriteLine();
        }
        reply.ToolResults = results;
        var shaped = Shape(reply, reply.Text, reply.StopReason, v => reply.Value = v);
        if (shaped is not null) WriteObject(shaped);
        if (exceeded)
            WriteLlmError(new LlmException("ToolRoundsExceeded", LlmErrorKind.LimitsExceeded,
                $"The model was still calling tools after {MaxToolRounds} rounds of tool calls; the last reply (with its ToolCalls) was written. " +
                "Raise -MaxToolRounds, or handle the calls in the script.", MaxToolRounds));
    }

    private void SendRemote(RemoteChatSession session)
    {
        var bound = MyInvocation.BoundParameters;
        var given = Options;
        Func<RemoteOptions, RemoteOptions> adjust = o => o with
        {
            MaxTokens = bound.ContainsKey("MaxTokens") ? given.MaxTokens : o.MaxTokens,
            Temperature = bound.ContainsKey("Temperature") ? given.Temperature : o.Temperature,
            TopK = bound.ContainsKey("TopK") ? given.TopK : o.TopK,
            TopP = bound.ContainsKey("TopP") ? given.TopP : o.TopP,
            MinP = bound.ContainsKey("MinP") ? given.MinP : o.MinP,
            RepeatPenalty = bound.ContainsKey("RepeatPenalty") ? given.RepeatPenalty : o.RepeatPenalty,
            FrequencyPenalty = bound.ContainsKey("FrequencyPenalty") ? given.FrequencyPenalty : o.FrequencyPenalty,
            PresencePenalty = bound.ContainsKey("PresencePenalty") ? given.PresencePenalty : o.PresencePenalty,
            Seed = bound.ContainsKey("Seed") ? given.Seed : o.Seed,
            Stop = bound.ContainsKey("Stop") ? given.Stop : o.Stop,
            Timeout = bound.ContainsKey("TimeoutSec") ? TimeSpan.FromSeconds(TimeoutSec) : o.Timeout,
            // The server holds this turn to the schema or grammar (response_format, llama.cpp's grammar field).
            JsonSchema = JsonSchema is not null ? StructuredOutput.SchemaJsonFor(JsonSchema) : Grammar is not null ? null : o.JsonSchema,
            Grammar = Grammar ?? (JsonSchema is not null ? null : o.Grammar),
        };
        foreach (var m in Message)
        {
            if (Cancellation.IsCancellationRequested) return;
            try
            {
                var reply = RunEngine((events, cancel) => session.Send(m, events, cancel, Stream, adjust), Stream);
                if (Stream) Host.UI.WriteLine();
                var shaped = Shape(reply, reply.Text, reply.StopReason, v => reply.Value = v);
                if (shaped is not null) WriteObject(shaped);
            }
            catch (LlmException e)
            {
                WriteLlmError(e);
            }
        }
    }

    /// <summary>A single-turn conversation on the server: the system prompt and the message.</summary>
    protected override LlmCompletionResult RemoteRequest(RemoteEndpoint endpoint, string model, string input, IEngineEvents events,
        CancellationToken cancel, bool stream) =>
        OpenAiClient.Chat(endpoint, model, Conversation(input), RemoteOptions, events, cancel, stream);

    /// <summary>The sampling options given for this call, over the session's own; null when none was given.</summary>
    private Func<CompletionOptions, CompletionOptions>? TurnOptions(ChatSession session)
    {
        var bound = MyInvocation.BoundParameters;
        var given = Options;
        var formatStops = session.Format.StopStrings;
        if (!new[] { "MaxTokens", "Temperature", "TopK", "TopP", "MinP", "RepeatPenalty", "FrequencyPenalty", "PresencePenalty", "Seed", "Stop", "JsonSchema", "Grammar" }.Any(bound.ContainsKey))
            return null;
        return o => o with
        {
            MaxTokens = bound.ContainsKey("MaxTokens") ? given.MaxTokens : o.MaxTokens,
            Temperature = bound.ContainsKey("Temperature") ? given.Temperature : o.Temperature,
            TopK = bound.ContainsKey("TopK") ? given.TopK : o.TopK,
            TopP = bound.ContainsKey("TopP") ? given.TopP : o.TopP,
            MinP = bound.ContainsKey("MinP") ? given.MinP : o.MinP,
            RepeatPenalty = bound.ContainsKey("RepeatPenalty") ? given.RepeatPenalty : o.RepeatPenalty,
            FrequencyPenalty = bound.ContainsKey("FrequencyPenalty") ? given.FrequencyPenalty : o.FrequencyPenalty,
            PresencePenalty = bound.ContainsKey("PresencePenalty") ? given.PresencePenalty : o.PresencePenalty,
            Seed = bound.ContainsKey("Seed") ? given.Seed : o.Seed,
            Stop = bound.ContainsKey("Stop") ? [.. given.Stop, .. formatStops] : o.Stop,
            Grammar = given.Grammar ?? o.Grammar,
        };
    }

    protected override void OnModelReady(ModelLease lease)
    {
        _format = RunEngine((events, _) => ChatFormat.ForModel(lease, Template, events));
        // What every conversation starts with (system message, template preamble) is evaluated once and shared.
        const string sentinel = "\u2063LLMTOOLS\u2063";
        var rendered = _format.Render(Conversation(sentinel), addGenerationPrompt: true);
        int at = rendered.IndexOf(sentinel, StringComparison.Ordinal);
        _prefix = at > 0 ? rendered[..at] : "";
    }

    private List<LlmChatMessage> Conversation(string message)
    {
        var list = new List<LlmChatMessage>();
        if (!string.IsNullOrEmpty(SystemPrompt)) list.Add(new LlmChatMessage("system", SystemPrompt));
        list.Add(new LlmChatMessage("user", message));
        return list;
    }

    protected override string PrefixText => _prefix;

    // The input whose conversation was rendered last: PromptFor and ChatFor ask for the same rendering in turn.
    // Two reference fields, not a tuple: a value type over an engine type would load the engine when PowerShell
    // reflects this class, before the module initializer has said where the engine is.
    private string? _renderedInput;
    private PromptSegments? _renderedSegments;

    private PromptSegments Rendered(string input)
    {
        if (_renderedSegments is null || !ReferenceEquals(_renderedInput, input))
        {
            _renderedSegments = _format!.RenderSegments(Conversation(input), addGenerationPrompt: true);
            _renderedInput = input;
        }
        return _renderedSegments;
    }

    protected override string PromptFor(string input)
    {
        var rendered = Rendered(input).Text;
        return rendered.StartsWith(_prefix, StringComparison.Ordinal) ? rendered[_prefix.Length..] : rendered;
    }

    protected override PromptSegments? ChatFor(string input) => Rendered(input);

    protected override CompletionOptions OptionsFor(string prompt) => Options with
    {
        Stop = [.. Options.Stop, .. _format!.StopStrings],
        StopTokenIds = [.. _format.StopTokenIds],
        AddBos = _format.AddBos(_prefix + prompt),
    };

    protected override object ResultFor(string input, LlmCompletionResult r) => LlmChatReply.From(r, input, 1);
}

/// <summary>Completes -ToolChoice: Auto, Required, None.</summary>
public sealed class ToolChoiceCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        System.Management.Automation.Language.CommandAst commandAst, System.Collections.IDictionary fakeBoundParameters) =>
        new[] { "Auto", "Required", "None" }.Where(c => c.StartsWith(wordToComplete ?? "", StringComparison.OrdinalIgnoreCase))
            .Select(c => new CompletionResult(c));
}
