using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Continues each prompt with a local GGUF model. Every piped string is one prompt; the model is loaded once and
/// stays in the session cache, so later calls start at once. Each prompt gives one result object: the exact
/// continuation (Prompt + Text is the whole document), token counts, timings, the seed and why generation stopped.
/// </summary>
/// <remarks>
/// <para>MaxTokens counts new tokens only; the prompt never counts. A prompt that does not fit the context
/// (ContextSize) is an error for that prompt naming both numbers, never a silent truncation; the other prompts go on.</para>
/// <para>Temperature 0 is greedy decoding. Without -Seed a seed is chosen and reported, so a sampled output can be
/// reproduced. Stop strings end generation and are not part of the text.</para>
/// <para>Piped prompts are decoded together (-BatchSize, default 8) with the same results as one at a time; a
/// -Prefix in front of every prompt is evaluated once.</para>
/// </remarks>
/// <example>
/// <code>Invoke-LlmCompletion 'The capital of France is' -Model ./model.gguf -MaxTokens 16 -Temperature 0</code>
/// <para>One greedy completion of at most 16 new tokens.</para>
/// </example>
/// <example>
/// <code>Get-Content prompts.txt | Invoke-LlmCompletion -Model ./model.gguf -Stop "`n" | Select-Object Prompt, Text</code>
/// <para>Every line is a prompt; each answer ends at the first newline. The model is loaded once.</para>
/// </example>
/// <example>
/// <code>Invoke-LlmCompletion 'Once upon a time' -Model ./stories260K.gguf -MaxTokens 200 -Stream</code>
/// <para>Shows the story as it is generated (Ctrl+C stops it and keeps the model loaded), then writes the result.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "LlmCompletion")]
[OutputType(typeof(LlmCompletionResult))]
public sealed class InvokeLlmCompletionCommand : BatchedGenerationCmdlet
{
    /// <summary>The text to continue; every element (and every piped string) is one prompt.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [AllowEmptyString]
    public string[] Prompt { get; set; } = [];

    /// <summary>Text put in front of every prompt (instructions, examples); evaluated once and shared by all of them.</summary>
    [Parameter]
    [AllowEmptyString]
    public string Prefix { get; set; } = "";

    protected override string PrefixText => Prefix;

    protected override void ProcessRecord() => Submit(Prompt);
}
