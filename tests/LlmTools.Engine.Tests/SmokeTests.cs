using Xunit;
using Xunit.Abstractions;

namespace LlmTools.Engine.Tests;

public class SmokeTests(ITestOutputHelper output)
{
    [Fact]
    public void TinyModelGenerates()
    {
        using var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var r = CompletionEngine.Complete(lease, "Once upon a time", new CompletionOptions { Temperature = 0, RepeatPenalty = 1, MaxTokens = 20 },
            new ContextOptions { Threads = 1 }, NullEngineEvents.Instance, default);
        output.WriteLine($"[{r.Text}] {r.PromptTokens} {r.CompletionTokens} {r.StopReason} {r.TokensPerSecond}");
        foreach (var l in LlmTools.Engine.Native.NativeRuntime.DrainLog()) output.WriteLine(l.ToString());
        Assert.True(r.CompletionTokens > 0);
    }
}
