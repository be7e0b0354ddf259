using System.Management.Automation;
using LlmTools.Hub;

namespace LlmTools.Commands;

/// <summary>Tells who the Hub sees: the account of the token in use (session, HF_TOKEN or the token file).</summary>
/// <example>
/// <code>Get-HuggingFaceUser | Format-List Name, Organizations, TokenRole, TokenSource</code>
/// <para>Shows the account, its organizations, the token's role and where the token came from.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "HuggingFaceUser")]
[OutputType(typeof(HubUser))]
public sealed class GetHuggingFaceUserCommand : LlmCmdlet
{
    protected override void EndProcessing()
    {
        try
        {
            var settings = HubSettings.FromEnvironment();
            var (token, source) = HubSession.Resolve(settings);
            WriteObject(RunEngine((_, cancel) =>
            {
                using var client = new HubClient(settings, token);
                return client.WhoAmI(source, cancel);
            }));
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }
}
