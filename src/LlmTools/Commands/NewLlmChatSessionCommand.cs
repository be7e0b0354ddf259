using System.Management.Automation;
using LlmTools.Engine.Remote;

namespace LlmTools.Commands;

/// <summary>
/// Starts a conversation for scripts: a session object that keeps the messages and the model's KV state, so each
/// Invoke-LlmChat -Session turn evaluates only its new tokens.
/// </summary>
/// <remarks>
/// <para>The model's own chat template formats the conversation; -Template overrides a missing or wrong one. A base
/// model (no template) gets a plain User:/Assistant: transcript, with a warning. -History starts from an earlier
/// conversation ([{role, content}] objects, e.g. ConvertFrom-Json of a saved one).</para>
/// </remarks>
/// <example>
/// <code>$chat = New-LlmChatSession -Model Qwen/Qwen2.5-0.5B-Instruct-GGUF -SystemPrompt 'Answer in one sentence.' -Temperature 0
/// Invoke-LlmChat -Session $chat -Message 'What is GGUF?'
/// $chat.ToJson() | Set-Content chat.json</code>
/// <para>A conversation kept between calls, saved as JSON.</para>
/// </example>
/// <example>
/// <code>$chat = New-LlmChatSession -Endpoint http://127.0.0.1:8080/v1 -Model qwen -SystemPrompt 'Be brief.'
/// Invoke-LlmChat -Session $chat -Message 'What is GGUF?'</code>
/// <para>A conversation with a model on an OpenAI-compatible server: the session keeps the messages and sends them each turn.</para>
/// </example>
[Cmdlet(VerbsCommon.New, "LlmChatSession")]
[OutputType(typeof(ChatSession), typeof(RemoteChatSession))]
public sealed class NewLlmChatSessionCommand : ChatSessionCmdlet
{
    /// <summary>Messages to start from: objects or hashtables with role and content.</summary>
    [Parameter]
    public object[]? History { get; set; }

    /// <summary>
    /// Tools the model may call in this conversation: commands (Get-Command results), script blocks with a param block
    /// (or @{ Name = 'name'; ScriptBlock = { param(...) ... }; Description = '...' }), or JSON tool definitions in
    /// OpenAI's shape (a string or a hashtable). A command's parameters give the JSON schema of its arguments. The
    /// template shows them to the model; a call it makes is held to their schemas and comes back in the reply's
    /// ToolCalls; Invoke-LlmChat -InvokeTools runs them.
    /// </summary>
    [Parameter]
    public object[]? Tool { get; set; }

    /// <summary>Auto (default), Required (the first reply to each message must be a tool call), None (tools shown, never called), or a tool's name.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(ToolChoiceCompleter))]
    public string? ToolChoice { get; set; }

    protected override void EndProcessing()
    {
        try
        {
            if (Remote is not null && (Tool is not null || ToolChoice is not null))
                throw new LlmException("RemoteOptionNotSupported", LlmErrorKind.InvalidArgument,
                    $"-{(Tool is not null ? "Tool" : "ToolChoice")} applies to local models only for now.", Tool is not null ? "Tool" : "ToolChoice");
            if (Remote is not null)
            {
                var remote = new RemoteChatSession(Remote, Model, SystemPrompt, RemoteOptions);
                if (History is { Length: > 0 })
                {
                    var messages = History.Select(ChatInput.ToMessage).ToList();
                    if (SystemPrompt is not null) messages.RemoveAll(m => m.Role == "system");
                    remote.LoadJson(System.Text.Json.JsonSerializer.Serialize(
                        (SystemPrompt is null ? [] : new[] { new LlmChatMessage("system", SystemPrompt) }).Concat(messages)));
                }
                WriteObject(remote);
                return;
            }
            var tools = Tool is { Length: > 0 } ? ToolSet.From(Tool, this) : null;
            var choice = ToolChoice is null ? null : LlmTools.Engine.Tools.ToolChoice.Parse(ToolChoice);
            var session = OpenSession();
            try
            {
                if (tools is not null)
                {
                    session.Tools = tools.Definitions;
                    ToolSet.Attach(session, tools);
                }
                if (choice is not null) session.ToolChoice = choice;
            }
            catch
            {
                session.Dispose();
                throw;
            }
            if (History is { Length: > 0 })
            {
                // Messages of another session ($old.Messages) keep their tool calls and tool call ids.
                var messages = History.Select(h => (h is PSObject p ? p.BaseObject : h) is LlmChatMessage m ? m : ChatInput.ToMessage(h)).ToList();
                if (SystemPrompt is not null) messages.RemoveAll(m => m.Role == "system");
                session.LoadJson(System.Text.Json.JsonSerializer.Serialize(
                    (SystemPrompt is null ? [] : new[] { new LlmChatMessage("system", SystemPrompt) }).Concat(messages)));
            }
            WriteObject(session);
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }
}
