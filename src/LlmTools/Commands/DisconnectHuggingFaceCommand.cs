using System.Management.Automation;
using LlmTools.Hub;

namespace LlmTools.Commands;

/// <summary>Forgets the Hub token of this session; with -Persist also deletes the saved token file.</summary>
/// <example>
/// <code>Disconnect-HuggingFace -Persist</code>
/// <para>Signs out here and deletes ~/.cache/huggingface/token; asks first (ConfirmImpact High), -Confirm:$false skips the question.</para>
/// </example>
[Cmdlet(VerbsCommunications.Disconnect, "HuggingFace", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(void))]
// High: deleting the token file signs out Python's huggingface_hub and every other tool sharing it, so it asks first.
public sealed class DisconnectHuggingFaceCommand : LlmCmdlet
{
    /// <summary>Also delete the token file shared with Python's huggingface_hub.</summary>
    [Parameter]
    public SwitchParameter Persist { get; set; }

    protected override void EndProcessing()
    {
        HubSession.Forget();
        var settings = HubSettings.FromEnvironment();
        if (Persist && File.Exists(settings.TokenPath) && ShouldProcess(settings.TokenPath, "Delete the saved Hugging Face token"))
            HubToken.Delete(settings);
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("HF_TOKEN")))
            WriteWarning("HF_TOKEN is still set in the environment, so Hub calls keep using it. Remove it with: Remove-Item Env:HF_TOKEN");
    }
}
