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
public sealed class InvokeLlmCompletionCommand : ModelCmdlet
{
    /// <summary>The text to continue; every element (and every piped string) is one prompt.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [AllowEmptyString]
    public string[] Prompt { get; set; } = [];

    /// <summary>New tokens to generate at most; the prompt never counts. Default 256, so generation always ends.</summary>
    [Parameter]
    public int MaxTokens { get; set; } = CompletionOptions.DefaultMaxTokens;

    /// <summary>Sampling temperature; 0 means greedy decoding (always the most likely token). Default 0.8.</summary>
    [Parameter]
    public float Temperature { get; set; } = new CompletionOptions().Temperature;

    /// <summary>Sample only among the K most likely tokens; 0 turns it off. Default 40.</summary>
    [Parameter]
    public int TopK { get; set; } = new CompletionOptions().TopK;

    /// <summary>Sample only among the most likely tokens whose probabilities add up to P; 1 turns it off. Default 0.95.</summary>
    [Parameter]
    public float TopP { get; set; } = new CompletionOptions().TopP;

    /// <summary>Drop tokens less likely than MinP times the most likely one; 0 turns it off. Default 0.05.</summary>
    [Parameter]
    public float MinP { get; set; } = new CompletionOptions().MinP;

    /// <summary>Penalty on tokens seen among the last 64; 1 turns it off. Default 1.1, which keeps base models from looping.</summary>
    [Parameter]
    public float RepeatPenalty { get; set; } = new CompletionOptions().RepeatPenalty;

    /// <summary>Random seed for sampling; the same seed reproduces the same output. Default: a new one, reported in the result.</summary>
    [Parameter]
    public uint Seed { get; set; }

    /// <summary>Strings that end generation; they are not included in the text.</summary>
    [Parameter]
    public string[] Stop { get; set; } = [];

    /// <summary>Show the text as it is generated (information stream, shown by the host); the result object still follows.</summary>
    [Parameter]
    public SwitchParameter Stream { get; set; }

    private CompletionOptions? _options;

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        _options = new CompletionOptions
        {
            MaxTokens = MaxTokens,
            Temperature = Temperature,
            TopK = TopK,
            TopP = TopP,
            MinP = MinP,
            RepeatPenalty = RepeatPenalty,
            Seed = MyInvocation.BoundParameters.ContainsKey(nameof(Seed)) ? Seed : null,
            Stop = Stop,
        };
        try
        {
            CompletionEngine.ValidateOptions(_options);
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }

    protected override void ProcessRecord()
    {
        ModelLease lease;
        try
        {
            lease = RunEngine((events, cancel) => ModelCache.Instance.Acquire(ModelPath, LoadOptions, events, cancel));
        }
        catch (LlmException e)
        {
            // A model named on the command line is wrong for every input: stop. One from the pipeline fails that item.
            if (ModelFromCommandLine) ThrowLlmError(e);
            WriteLlmError(e);
            return;
        }
        using (lease)
        {
            foreach (var prompt in Prompt)
            {
                if (Cancellation.IsCancellationRequested) return;
                LlmCompletionResult result;
                try
                {
                    result = RunEngine((events, cancel) =>
                        CompletionEngine.Complete(lease, prompt, _options!, ContextOptions, events, cancel), Stream);
                }
                catch (LlmException e)
                {
                    WriteLlmError(e);
                    continue;
                }
                if (Stream) Host.UI.WriteLine();
                WriteObject(result);
            }
        }
    }
}
