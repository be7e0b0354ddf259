using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Continues each prompt with a local model. Every piped string is one prompt; the model is loaded once and stays
/// in the session cache.
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "LlmCompletion")]
[OutputType(typeof(LlmCompletionResult))]
public sealed class InvokeLlmCompletionCommand : ModelCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [AllowEmptyString]
    public string[] Prompt { get; set; } = [];

    /// <summary>New tokens to generate at most (the prompt never counts).</summary>
    [Parameter]
    public int MaxTokens { get; set; } = CompletionOptions.DefaultMaxTokens;

    /// <summary>0 means greedy decoding.</summary>
    [Parameter]
    public float Temperature { get; set; } = new CompletionOptions().Temperature;

    [Parameter]
    public int TopK { get; set; } = new CompletionOptions().TopK;

    [Parameter]
    public float TopP { get; set; } = new CompletionOptions().TopP;

    [Parameter]
    public float MinP { get; set; } = new CompletionOptions().MinP;

    [Parameter]
    public float RepeatPenalty { get; set; } = new CompletionOptions().RepeatPenalty;

    [Parameter]
    public uint Seed { get; set; }

    /// <summary>Strings that end generation; they are not included in the text.</summary>
    [Parameter]
    public string[] Stop { get; set; } = [];

    /// <summary>Show the text as it is generated; the result object still follows.</summary>
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
