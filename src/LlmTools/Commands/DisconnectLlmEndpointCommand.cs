using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>Forgets the endpoint Connect-LlmEndpoint set (and its key): the generation cmdlets run local models again.</summary>
/// <example>
/// <code>Disconnect-LlmEndpoint</code>
/// <para>Back to local models.</para>
/// </example>
[Cmdlet(VerbsCommunications.Disconnect, "LlmEndpoint")]
[OutputType(typeof(void))]
public sealed class DisconnectLlmEndpointCommand : LlmCmdlet
{
    protected override void EndProcessing()
    {
        if (!RemoteSession.Forget()) WriteVerbose("No endpoint was connected.");
    }
}
