using System.Diagnostics;
using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// Model files that the previous validator let through and that make llama.cpp at the bound commit abort the whole
/// process (GGML_ASSERT, an uncaught std::out_of_range) or hang it. Each one is written, refused with a stable id
/// before native code sees it, and the test process living to assert that is part of the proof.
/// </summary>
public class GgufHostileTests
{
    private static string Write(Action<TinyModelOptions> configure)
    {
        var o = new TinyModelOptions();
        configure(o);
        return TinyModel.Write(TestFiles.NewPath("hostile.gguf"), o);
    }

    private static LlmException Refused(string path, string mentioned)
    {
        var e = Assert.Throws<LlmException>(() => ModelInfoReader.Read(path));
        Assert.Equal("InvalidGgufFile", e.ErrorId);
        Assert.Equal(LlmErrorKind.InvalidData, e.Kind);
        Assert.Contains(mentioned, e.Message);
        var load = Assert.Throws<LlmException>(() =>
            ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default).Dispose());
        Assert.Equal("InvalidGgufFile", load.ErrorId);
        return e;
    }

    public static TheoryData<string, object?, string, object?, string> HostileHyperparameters() => new()
    {
        // GGML_ASSERT(hparams.n_expert <= LLAMA_MAX_EXPERTS)
        { "llama.expert_count", 513u, "llama.expert_used_count", 2u, "expert_count is 513" },
        // GGML_ASSERT(hparams.n_expert_used <= hparams.n_expert)
        { "llama.expert_count", 4u, "llama.expert_used_count", 5u, "expert_used_count is 5" },
        // GGML_ASSERT(hparams.n_expert_used > 0) for a MoE model
        { "llama.expert_count", 4u, "llama.expert_used_count", 0u, "expert_used_count is 0" },
        // GGML_ASSERT(hparams.n_expert_used == 0) without experts
        { "llama.expert_used_count", 2u, "llama.expert_count", null, "expert_used_count is 2" },
        // expert groups that do not divide the experts (GGML_ASSERT n_expert % n_expert_groups == 0)
        { "llama.expert_group_count", 3u, "llama.expert_count", null, "groups" },
        // per-layer lists: a string list made Get-LlmModel throw FormatException; llama.cpp's get_arr asserts the type
        { "llama.attention.head_count", new[] { "4", "4" }, "llama.block_count", 2u, "not of 32-bit integers" },
        { "llama.attention.head_count", new[] { 4f, 4f }, "llama.block_count", 2u, "not of 32-bit integers" },
        { "llama.feed_forward_length", new[] { 128u, 128u, 128u }, "llama.block_count", 2u, "lists 3 values for 2 layers" },
        { "llama.attention.head_count_kv", new[] { 2, 3 }, "llama.attention.head_count", new[] { 4, 4 }, "layer 1" },
        { "llama.attention.head_count", new[] { 4, -4 }, "llama.block_count", 2u, "negative" },
        // any other list under the architecture is read as numbers
        { "llama.rope.dimension_sections", new[] { "a", "b" }, "llama.block_count", 2u, "where llama.cpp reads numbers" },
        // GGML_ASSERT(rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED)
        { "llama.rope.scaling.type", "bogus", "llama.block_count", 2u, "rope.scaling.type" },
        // llama's graph: GGML_ASSERT(n_embd_head == n_rot) at the first decode
        { "llama.rope.dimension_count", 8u, "llama.block_count", 2u, "head sizes differ" },
        { "llama.attention.key_length", 32u, "llama.block_count", 2u, "head sizes differ" },
        // special token ids outside the vocabulary
        { "tokenizer.ggml.eot_token_id", 100000u, "llama.block_count", 2u, "eot_token_id is 100000" },
        { "tokenizer.ggml.fim_pre_token_id", -5, "llama.block_count", 2u, "fim_pre_token_id is -5" },
        { "tokenizer.ggml.bos_token_id", "1", "llama.block_count", 2u, "bos_token_id is not a token id" },
        // vocabulary lists of the wrong type (gguf_get_arr_data / gguf_get_arr_str assert on the element type)
        { "tokenizer.ggml.scores", new[] { "x" }, "llama.block_count", 2u, "tokenizer.ggml.scores is not a list of 32-bit floats" },
        { "tokenizer.ggml.token_type", new[] { 1f }, "llama.block_count", 2u, "token_type is not a list of 32-bit integers" },
        { "tokenizer.ggml.tokens", new[] { 1, 2, 3 }, "llama.block_count", 2u, "tokenizer.ggml.tokens is not" },
    };

    [Theory]
    [MemberData(nameof(HostileHyperparameters))]
    public void HostileMetadataIsRefused(string key, object? value, string key2, object? value2, string mentioned)
    {
        var path = Write(o =>
        {
            o.Overrides[key] = value;
            o.Overrides[key2] = value2;
        });
        Refused(path, mentioned);
    }

    [Fact]
    public void ListingSurvivesAStringHeadCountList()
    {
        // Get-LlmModel -ListAvailable used to stop at this file with a raw FormatException.
        var path = Write(o => o.Overrides["llama.attention.head_count"] = new[] { "four", "four" });
        var e = Refused(path, "head_count");
        Assert.IsNotType<FormatException>(e.InnerException);
    }

    private static (string[] Tokens, float[] Scores, int[] Types) Vocabulary(Func<List<(string Text, int Type)>, List<(string Text, int Type)>> change)
    {
        var (tokens, _, types) = TinyModel.BuildVocabulary();
        var list = change(tokens.Zip(types).Select(p => (p.First, p.Second)).ToList());
        return (list.Select(p => p.Text).ToArray(), list.Select(_ => 0f).ToArray(), list.Select(p => p.Type).ToArray());
    }

    [Fact]
    public void SentencePieceVocabularyWithoutByteTokensIsRefused()
    {
        // ASCII tokenizes, but an emoji falls back to <0xF0>..., looked up with map::at: std::out_of_range, abort.
        var vocab = Vocabulary(l => l.Where(p => !p.Text.StartsWith("<0x", StringComparison.Ordinal)).ToList());
        var path = Write(o => o.Vocabulary = vocab);
        Refused(path, "lacks the byte token");

        // Only the bytes of multi-byte characters missing: still refused (the byte of the first one is named).
        var ascii = Vocabulary(l => l.Where(p => !(p.Text.StartsWith("<0x", StringComparison.Ordinal) && p.Text[3] >= '8')).ToList());
        Refused(Write(o => o.Vocabulary = ascii), "<0x80>");
    }

    [Fact]
    public void TheTinyModelWithEveryByteTokenTokenizesAnEmoji()
    {
        // The counterpart of the test above: the complete vocabulary goes through byte fallback without aborting.
        using var lease = ModelCache.Instance.AcquireTokenizer(TestFiles.TinyModelPath, NullEngineEvents.Instance, default);
        var t = CompletionEngine.Tokenize(lease, "hi \U0001F600", addSpecial: false);
        Assert.True(t.Count >= 4); // the emoji is four byte tokens
    }

    [Fact]
    public void EmptyTokenIsRefused()
    {
        var vocab = Vocabulary(l => { l[^1] = ("", 1); return l; });
        Refused(Write(o => o.Vocabulary = vocab), "is empty");
    }

    [Fact]
    public void TokenThatIsEmptyAsACStringIsRefused()
    {
        // llama.cpp keeps GGUF strings as C strings: "\0x" is the empty token to it.
        var vocab = Vocabulary(l => { l[^1] = ("\0x", 1); return l; });
        Refused(Write(o => o.Vocabulary = vocab), "is empty");
    }

    [Fact]
    public void DuplicateTokensAreRefused()
    {
        // GGML_ASSERT(id_to_token.size() == token_to_id.size())
        var vocab = Vocabulary(l => { l[^1] = (l[^2].Text, 1); return l; });
        Refused(Write(o => o.Vocabulary = vocab), "are the same text");
        // Equal up to a NUL byte is equal to llama.cpp.
        var nul = Vocabulary(l => { l[^1] = (l[^2].Text + "\0tail", 1); return l; });
        Refused(Write(o => o.Vocabulary = nul), "are the same text");
    }

    [Fact]
    public void ByteTypedTokenThatIsNotAByteIsRefused()
    {
        // token_to_byte reads text.substr(3, 2): a short text throws std::out_of_range while detokenizing.
        var vocab = Vocabulary(l => { l[^1] = ("ab", 6); return l; });
        Refused(Write(o => o.Vocabulary = vocab), "is marked as a byte");
    }

    private static string WriteBpe(string[] merges, Action<TinyModelOptions>? more = null)
    {
        // A byte-level BPE vocabulary: the 256 byte characters of GPT-2 plus a few merged pieces.
        var tokens = new List<string>();
        for (int b = 0; b < 256; b++) tokens.Add(ByteChar(b));
        tokens.AddRange(["he", "ll", "hell", "</s>", "<s>"]);
        var vocab = (tokens.ToArray(), tokens.Select(_ => 0f).ToArray(), tokens.Select(_ => 1).ToArray());
        return Write(o =>
        {
            o.Vocabulary = vocab;
            o.Overrides["tokenizer.ggml.model"] = "gpt2";
            o.Overrides["tokenizer.ggml.pre"] = "gpt-2";
            o.Overrides["tokenizer.ggml.merges"] = merges;
            o.Overrides["tokenizer.ggml.unknown_token_id"] = null;
            o.Overrides["tokenizer.ggml.bos_token_id"] = (uint)tokens.IndexOf("<s>");
            o.Overrides["tokenizer.ggml.eos_token_id"] = (uint)tokens.IndexOf("</s>");
            more?.Invoke(o);
        });
    }

    private static string ByteChar(int b)
    {
        // GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to 256 + n.
        bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
        if (printable) return ((char)b).ToString();
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!(x is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF)) n++;
        return ((char)(256 + n)).ToString();
    }

    [Fact]
    public void BpeMergesMustReferToVocabularyTokens()
    {
        Assert.Equal("gpt2", ModelInfoReader.Read(WriteBpe(["h e", "l l", "he ll"])).TokenizerModel);
        Refused(WriteBpe(["h e", "x y z"]), "merge 1 'x y z' refers to 'y z'");
        Refused(WriteBpe(["h e", "q q"]), "refers to 'qq'");
        Refused(WriteBpe(["he"]), "is not two tokens separated by a space");
        Refused(WriteBpe(["h e"], o => o.Overrides["tokenizer.ggml.merges"] = new[] { 1, 2 }), "merges is not a list of strings");
    }

    [SkippableFact]
    public void AFifoIsNotOpened()
    {
        Skip.If(OperatingSystem.IsWindows(), "FIFOs are a Unix thing");
        var path = TestFiles.NewPath("fifo.gguf");
        using (var p = Process.Start("mkfifo", [path])) p.WaitForExit();
        Assert.True(File.Exists(path));
        // Opening it the ordinary way blocks until a writer comes: this returned at once, with an error.
        var e = Assert.Throws<LlmException>(() => ModelInfoReader.Read(path));
        Assert.Equal("ModelPathNotRegularFile", e.ErrorId);
        var load = Assert.Throws<LlmException>(() =>
            ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default).Dispose());
        Assert.Equal("ModelPathNotRegularFile", load.ErrorId);
    }

    [SkippableFact]
    public void ADeviceIsNotOpened()
    {
        Skip.If(!File.Exists("/dev/zero"), "no /dev/zero here");
        Assert.Equal("ModelPathNotRegularFile", Assert.Throws<LlmException>(() => ModelInfoReader.Read("/dev/zero")).ErrorId);
    }

    [SkippableFact]
    public void AFolderLinkLoopListsEachFileOnce()
    {
        Skip.If(OperatingSystem.IsWindows(), "symbolic links need privileges on Windows");
        var root = TestFiles.NewPath("loop");
        Directory.CreateDirectory(Path.Combine(root, "sub"));
        File.Copy(TestFiles.TinyModelPath, Path.Combine(root, "sub", "model.gguf"));
        Directory.CreateSymbolicLink(Path.Combine(root, "sub", "again"), root);
        Directory.CreateSymbolicLink(Path.Combine(root, "self"), ".");
        Directory.CreateSymbolicLink(Path.Combine(root, "dangling"), Path.Combine(root, "absent"));
        var found = ModelLocations.FindGgufFiles([root]).ToList();
        Assert.Single(found);
        Assert.EndsWith("model.gguf", found[0]);

        // A folder reached only through a link is still searched.
        var other = TestFiles.NewPath("elsewhere");
        Directory.CreateDirectory(other);
        File.Copy(TestFiles.TinyModelPath, Path.Combine(other, "linked.gguf"));
        Directory.CreateSymbolicLink(Path.Combine(root, "link"), other);
        Assert.Equal(2, ModelLocations.FindGgufFiles([root]).Count());
    }

    [SkippableFact]
    public void RealVocabulariesAndModelsAreAccepted()
    {
        // The checks above must not refuse what real converters write.
        Skip.If(TestFiles.SharedModels is null, "../shared/models is absent (a fresh clone)");
        foreach (var f in Directory.EnumerateFiles(TestFiles.SharedModels!, "*.gguf", SearchOption.AllDirectories))
            ModelInfoReader.Read(f);
    }
}
