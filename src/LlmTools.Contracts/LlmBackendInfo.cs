namespace LlmTools;

/// <summary>Which llama.cpp library variant runs models in this process, and why it was chosen.</summary>
public sealed class LlmBackendInfo
{
    public required string Variant { get; init; }
    public required string Reason { get; init; }
    public required string CpuInstructionSet { get; init; }
    public required bool CudaDriverFound { get; init; }
    public required bool GpuOffloadSupported { get; init; }
    public required IReadOnlyList<string> Devices { get; init; }
    public required string? LibraryPath { get; init; }
    public required int LogicalProcessors { get; init; }
    public required int DefaultThreads { get; init; }
    public string LlamaCppCommit => "815a2a59";
}
