using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Shows the values cmdlets use when a parameter is not given: the session's over the saved ones (Effective), or one
/// scope's own.
/// </summary>
/// <example>
/// <code>Get-LlmDefault</code>
/// <para>The model, context size, threads, GPU layers and endpoint in effect, and the file they are saved in.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "LlmDefault")]
[OutputType(typeof(LlmDefaults))]
public sealed class GetLlmDefaultCommand : LlmCmdlet
{
    /// <summary>Effective (session values over saved ones), User (the saved file) or Session (this session's own).</summary>
    [Parameter(Position = 0)]
    [ValidateSet("Effective", "User", "Session")]
    public string Scope { get; set; } = "Effective";

    protected override void EndProcessing()
    {
        try
        {
            WriteObject(Scope switch
            {
                "User" => LlmDefaults.LoadUser(),
                "Session" => LlmDefaults.Session,
                _ => LlmDefaults.Effective,
            });
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }
}
