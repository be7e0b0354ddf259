using System.Management.Automation;
using LlmTools.Engine.Native;

namespace LlmTools.Commands;

/// <summary>Which llama.cpp library variant runs models in this session, why it was chosen, and whether a GPU can be used.</summary>
[Cmdlet(VerbsCommon.Get, "LlmBackend")]
[OutputType(typeof(LlmBackendInfo))]
public sealed class GetLlmBackendCommand : LlmCmdlet
{
    protected override void ProcessRecord()
    {
        try
        {
            WriteObject(NativeRuntime.Backend);
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
        finally
        {
            WriteNativeLog();
        }
    }
}
