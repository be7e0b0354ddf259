using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Unloads a model from the session cache and frees its memory. The file on disk is left alone.
/// </summary>
/// <remarks><para>A call still using the model finishes first; the memory is freed when it ends.</para></remarks>
/// <example>
/// <code>Get-LlmModel | Remove-LlmModel -WhatIf</code>
/// <para>Shows which models would be unloaded.</para>
/// </example>
[Cmdlet(VerbsCommon.Remove, "LlmModel", SupportsShouldProcess = true, DefaultParameterSetName = ModelSet)]
[OutputType(typeof(void))]
public sealed class RemoveLlmModelCommand : LlmCmdlet
{
    private const string ModelSet = "Model";
    private const string AllSet = "All";

    /// <summary>Path of the loaded model (as Get-LlmModel shows it).</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ModelSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Path", "FullName", "ModelPath")]
    [ArgumentCompleter(typeof(LoadedModelArgumentCompleter))]
    public string[] Model { get; set; } = [];

    /// <summary>Unload every model.</summary>
    [Parameter(Mandatory = true, ParameterSetName = AllSet)]
    public SwitchParameter All { get; set; }

    protected override void ProcessRecord()
    {
        if (All)
        {
            foreach (var m in ModelCache.Instance.List())
                Unload(m.Path);
            return;
        }
        foreach (var m in Model)
        {
            var path = EmbeddedModels.TryResolve(m) ?? ResolvePath(m);
            if (!ModelCache.Instance.List().Any(l => l.Path == path))
            {
                WriteLlmError(new LlmException("ModelNotLoaded", LlmErrorKind.ObjectNotFound,
                    $"'{path}' is not loaded in this session; Get-LlmModel lists the loaded models.", m));
                continue;
            }
            Unload(path);
        }
    }

    private void Unload(string path)
    {
        if (ShouldProcess(path, "Unload model (the file is kept)"))
        {
            int n = ModelCache.Instance.Unload(path);
            WriteVerbose($"Unloaded {n} instance(s) of '{path}'.");
        }
    }
}
