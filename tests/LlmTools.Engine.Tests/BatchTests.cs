using Xunit;

namespace LlmTools.Engine.Tests;

public class BatchTests
{
    private static readonly ContextOptions Context = new() { Threads = 1, ContextSize = 256 };
    private static readonly CompletionOptions Greedy = new() { Temperature = 0, RepeatPenalty = 1, MaxTokens = 24 };

    public static TheoryData<string> Models() => ["tiny", "stories260K.gguf"];

    private static string PathOf(string model)
    {
        if (model == "tiny") return TestFiles.TinyModelPath;
        var p = TestFiles.Shared(model);
        Skip.If(p is null, "../shared/models is absent (a fresh clone)");
        return p!;
    }

    private static readonly string[] Prompts =
    [
        "Once upon a time", "The little dog", "She saw a big red ball in the park and",
        "Tom", "One day the sun was hot so they went to the water to play", "Lily and Ben were friends.",
        "The cat", "Mom said good night",
    ];

    /// <summary>Runs every prompt through a generator, adding as slots free up, and returns results by input order.</summary>
    private static LlmCompletionResult[] RunBatched(ModelLease lease, IReadOnlyList<string> prompts, int parallel, CompletionOptions options,
        string prefix = "", Action<BatchGenerator>? inspect = null, Dictionary<long, LlmException>? errors = null)
    {
        var results = new LlmCompletionResult?[prompts.Count];
        using var generator = new BatchGenerator(lease, options, Context, parallel, prefix, NullEngineEvents.Instance);
        inspect?.Invoke(generator);
        int next = 0;
        while (next < prompts.Count || generator.Active > 0)
        {
            while (next < prompts.Count && generator.HasFreeSlot)
            {
                try { generator.Add(next, prompts[next]); }
                catch (LlmException e) when (errors is not null) { errors[next] = e; }
                next++;
            }
            foreach (var (id, r) in generator.Step(default)) results[id] = r;
        }
        return results.Select(r => r!).ToArray();
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void GreedyBatchedTextsEqualSequentialOnes(string model)
    {
        using var lease = ModelCache.Instance.Acquire(PathOf(model), new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var sequential = Prompts.Select(p => CompletionEngine.Complete(lease, p, Greedy, Context, NullEngineEvents.Instance, default)).ToArray();
        foreach (int parallel in new[] { 2, 4, 8 })
        {
            var batched = RunBatched(lease, Prompts, parallel, Greedy);
            for (int i = 0; i < Prompts.Length; i++)
            {
                Assert.Equal(Prompts[i], batched[i].Prompt);
                Assert.Equal(sequential[i].Text, batched[i].Text);
                Assert.Equal(sequential[i].CompletionTokens, batched[i].CompletionTokens);
                Assert.Equal(sequential[i].StopReason, batched[i].StopReason);
                Assert.Equal(sequential[i].PromptTokens, batched[i].PromptTokens);
            }
        }
    }

    [Fact]
    public void ItemsOfVeryDifferentLengthsFinishOutOfOrderButKeepTheirIds()
    {
        using var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        using var generator = new BatchGenerator(lease, Greedy with { MaxTokens = 40 }, Context, 4, "", NullEngineEvents.Instance);
        generator.Add(0, "Once upon a time there was a little girl", Greedy with { MaxTokens = 40 });
        generator.Add(1, "The dog", Greedy with { MaxTokens = 2 });
        // Which Step call gave each result: the short one is never given after the long one (both may come in one
        // Step when the scheduler finishes them before the caller looks).
        var stepOf = new Dictionary<long, int>();
        var items = new Dictionary<long, BatchItem>();
        for (int step = 0; generator.Active > 0; step++)
            foreach (var item in generator.Step(default)) { stepOf[item.Id] = step; items[item.Id] = item; }
        Assert.Equal([0L, 1L], items.Keys.Order());
        Assert.True(stepOf[1] <= stepOf[0], $"the 2-token input came in step {stepOf[1]}, the 40-token one in step {stepOf[0]}");
        // Each result still belongs to its own input.
        Assert.Equal("The dog", items[1].Result!.Prompt);
        Assert.Equal(2, items[1].Result!.CompletionTokens);
        Assert.Equal("Once upon a time there was a little girl", items[0].Result!.Prompt);
        Assert.Equal(40, items[0].Result!.CompletionTokens);
    }

    [Fact]
    public void AFailingItemDoesNotStopTheBatch()
    {
        using var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var tooLong = string.Join(" ", Enumerable.Repeat("the little girl", 200));
        var prompts = new[] { "Once upon a time", tooLong, "The dog" };
        var errors = new Dictionary<long, LlmException>();
        var results = new LlmCompletionResult?[3];
        using var generator = new BatchGenerator(lease, Greedy, Context, 4, "", NullEngineEvents.Instance);
        for (int i = 0; i < 3; i++)
        {
            try { generator.Add(i, prompts[i]); }
            catch (LlmException e) { errors[i] = e; }
        }
        while (generator.Active > 0)
            foreach (var (id, r) in generator.Step(default)) results[id] = r;
        Assert.Equal("PromptTooLong", Assert.Single(errors).Value.ErrorId);
        Assert.Equal(1, Assert.Single(errors).Key);
        Assert.NotNull(results[0]);
        Assert.NotNull(results[2]);
        Assert.Equal(CompletionEngine.Complete(lease, "The dog", Greedy, Context, NullEngineEvents.Instance, default).Text, results[2]!.Text);
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void ASharedPrefixIsEvaluatedOnceAndKeptForLaterCalls(string model)
    {
        // A copy of its own: the model's scheduler must not hold cells of other tests' prompts.
        var path = TestFiles.NewPath("prefix.gguf");
        File.Copy(PathOf(model), path);
        using var lease = ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        const string prefix = "Once upon a time there was a little girl named Lily. She loved to play in the park with her dog. One day";
        int prefixTokens = CompletionEngine.Tokenize(lease, prefix).Count;
        var endings = new[] { " she saw a bird", " the sun was hot", " Tom came", " her mom said" };
        int firstEvaluated = -1, secondEvaluated = -1;
        var first = RunBatched(lease, endings, 4, Greedy, prefix, g => firstEvaluated = g.PrefixTokensEvaluated);
        var second = RunBatched(lease, endings, 4, Greedy, prefix, g => secondEvaluated = g.PrefixTokensEvaluated);
        Assert.Equal(prefixTokens, firstEvaluated);
        Assert.Equal(0, secondEvaluated); // still in sequence 0 from the first call
        foreach (var r in first.Concat(second))
        {
            Assert.True(r.CachedPromptTokens >= prefixTokens - 1, $"{r.CachedPromptTokens} of {prefixTokens} prefix tokens shared");
            Assert.Equal(prefix, r.Prefix);
        }
        // And the texts are those of one-at-a-time completions of prefix + prompt.
        for (int i = 0; i < endings.Length; i++)
        {
            var single = CompletionEngine.Complete(lease, endings[i], Greedy, Context, NullEngineEvents.Instance, default, prefix);
            Assert.Equal(single.Text, first[i].Text);
            Assert.Equal(single.Text, second[i].Text);
        }
        ModelCache.Instance.Unload(path);
    }

    [Fact]
    public void CancellationEndsEverySequenceAndLeavesTheModelUsable()
    {
        using var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        using var cts = new CancellationTokenSource();
        using (var generator = new BatchGenerator(lease, Greedy with { MaxTokens = 200 }, Context, 4, "", NullEngineEvents.Instance))
        {
            generator.Add(0, "Once upon a time");
            generator.Add(1, "The dog");
            cts.Cancel();
            var results = generator.Step(cts.Token);
            Assert.Equal(2, results.Count);
            Assert.All(results, r => Assert.Equal(LlmStopReason.Cancelled, r.Result!.StopReason));
        }
        var again = RunBatched(lease, Prompts[..3], 2, Greedy);
        Assert.Equal(CompletionEngine.Complete(lease, Prompts[2], Greedy, Context, NullEngineEvents.Instance, default).Text, again[2].Text);
    }

    [Theory]
    [InlineData(8, 1_000, 1_000_000, 8)]        // fits
    [InlineData(8, 100_000, 1_000_000, 4)]      // 8 x 100 kB > half of 1 MB: halved until it fits
    [InlineData(16, 300_000, 1_000_000, 1)]     // even two do not fit: one, refused later by the context check
    [InlineData(1, 10_000_000, 1_000_000, 1)]
    public void KvMemoryForEverySequenceIsSizedUpFront(int requested, long perSequence, long available, int expected) =>
        Assert.Equal(expected, BatchGenerator.FitSequences(requested, perSequence, available));

    [SkippableFact]
    public void AContextTooLargeForMemoryIsAClearErrorNotAnAbort()
    {
        // 32 layers x 256 wide keys and values: 32 KiB of KV cache per token, 32 GiB for the largest context allowed.
        var path = LlmTools.TestModels.TinyModel.Write(TestFiles.NewPath("deep.gguf"), new LlmTools.TestModels.TinyModelOptions
        {
            Layers = 32, Embedding = 256, Heads = 4, KvHeads = 4, FeedForward = 64, ContextLength = 1 << 20,
        });
        using var lease = ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        long needed = lease.Model.EstimateKvBytes(1 << 20);
        Skip.If(needed <= GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2, "this machine has memory for the largest context allowed");
        var e = Assert.Throws<LlmException>(() =>
            CompletionEngine.Complete(lease, "x", Greedy, Context with { ContextSize = 1 << 20 }, NullEngineEvents.Instance, default));
        Assert.Equal("ContextTooLarge", e.ErrorId);
        Assert.Contains("MiB", e.Message);
        ModelCache.Instance.Unload(path);
    }

    [Fact]
    public void BatchSizeOutOfRangeIsRefused()
    {
        using var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var e = Assert.Throws<LlmException>(() => new BatchGenerator(lease, Greedy, Context, 0, "", NullEngineEvents.Instance));
        Assert.Equal("BatchSizeOutOfRange", e.ErrorId);
    }
}
