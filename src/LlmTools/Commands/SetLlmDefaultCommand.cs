using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Sets the values every cmdlet uses when a parameter is not given: the model, context size, threads, GPU layers and
/// server endpoint. Saved for the user in $XDG_CONFIG_HOME/llmtools/defaults.json (~/.config/llmtools/defaults.json),
/// or with -Scope Session for this session only.
/// </summary>
/// <example>
/// <code>Set-LlmDefault -Model Qwen/Qwen2.5-0.5B-Instruct-GGUF -ContextSize 8192
/// Invoke-LlmCompletion 'The capital of France is'</code>
/// <para>Saves a default model and context size; later calls need no -Model.</para>
/// </example>
/// <example>
/// <code>Set-LlmDefault -Threads 2 -Scope Session</code>
/// <para>Uses two threads until this session ends, leaving the saved defaults alone.</para>
/// </example>
/// <example>
/// <code>Set-LlmDefault -Reset</code>
/// <para>Forgets the saved defaults (deletes the file).</para>
/// </example>
[Cmdlet(VerbsCommon.Set, "LlmDefault", SupportsShouldProcess = true)]
[OutputType(typeof(LlmDefaults))]
public sealed class SetLlmDefaultCommand : LlmCmdlet
{
    /// <summary>The model to use when -Model is not given: a path, a Hub reference, or tinystories.</summary>
    [Parameter(Position = 0)]
    public string? Model { get; set; }

    /// <summary>Tokens a context holds when -ContextSize is not given.</summary>
    [Parameter]
    [ValidateRange(16, 1 << 20)]
    public int ContextSize { get; set; }

    /// <summary>CPU threads when -Threads is not given.</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int Threads { get; set; }

    /// <summary>Layers offloaded to the GPU when -GpuLayers is not given.</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int GpuLayers { get; set; }

    /// <summary>A server (Start-LlmServer's URL) to send generation to when -Endpoint is not given.</summary>
    [Parameter]
    public string? Endpoint { get; set; }

    /// <summary>User saves to the defaults file; Session keeps the values in memory until the session ends.</summary>
    [Parameter]
    [ValidateSet("User", "Session")]
    public string Scope { get; set; } = "User";

    /// <summary>Forget every default of the scope first (with no other parameter: just forget them).</summary>
    [Parameter]
    public SwitchParameter Reset { get; set; }

    /// <summary>Write the defaults of the scope after the change.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void EndProcessing()
    {
        try
        {
            bool user = Scope == "User";
            var target = user ? LlmDefaults.FilePath : "the session's defaults";
            if (!ShouldProcess(target, Reset ? "Reset LlmTools defaults" : "Set LlmTools defaults")) return;
            if (Reset)
            {
                if (user) LlmDefaults.ResetUser(); else LlmDefaults.ResetSession();
            }
            var d = user ? LlmDefaults.LoadUser() : LlmDefaults.Session;
            var bound = MyInvocation.BoundParameters;
            // An empty value (-Model '') removes that default.
            if (bound.ContainsKey(nameof(Model))) d.Model = string.IsNullOrEmpty(Model) ? null : Model;
            if (bound.ContainsKey(nameof(ContextSize))) d.ContextSize = ContextSize;
            if (bound.ContainsKey(nameof(Threads))) d.Threads = Threads;
            if (bound.ContainsKey(nameof(GpuLayers))) d.GpuLayers = GpuLayers;
            if (bound.ContainsKey(nameof(Endpoint))) d.Endpoint = string.IsNullOrEmpty(Endpoint) ? null : Endpoint;
            if (user && (!Reset || bound.Count > 1 + (bound.ContainsKey(nameof(Scope)) ? 1 : 0) + (PassThru ? 1 : 0)))
                LlmDefaults.SaveUser(d);
            if (PassThru) WriteObject(user ? LlmDefaults.LoadUser() : LlmDefaults.Session);
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            ThrowLlmError(new LlmException("LlmDefaultsNotSaved", LlmErrorKind.PermissionDenied,
                $"The defaults cannot be saved to '{LlmDefaults.FilePath}': {e.Message}", LlmDefaults.FilePath, e)
            { RecommendedAction = "Use -Scope Session, or set XDG_CONFIG_HOME to a writable folder." });
        }
    }
}
