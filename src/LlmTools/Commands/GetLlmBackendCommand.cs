using System.Management.Automation;
using LlmTools.Engine.Native;

namespace LlmTools.Commands;

/// <summary>
/// Tells which llama.cpp library variant runs models in this session, why it was chosen, and whether a GPU can be used.
/// </summary>
/// <example>
/// <code>Get-LlmBackend</code>
/// <para>On a machine without an NVIDIA driver: Variant avx512, "no NVIDIA driver library (libcuda) was found".</para>
/// </example>
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
