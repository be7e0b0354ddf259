using System.Management.Automation;
using LlmTools.Hub;

namespace LlmTools.Commands;

/// <summary>
/// Signs in to the Hugging Face Hub for this session: checks the token with the Hub (whoami) and returns the account.
/// </summary>
/// <remarks>
/// <para>Without -Token it uses HF_TOKEN, then the token file of huggingface_hub ($HF_HOME/token, by default
/// ~/.cache/huggingface/token). -Persist writes that file (owner-only permissions) so Python tools see the same login.
/// The token is never written to any output stream.</para>
/// </remarks>
/// <example>
/// <code>Connect-HuggingFace -Token (Read-Host -AsSecureString 'HF token') -Persist</code>
/// <para>Signs in and saves the token where the huggingface_hub tools find it.</para>
/// </example>
[Cmdlet(VerbsCommunications.Connect, "HuggingFace")]
[OutputType(typeof(HubUser))]
public sealed class ConnectHuggingFaceCommand : LlmCmdlet
{
    /// <summary>An access token (hf_...), as a SecureString or a string. Default: HF_TOKEN, then the token file.</summary>
    [Parameter(Position = 0)]
    public object? Token { get; set; }

    /// <summary>Also save the token in the token file, shared with Python's huggingface_hub.</summary>
    [Parameter]
    public SwitchParameter Persist { get; set; }

    protected override void EndProcessing()
    {
        try
        {
            var settings = HubSettings.FromEnvironment();
            var (token, source) = HubToken.Resolve(HubSession.FromParameter(Token), HubTokenSource.Parameter, settings);
            if (token is null)
                throw new LlmException("HubNoToken", LlmErrorKind.InvalidArgument,
                    "No token to sign in with: pass -Token (create one at https://huggingface.co/settings/tokens), or set HF_TOKEN.");
            var user = RunEngine((_, cancel) =>
            {
                using var client = new HubClient(settings, token);
                return client.WhoAmI(source, cancel);
            });
            HubSession.Set(token);
            if (Persist)
            {
                HubToken.Save(token, settings);
                WriteVerbose($"Saved the token to {settings.TokenPath}.");
            }
            WriteObject(user);
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }
}
