using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Loads a model (weights and a context) into the session cache now, so later calls start at once. A progress bar
/// shows long loads; Ctrl+C cancels.
/// </summary>
/// <example>
/// <code>Import-LlmModel -Model ./model.gguf -ContextSize 8192</code>
/// <para>Loads the weights and creates an 8192-token context that later calls with the same options reuse.</para>
/// </example>
/// <example>
/// <code>Import-LlmModel -Model tinystories -KeepAlive 00:05:00</code>
/// <para>Loads the model and unloads it again after five minutes in which no call used it.</para>
/// </example>
[Cmdlet(VerbsData.Import, "LlmModel")]
[OutputType(typeof(LlmLoadedModel))]
public sealed class ImportLlmModelCommand : ModelCmdlet
{
    /// <summary>Unload the model once no call has used it for this long (as Ollama's keep_alive); None keeps it loaded until Remove-LlmModel.</summary>
    [Parameter]
    public TimeSpan? KeepAlive { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            var path = ResolveModelPath();
            var loaded = RunEngine((events, cancel) =>
            {
                using var lease = ModelCache.Instance.Acquire(path, LoadOptions, events, cancel);
                CompletionEngine.Prepare(lease, ContextOptions, events);
                if (MyInvocation.BoundParameters.ContainsKey(nameof(KeepAlive))) ModelCache.Instance.SetKeepAlive(lease.Info.Path, KeepAlive);
                return lease.Describe();
            });
            WriteObject(loaded);
        }
        catch (LlmException e)
        {
            // A model named on the command line is the whole call: its failure ends the call. A piped one fails alone.
            if (ModelFromCommandLine) ThrowLlmError(e);
            WriteLlmError(e);
        }
    }
}
