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
[Cmdlet(VerbsLifecycle.Invoke, "LlmChat", DefaultParameterSetName = ModelSet)]
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

    private ChatFormat? _format;
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
    }

    protected override void ProcessRecord()
    {
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
            try
            {
                var session = (ChatSession)(Session is PSObject pso ? pso.BaseObject : Session)!;
                var adjust = TurnOptions(session);
                var reply = RunEngine((events, cancel) => session.Send(m, events, cancel, TrimHistory, adjust), Stream);
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
            Seed = bound.ContainsKey("Seed") ? given.Seed : o.Seed,
            Stop = bound.ContainsKey("Stop") ? given.Stop : o.Stop,
            Timeout = bound.ContainsKey("TimeoutSec") ? TimeSpan.FromSeconds(TimeoutSec) : o.Timeout,
        };
        foreach (var m in Message)
        {
            if (Cancellation.IsCancellationRequested) return;
            try
            {
                if (JsonSchema is not null || Grammar is not null)
                    throw new LlmException("RemoteOptionNotSupported", LlmErrorKind.InvalidArgument,
                        $"-{(JsonSchema is not null ? "JsonSchema" : "Grammar")} applies to local models only.");
                var reply = RunEngine((events, cancel) => session.Send(m, events, cancel, Stream, adjust), Stream);
                if (Stream) Host.UI.WriteLine();
                WriteObject(reply);
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
        if (!new[] { "MaxTokens", "Temperature", "TopK", "TopP", "MinP", "RepeatPenalty", "Seed", "Stop", "JsonSchema", "Grammar" }.Any(bound.ContainsKey))
            return null;
        return o => o with
        {
            MaxTokens = bound.ContainsKey("MaxTokens") ? given.MaxTokens : o.MaxTokens,
            Temperature = bound.ContainsKey("Temperature") ? given.Temperature : o.Temperature,
            TopK = bound.ContainsKey("TopK") ? given.TopK : o.TopK,
            TopP = bound.ContainsKey("TopP") ? given.TopP : o.TopP,
            MinP = bound.ContainsKey("MinP") ? given.MinP : o.MinP,
            RepeatPenalty = bound.ContainsKey("RepeatPenalty") ? given.RepeatPenalty : o.RepeatPenalty,
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
