using System.Management.Automation;
using LlmTools.Server;

namespace LlmTools.Commands;

/// <summary>
/// Stops a server: it stops listening, running generations are cancelled, and its models stay loaded in the session.
/// </summary>
/// <example>
/// <code>Get-LlmServer | Stop-LlmServer</code>
/// <para>Stops every server of this session; the models they served stay loaded.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Stop, "LlmServer", SupportsShouldProcess = true, DefaultParameterSetName = ObjectSet)]
[OutputType(typeof(void))]
public sealed class StopLlmServerCommand : LlmCmdlet
{
    private const string ObjectSet = "InputObject";
    private const string IdSet = "Id";

    /// <summary>A server as Start-LlmServer or Get-LlmServer returned it.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = ObjectSet)]
    public LlmServerInfo[] InputObject { get; set; } = [];

    /// <summary>The ids of the servers to stop.</summary>
    [Parameter(Mandatory = true, ParameterSetName = IdSet)]
    public int[] Id { get; set; } = [];

    protected override void ProcessRecord()
    {
        var ids = ParameterSetName == IdSet ? Id : InputObject.Select(s => s.Id).ToArray();
        foreach (var id in ids)
        {
            var server = LlmServer.Get(id);
            if (server is null)
            {
                WriteLlmError(new LlmException("ServerNotFound", LlmErrorKind.ObjectNotFound,
                    $"There is no running server {id} in this session (already stopped?); Get-LlmServer lists them.", id));
                continue;
            }
            if (ShouldProcess(server.Endpoint, "Stop server"))
                server.Stop();
        }
    }
}
