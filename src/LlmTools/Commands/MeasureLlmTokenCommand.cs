using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Counts the tokens of a text under a model's tokenizer, as generation would see it, so a prompt can be checked
/// against the context before it runs. Works with vocabulary-only GGUF files too.
/// </summary>
/// <example>
/// <code>Get-Content report.txt -Raw | Measure-LlmToken -Model ./model.gguf | Select-Object Count, ContextLength</code>
/// <para>How many tokens the file is, next to the model's trained context length.</para>
/// </example>
[Cmdlet(VerbsDiagnostic.Measure, "LlmToken")]
[OutputType(typeof(LlmTokenization))]
public sealed class MeasureLlmTokenCommand : LlmCmdlet
{
    /// <summary>The text to tokenize; every element (and every piped string) is measured on its own.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [AllowEmptyString]
    public string[] Text { get; set; } = [];

    /// <summary>Path of a .gguf file whose tokenizer to use (a loaded model is reused; otherwise only its vocabulary is loaded).</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [Alias("Path", "ModelPath")]
    [ArgumentCompleter(typeof(ModelArgumentCompleter))]
    [ValidateNotNullOrEmpty]
    public string Model { get; set; } = "";

    /// <summary>Leave out the BOS token the model would add in front.</summary>
    [Parameter]
    public SwitchParameter NoSpecialTokens { get; set; }

    private ModelLease? _lease;

    protected override void BeginProcessing()
    {
        try
        {
            var path = ResolveModelPath(Model);
            _lease = RunEngine((events, cancel) => ModelCache.Instance.AcquireTokenizer(path, events, cancel));
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }

    protected override void ProcessRecord()
    {
        foreach (var t in Text)
            WriteObject(CompletionEngine.Tokenize(_lease!, t, addSpecial: !NoSpecialTokens));
    }

    protected override void DisposeResources() => _lease?.Dispose();
}
