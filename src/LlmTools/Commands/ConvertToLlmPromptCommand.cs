using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Returns exactly the text a chat model sees for a conversation: its chat template (from the model's metadata, or
/// given with -Template) rendered as Hugging Face transformers renders it.
/// </summary>
/// <remarks>
/// <para>Messages are objects or hashtables with role and content (other keys, such as tool_calls, are passed to
/// the template as they are); a string is a user message. Without a template (a base model) the plain
/// User:/Assistant: transcript LlmTools uses for base models is returned, with a warning.</para>
/// </remarks>
/// <example>
/// <code>@{ role = 'system'; content = 'Be brief.' }, @{ role = 'user'; content = 'Hi' } | ConvertTo-LlmPrompt -Model ./qwen.gguf -AddGenerationPrompt</code>
/// <para>The ChatML text the model will continue.</para>
/// </example>
/// <example>
/// <code>ConvertTo-LlmPrompt -Message 'Hello' -Template (Get-Content ./llama3.jinja -Raw) -BosToken '&lt;|begin_of_text|&gt;'</code>
/// <para>Renders a template file without any model.</para>
/// </example>
[Cmdlet(VerbsData.ConvertTo, "LlmPrompt", DefaultParameterSetName = TemplateParameterSet)]
[OutputType(typeof(string))]
public sealed class ConvertToLlmPromptCommand : LlmCmdlet
{
    private const string ModelParameterSet = "Model";
    private const string TemplateParameterSet = "Template";

    /// <summary>The conversation: objects or hashtables with role and content, or strings (user messages).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    public object[] Message { get; set; } = [];

    /// <summary>A model whose chat template to use (a path or a Hub reference); its BOS and EOS tokens are used too.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ModelParameterSet)]
    [ArgumentCompleter(typeof(ModelArgumentCompleter))]
    public string Model { get; set; } = "";

    /// <summary>A chat template (Jinja text) to render instead of a model's.</summary>
    [Parameter(Mandatory = true, ParameterSetName = TemplateParameterSet)]
    [Parameter(ParameterSetName = ModelParameterSet)]
    public string? Template { get; set; }

    /// <summary>End with the start of the assistant's turn, as generation does.</summary>
    [Parameter]
    public SwitchParameter AddGenerationPrompt { get; set; }

    /// <summary>The bos_token the template sees (default: the model's).</summary>
    [Parameter]
    public string? BosToken { get; set; }

    /// <summary>The eos_token the template sees (default: the model's).</summary>
    [Parameter]
    public string? EosToken { get; set; }

    /// <summary>Tool (function) definitions for templates that describe tools to the model.</summary>
    [Parameter]
    public object[]? Tools { get; set; }

    private readonly List<object?> _messages = [];

    protected override void ProcessRecord()
    {
        try
        {
            foreach (var m in Message) _messages.Add(ChatInput.ForTemplate(m));
        }
        catch (LlmException e)
        {
            ThrowLlmError(e); // a malformed message: the module's error, not a raw exception
        }
    }

    protected override void EndProcessing()
    {
        try
        {
            ChatFormat format;
            if (ParameterSetName == TemplateParameterSet)
                format = ChatFormat.FromTemplate(Template!, BosToken ?? "", EosToken ?? "");
            else
            {
                var path = ResolveModelPath(Model);
                using var lease = RunEngine((events, cancel) => ModelCache.Instance.AcquireTokenizer(path, events, cancel));
                var template = Template ?? lease.Info.ChatTemplate;
                format = string.IsNullOrEmpty(template)
                    ? RunEngine((events, _) => ChatFormat.ForModel(lease, null, events)) // a base model: the transcript, with a warning
                    : ChatFormat.FromTemplate(template, BosToken ?? lease.Info.BosToken, EosToken ?? lease.Info.EosToken);
            }
            var tools = Tools is null ? null : ChatInput.ToPlain(Tools);
            WriteObject(format.RenderRaw(_messages, AddGenerationPrompt, tools));
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }
}
