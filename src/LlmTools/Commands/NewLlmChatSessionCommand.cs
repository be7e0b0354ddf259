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

    protected override void EndProcessing()
    {
        try
        {
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
            var session = OpenSession();
            if (History is { Length: > 0 })
            {
                var messages = History.Select(ChatInput.ToMessage).ToList();
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
