using System.Management.Automation;

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
[Cmdlet(VerbsCommon.New, "LlmChatSession")]
[OutputType(typeof(ChatSession))]
public sealed class NewLlmChatSessionCommand : ChatSessionCmdlet
{
    /// <summary>Messages to start from: objects or hashtables with role and content.</summary>
    [Parameter]
    public object[]? History { get; set; }

    protected override void EndProcessing()
    {
        try
        {
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
