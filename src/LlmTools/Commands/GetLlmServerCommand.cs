using System.Management.Automation;
using LlmTools.Server;

namespace LlmTools.Commands;

/// <summary>Lists the servers Start-LlmServer runs in this session: endpoint, models, requests served.</summary>
/// <example>
/// <code>Get-LlmServer | Format-List</code>
/// <para>Shows every server of this session with its endpoint, models and the requests it has served.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "LlmServer")]
[OutputType(typeof(LlmServerInfo))]
public sealed class GetLlmServerCommand : LlmCmdlet
{
    /// <summary>Only the servers with these ids.</summary>
    [Parameter(Position = 0)]
    public int[] Id { get; set; } = [];

    protected override void ProcessRecord()
    {
        foreach (var s in LlmServer.All)
            if (Id.Length == 0 || Id.Contains(s.Id))
                WriteObject(s.Describe());
        foreach (var id in Id)
            if (LlmServer.Get(id) is null)
                WriteLlmError(new LlmException("ServerNotFound", LlmErrorKind.ObjectNotFound,
                    $"There is no running server {id} in this session; Get-LlmServer lists them.", id));
    }
}
