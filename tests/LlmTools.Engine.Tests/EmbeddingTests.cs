using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

public class EmbeddingTests
{
    private static readonly ContextOptions Context = new() { Threads = 1 };
    private static readonly EmbeddingOptions Mean = new() { Pooling = LlmPooling.Mean };

    public static TheoryData<string> Models() => ["tiny", "stories260K.gguf"];

    private static string PathOf(string model)
    {
        if (model == "tiny") return TestFiles.TinyModelPath;
        var p = TestFiles.Shared(model);
        Skip.If(p is null, "../shared/models is absent (a fresh clone)");
        return p!;
    }

    private static ModelLease Load(string model) =>
        ModelCache.Instance.Acquire(PathOf(model), new ModelLoadOptions(), NullEngineEvents.Instance, default);

    private static LlmEmbedding[] Embed(ModelLease lease, IReadOnlyList<string> texts, EmbeddingOptions? options = null, ContextOptions? context = null)
    {
        var items = EmbeddingEngine.Embed(lease, texts, options ?? Mean, context ?? Context, NullEngineEvents.Instance, default);
        Assert.Equal(texts.Count, items.Count);
        return items.Select(i => i.Error is { } e ? throw e : i.Embedding!).ToArray();
    }

    private static readonly string[] Stories =
    [
        "Once upon a time there was a little dog.", "The cat sat on the mat.", "Lily and Ben went to the park.",
        "Tom", "The sun was hot.", "Mom said good night.", "She had a red ball.", "A bird sang in the tree.",
        "They ate cake at the party.", "The boy ran fast.", "It was a big, scary storm.", "The fish swam in the pond.",
        "Sue found a shiny stone.", "The dog barked at the cat.", "He liked to draw pictures.", "The end.",
    ];

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void EveryVectorHasTheModelsEmbeddingLengthAndUnitLength(string model)
    {
        using var lease = Load(model);
        var result = Embed(lease, Stories[..4]);
        foreach (var e in result)
        {
            Assert.Equal(lease.Info.EmbeddingLength, e.Dimensions);
            Assert.Equal(lease.Info.EmbeddingLength, e.Vector.Length);
            double norm = Math.Sqrt(e.Vector.Sum(x => (double)x * x));
            Assert.InRange(norm, 0.9999, 1.0001);
            Assert.Equal(LlmPooling.Mean, e.Pooling);
            Assert.True(e.TokenCount > 0);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void ATextGivesTheSameVectorAloneAndInsideABatchOf16InInputOrder(string model)
    {
        using var lease = Load(model);
        var batched = Embed(lease, Stories, Mean with { BatchSize = 16 });
        for (int i = 0; i < Stories.Length; i++)
        {
            var alone = Assert.Single(Embed(lease, [Stories[i]], Mean with { BatchSize = 1 }));
            Assert.Equal(Stories[i], batched[i].Text);
            Assert.True(EmbeddingEngine.Cosine(alone.Vector, batched[i].Vector) >= 0.9999, $"text {i}: {Stories[i]}");
        }
        // Different texts give different vectors (the batch does not mix sequences up).
        Assert.True(EmbeddingEngine.Cosine(batched[0].Vector, batched[3].Vector) < 0.9999);
    }

    [SkippableFact]
    public void TheVectorsEqualLlamaCppsLlamaEmbedding()
    {
        using var lease = Load("stories260K.gguf");
        var reference = LlamaEmbeddingReference.Stories260KMeanL2;
        var result = Embed(lease, reference.Select(r => r.Text).ToArray(), new EmbeddingOptions { Pooling = LlmPooling.Mean, Normalize = LlmNormalize.L2 });
        for (int i = 0; i < reference.Length; i++)
        {
            double cosine = EmbeddingEngine.Cosine(reference[i].Vector, result[i].Vector);
            Assert.True(cosine >= 0.999, $"'{reference[i].Text}': cosine {cosine}");
        }
    }

    [SkippableFact]
    public void ANearDuplicateRanksAboveAnUnrelatedText()
    {
        using var lease = Load("stories260K.gguf");
        var v = Embed(lease, ["The little dog ran to the park to play.", "The little dog ran to the park to play!", "Numbers 7 8 9 equals xyz qqq."]);
        Assert.True(EmbeddingEngine.Cosine(v[0].Vector, v[1].Vector) > EmbeddingEngine.Cosine(v[0].Vector, v[2].Vector));
    }

    [Fact]
    public void ATextLongerThanTheContextIsAnErrorNamingBothNumbersUnlessTruncated()
    {
        using var lease = Load("tiny");
        var small = new ContextOptions { Threads = 1, ContextSize = 16 };
        string longText = string.Join(' ', Enumerable.Repeat("hello world", 40));
        int tokens = CompletionEngine.Tokenize(lease, longText).Count;
        var items = EmbeddingEngine.Embed(lease, ["short", longText, "also short"], Mean, small, NullEngineEvents.Instance, default);
        Assert.NotNull(items[0].Embedding);
        Assert.NotNull(items[2].Embedding); // the others go on
        var error = Assert.IsType<LlmException>(items[1].Error);
        Assert.Equal("TextTooLong", error.ErrorId);
        Assert.Contains(tokens.ToString(), error.Message);
        Assert.Contains("16", error.Message);

        var truncated = Embed(lease, [longText], Mean with { Truncate = true }, small)[0];
        Assert.Equal(16, truncated.TokenCount);
        Assert.True(truncated.Truncated);
    }

    [Fact]
    public void NormalizeNoneKeepsTheModelsScaleAndTheDirection()
    {
        using var lease = Load("tiny");
        var l2 = Embed(lease, ["hello world"])[0];
        var raw = Embed(lease, ["hello world"], Mean with { Normalize = LlmNormalize.None })[0];
        Assert.Equal(LlmNormalize.None, raw.Normalize);
        Assert.True(EmbeddingEngine.Cosine(l2.Vector, raw.Vector) >= 0.9999);
    }

    [Fact]
    public void PoolingsDifferAndTheContextFollowsTheOneAsked()
    {
        using var lease = Load("tiny");
        string text = "hello world and more words";
        var mean = Embed(lease, [text])[0];
        var last = Embed(lease, [text], new EmbeddingOptions { Pooling = LlmPooling.Last })[0];
        var cls = Embed(lease, [text], new EmbeddingOptions { Pooling = LlmPooling.Cls })[0];
        Assert.Equal(LlmPooling.Last, last.Pooling);
        Assert.True(EmbeddingEngine.Cosine(mean.Vector, last.Vector) < 0.9999);
        Assert.True(EmbeddingEngine.Cosine(cls.Vector, last.Vector) < 0.9999);
        // Back to Mean after the context was replaced for the other poolings: the same vector as before.
        var meanAgain = Embed(lease, [text])[0];
        Assert.True(EmbeddingEngine.Cosine(mean.Vector, meanAgain.Vector) >= 0.9999);
    }

    [Fact]
    public void RankPoolingOnAModelWithoutAClassifierIsAClearError()
    {
        using var lease = Load("tiny");
        var e = Assert.Throws<LlmException>(() => EmbeddingEngine.Embed(lease, ["x"], new EmbeddingOptions { Pooling = LlmPooling.Rank },
            Context, NullEngineEvents.Instance, default));
        Assert.Equal("RankPoolingNotSupported", e.ErrorId);
    }

    [Fact]
    public void AVocabularyOnlyModelIsAClearError()
    {
        var path = TinyModel.WriteVocabularyOnly(TestFiles.NewPath("vocab.gguf"));
        using var lease = ModelCache.Instance.AcquireTokenizer(path, NullEngineEvents.Instance, default);
        var e = Assert.Throws<LlmException>(() => EmbeddingEngine.Embed(lease, ["x"], Mean, Context, NullEngineEvents.Instance, default));
        Assert.Equal("VocabularyOnlyModel", e.ErrorId);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(257)]
    public void ABatchSizeOutOfRangeIsAnError(int size)
    {
        using var lease = Load("tiny");
        var e = Assert.Throws<LlmException>(() => EmbeddingEngine.Embed(lease, ["x"], Mean with { BatchSize = size }, Context, NullEngineEvents.Instance, default));
        Assert.Equal("BatchSizeOutOfRange", e.ErrorId);
    }

    [Fact]
    public void CosineOfVectorsOfDifferentLengthsIsAnError()
    {
        Assert.Equal(1.0, EmbeddingEngine.Cosine([1f, 0f], [2f, 0f]), 6);
        Assert.Equal(0.0, EmbeddingEngine.Cosine([1f, 0f], [0f, 3f]), 6);
        Assert.Equal(-1.0, EmbeddingEngine.Cosine([1f, 1f], [-1f, -1f]), 6);
        Assert.Equal("DimensionMismatch", Assert.Throws<LlmException>(() => EmbeddingEngine.Cosine([1f], [1f, 2f])).ErrorId);
    }

    [Fact]
    public void TheDefaultPoolingIsTheModelsMetadataElseMean()
    {
        using var lease = Load("tiny");
        Assert.Equal(LlmPooling.Mean, EmbeddingEngine.DefaultPooling(lease.Info));
        var info = lease.Info;
        var withLast = new LlmModelInfo
        {
            Path = info.Path, Name = info.Name, Architecture = "bert", ParameterCount = 1, SizeBytes = 1, FileType = "F32",
            ContextLength = 1, EmbeddingLength = 1, LayerCount = 1, VocabularySize = 1, TokenizerModel = null, TokenizerPreset = null,
            BosToken = null, EosToken = null, AddBosToken = false, ChatTemplate = null, IsVocabularyOnly = false, GgufVersion = 3, TensorCount = 1,
            Metadata = new Dictionary<string, object> { ["bert.pooling_type"] = 2u },
        };
        Assert.Equal(LlmPooling.Cls, EmbeddingEngine.DefaultPooling(withLast));
    }
}
