using LlmTools.Fuzz;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// A short, seeded run of the GGUF fuzzer (build.ps1 -Task Fuzz runs long ones): every mutant is either refused by
/// the validator with the module's own error, or loaded and decoded by real llama.cpp in a child process that lives.
/// </summary>
public class FuzzTests
{
    [Fact]
    public void SeededMutantsNeverKillTheProcessOrHang()
    {
        var report = Fuzzer.Run(new FuzzOptions
        {
            Count = 40,
            Seed = 20261130,
            Stories = TestFiles.Shared("stories260K.gguf"),
            WorkDir = TestFiles.NewPath("fuzz"),
        });
        Assert.Equal(40, report.Run);
        Assert.Equal(40, report.Accepted + report.Refused);
        Assert.True(report.Findings.Count == 0, string.Join(Environment.NewLine, report.Findings));
        Assert.Equal(0, report.FindingCount);
        // The set exercises both sides: some mutants are refused, some reach llama.cpp and decode.
        Assert.True(report.Refused > 0, report.ToString());
        Assert.True(report.Survived > 0, report.ToString());
    }
}
