using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>Bad files get a clear error with a stable id, and never reach native code (which would abort the process).</summary>
public class GgufValidationTests
{
    private static string WriteTiny(Action<TinyModelOptions>? configure = null)
    {
        var o = new TinyModelOptions();
        configure?.Invoke(o);
        return TinyModel.Write(TestFiles.NewPath("model.gguf"), o);
    }

    private static LlmException AcquireFails(string path)
    {
        var e = Assert.Throws<LlmException>(() =>
            ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default).Dispose());
        return e;
    }

    [Fact]
    public void ReadsTheHeaderOfAWrittenModel()
    {
        var path = WriteTiny(o => { o.Layers = 3; o.ContextLength = 777; o.ChatTemplate = "{{ messages }}"; });
        var info = ModelInfoReader.Read(path);
        Assert.Equal("llama", info.Architecture);
        Assert.Equal("tiny-llama-test", info.Name);
        Assert.Equal(3, info.LayerCount);
        Assert.Equal(777, info.ContextLength);
        Assert.Equal(64, info.EmbeddingLength);
        Assert.Equal("F32", info.FileType);
        Assert.Equal("llama", info.TokenizerModel);
        Assert.Equal("<s>", info.BosToken);
        Assert.Equal("</s>", info.EosToken);
        Assert.True(info.HasChatTemplate);
        Assert.Equal("{{ messages }}", info.ChatTemplate);
        Assert.False(info.IsVocabularyOnly);
        // 2 + 9 tensors per layer (token_embd, output_norm, output + per layer), elements summed
        Assert.Equal(3 + 9 * 3, info.TensorCount);
        long vocab = info.VocabularySize, e = 64, kv = 32, ff = 128;
        long expected = vocab * e * 2 + e + 3 * (2 * e + 2 * e * e + 2 * e * kv + 3 * e * ff);
        Assert.Equal(expected, info.ParameterCount);
    }

    [Fact]
    public void MissingFileIsObjectNotFound()
    {
        var e = Assert.Throws<LlmException>(() => ModelInfoReader.Read(TestFiles.NewPath("absent.gguf")));
        Assert.Equal("ModelFileNotFound", e.ErrorId);
        Assert.Equal(LlmErrorKind.ObjectNotFound, e.Kind);
        Assert.Equal("ModelFileNotFound", AcquireFails(TestFiles.NewPath("absent.gguf")).ErrorId);
    }

    [Fact]
    public void FolderIsRefusedWithAHint()
    {
        Assert.Equal("ModelPathIsDirectory", AcquireFails(TestFiles.TempFolder).ErrorId);
    }

    [Fact]
    public void TextFileIsNotGguf()
    {
        var path = TestFiles.NewPath("notes.gguf");
        File.WriteAllText(path, "This is a text file, not a model. It is long enough to hold a header.");
        Assert.Equal("NotGgufFile", AcquireFails(path).ErrorId);
        var empty = TestFiles.NewPath("empty.gguf");
        File.WriteAllBytes(empty, []);
        Assert.Equal("NotGgufFile", AcquireFails(empty).ErrorId);
    }

    [Theory]
    [InlineData(0.5)]   // cut inside the tensor data
    [InlineData(0.02)]  // cut inside the metadata (the vocabulary)
    [InlineData(0.99)]  // only the last bytes missing
    public void TruncatedFileIsDetected(double keep)
    {
        var path = WriteTiny();
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(int)(bytes.Length * keep)]);
        var e = AcquireFails(path);
        Assert.Equal("InvalidGgufFile", e.ErrorId);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void CorruptedCountsDoNotAllocateOrCrash()
    {
        var path = WriteTiny();
        var bytes = File.ReadAllBytes(path);
        // The metadata count (bytes 16..23) set absurdly high.
        BitConverter.TryWriteBytes(bytes.AsSpan(16, 8), ulong.MaxValue / 2);
        File.WriteAllBytes(path, bytes);
        Assert.Equal("InvalidGgufFile", AcquireFails(path).ErrorId);

        // Random bytes after a valid signature.
        var rnd = new byte[4096];
        new Random(7).NextBytes(rnd);
        "GGUF"u8.CopyTo(rnd);
        BitConverter.TryWriteBytes(rnd.AsSpan(4, 4), 3u);
        File.WriteAllBytes(path, rnd);
        Assert.Equal("InvalidGgufFile", AcquireFails(path).ErrorId);
    }

    // Values that make llama.cpp at this commit abort the process or crash (measured): the validator refuses them.
    [Theory]
    [InlineData("llama.block_count", 0u, "block_count")]
    [InlineData("llama.block_count", 513u, "block_count")]
    [InlineData("llama.context_length", 0u, "context_length")]
    [InlineData("llama.attention.layer_norm_rms_epsilon", float.NaN, "epsilon")]
    [InlineData("llama.attention.layer_norm_rms_epsilon", float.PositiveInfinity, "epsilon")]
    [InlineData("llama.attention.head_count", 0u, "head_count")]
    [InlineData("llama.attention.head_count_kv", 3u, "key/value heads")]
    [InlineData("llama.embedding_length", 0u, "embedding_length")]
    [InlineData("llama.rope.freq_base", float.NaN, "freq_base")]
    [InlineData("tokenizer.ggml.bos_token_id", 99999u, "bos_token_id")]
    public void ProcessKillingHyperparametersAreRefused(string key, object value, string mentioned)
    {
        var path = WriteTiny(o => o.Overrides[key] = value);
        var e = AcquireFails(path);
        Assert.Equal("InvalidGgufFile", e.ErrorId);
        Assert.Contains(mentioned, e.Message);
    }

    [Fact]
    public void MissingRequiredHyperparameterIsRefused()
    {
        var path = WriteTiny(o => o.Overrides["llama.block_count"] = null);
        var e = AcquireFails(path);
        Assert.Equal("InvalidGgufFile", e.ErrorId);
        Assert.Contains("block_count is missing", e.Message);
    }

    [Fact]
    public void VocabularyOnlyFileCanTokenizeButNotGenerate()
    {
        var path = TinyModel.WriteVocabularyOnly(TestFiles.NewPath("vocab.gguf"));
        Assert.True(ModelInfoReader.Read(path).IsVocabularyOnly);
        Assert.Equal("VocabularyOnlyModel", AcquireFails(path).ErrorId);
        using var lease = ModelCache.Instance.AcquireTokenizer(path, NullEngineEvents.Instance, default);
        var t = CompletionEngine.Tokenize(lease, "the little girl");
        Assert.Equal(1, t.Ids[0]); // BOS
        Assert.Equal("the little girl", string.Concat(t.Pieces[1..]).Replace('\u2581', ' ').Trim());
    }

    public static TheoryData<string> SharedVocabularies() =>
    [
        "ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-bert-bge.gguf",
        "ggml-vocab-deepseek-coder.gguf", "ggml-vocab-falcon.gguf", "ggml-vocab-starcoder.gguf",
    ];

    [SkippableTheory]
    [MemberData(nameof(SharedVocabularies))]
    public void SharedVocabularyFilesAreRecognisedAndRefusedForGeneration(string name)
    {
        var path = TestFiles.Shared(Path.Combine("vocab", name));
        Skip.If(path is null, "../shared/models is absent (a fresh clone)");
        var info = ModelInfoReader.Read(path!);
        Assert.True(info.IsVocabularyOnly);
        Assert.True(info.VocabularySize > 30000);
        Assert.Equal("VocabularyOnlyModel", AcquireFails(path!).ErrorId);
    }

    [SkippableTheory]
    [InlineData("ggml-vocab-llama-spm.gguf", new[] { 15043, 3186, 29892, 445, 338, 263, 1243, 29889 })]
    [InlineData("ggml-vocab-phi-3.gguf", new[] { 15043, 3186, 29892, 445, 338, 263, 1243, 29889 })]
    [InlineData("ggml-vocab-gpt-2.gguf", new[] { 15496, 995, 11, 428, 318, 257, 1332, 13 })]
    [InlineData("ggml-vocab-bert-bge.gguf", new[] { 7592, 2088, 1010, 2023, 2003, 1037, 3231, 1012 })]
    public void TokenizesLikeLlamaCppsOwnTestVectors(string name, int[] expected)
    {
        var path = TestFiles.Shared(Path.Combine("vocab", name));
        Skip.If(path is null, "../shared/models is absent (a fresh clone)");
        using var lease = ModelCache.Instance.AcquireTokenizer(path!, NullEngineEvents.Instance, default);
        var t = CompletionEngine.Tokenize(lease, "Hello world, this is a test.", addSpecial: false);
        Assert.Equal(expected, t.Ids);
        Assert.Equal(expected.Length, t.Count);
    }
}
