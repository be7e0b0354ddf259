using System.Management.Automation;
using LlmTools.Hub;

namespace LlmTools.Commands;

/// <summary>
/// Removes a model from the Hugging Face cache: its snapshot files, and the blobs no other snapshot still uses.
/// </summary>
/// <example>
/// <code>Uninstall-LlmModel Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0</code>
/// <para>Asks first (ConfirmImpact High), then frees the file's space; -Confirm:$false skips the question.</para>
/// </example>
/// <example>
/// <code>Get-LlmModel -ListAvailable | Where-Object HubReference | Uninstall-LlmModel -WhatIf</code>
/// <para>Says which cached Hub models would be removed (files found in the cache carry their HubReference).</para>
/// </example>
[Cmdlet(VerbsLifecycle.Uninstall, "LlmModel", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(void))]
public sealed class UninstallLlmModelCommand : LlmCmdlet
{
    /// <summary>The Hub reference the model was installed with (org/name, org/name:QUANT, org/name/file.gguf).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("Reference", "HubReference")]
    public string[] Model { get; set; } = [];

    /// <summary>Which quantization, for a repository with several cached.</summary>
    [Parameter]
    public string? Quantization { get; set; }

    /// <summary>Branch, tag or commit (default main).</summary>
    [Parameter]
    public string Revision { get; set; } = "main";

    protected override void ProcessRecord()
    {
        var settings = HubSettings.FromEnvironment();
        var cache = new HubCache(settings.HubCache);
        foreach (var m in Model)
        {
            try
            {
                if (!HubReference.TryParse(m, out var reference))
                    throw new LlmException("HubReferenceInvalid", LlmErrorKind.InvalidArgument,
                        $"'{m}' is not a Hub model reference (org/name, org/name:QUANT or org/name/file.gguf).", m);
                var rev = reference!.Revision ?? Revision;
                var commit = cache.CachedCommit(reference.RepoId, rev)
                    ?? throw new LlmException("HubModelNotInstalled", LlmErrorKind.ObjectNotFound,
                        $"'{m}' is not in the Hugging Face cache ({settings.HubCache}); Get-LlmModel -ListAvailable lists what is.", m);
                var files = cache.CachedFiles(reference.RepoId, commit).Select(p => new HubRepoFile(p, -1, null));
                var model = HubModels.Select(reference, HubModels.GgufModels(reference.RepoId, files), Quantization);
                var target = $"{reference.RepoId}/{model.Path} ({string.Join(", ", model.Parts)}) in {settings.HubCache}";
                if (!ShouldProcess(target, "Delete from the Hugging Face cache")) continue;
                foreach (var part in model.Parts)
                    ModelCache.Instance.Unload(cache.SnapshotPath(reference.RepoId, commit, part));
                long freed = cache.Remove(reference.RepoId, commit, model.Parts);
                WriteVerbose($"Removed {model.Path}; freed {freed / 1048576.0:F1} MB.");
            }
            catch (LlmException e)
            {
                WriteLlmError(e);
            }
        }
    }
}
