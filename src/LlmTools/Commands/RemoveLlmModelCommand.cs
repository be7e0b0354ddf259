using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Unloads a model from the session cache and frees its memory. The file on disk is left alone.
/// </summary>
/// <remarks><para>Remove-LlmModel waits for nothing and cancels nothing: calls still running on the model (in any
/// runspace) finish, and chat sessions opened on it keep answering; the memory is freed when the last of them ends.
/// Until then Get-LlmModel lists the model with Status Unloading. A load under way is stopped. Ctrl+C a call, or end
/// its chat session, to free the memory at once.</para></remarks>
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
