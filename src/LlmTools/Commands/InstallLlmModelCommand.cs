using System.Management.Automation;
using LlmTools.Hub;

namespace LlmTools.Commands;

/// <summary>
/// Downloads a GGUF model from the Hugging Face Hub into the Hugging Face cache (shared with Python's huggingface_hub)
/// and returns the local model.
/// </summary>
/// <remarks>
/// <para>References: org/name (the repository's one GGUF model, else -Quantization, default Q4_K_M), org/name:Q8_0,
/// org/name/path/file.gguf, each with an optional @revision. Split models download every part. A model already in
/// the cache is used without any network call unless -Update is given; HF_HUB_OFFLINE=1 means no network at all.</para>
/// <para>Downloads resume after a dropped connection; a file's sha256 is verified before it enters the cache.</para>
/// </remarks>
/// <example>
/// <code>Install-LlmModel Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0</code>
/// <para>Downloads the Q8_0 file with a progress bar and returns its metadata.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Install, "LlmModel")]
[OutputType(typeof(LlmModelInfo))]
public sealed class InstallLlmModelCommand : LlmCmdlet
{
    /// <summary>The model on the Hub: org/name, org/name:QUANT, org/name/file.gguf, optionally @revision.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("Reference", "Id")]
    public string[] Model { get; set; } = [];

    /// <summary>Which quantization to pick from a repository with several (default Q4_K_M, as llama.cpp).</summary>
    [Parameter]
    public string? Quantization { get; set; }

    /// <summary>Branch, tag or commit (default main).</summary>
    [Parameter]
    public string? Revision { get; set; }

    /// <summary>Ask the Hub for the newest version even when the model is cached.</summary>
    [Parameter]
    public SwitchParameter Update { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var m in Model)
        {
            try
            {
                if (!HubReference.TryParse(m, out var reference))
                    throw new LlmException("HubReferenceInvalid", LlmErrorKind.InvalidArgument,
                        $"'{m}' is not a Hub model reference: use org/name, org/name:QUANT or org/name/file.gguf (optionally @revision).", m);
                var settings = HubSettings.FromEnvironment();
                var (token, _) = HubSession.Resolve(settings);
                var result = RunEngine((events, cancel) =>
                    HubModels.Install(reference!, Quantization, Revision, Update, token, events, cancel));
                WriteVerbose(result.Downloaded ? $"Installed {result.Model.Reference} at {result.Path}." : $"{result.Model.Reference} is already in the cache.");
                WriteObject(ModelInfoReader.Read(result.Path));
            }
            catch (LlmException e)
            {
                WriteLlmError(e);
            }
        }
    }
}
