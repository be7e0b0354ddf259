using LlmTools.Hub;
using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>The Hub client against a real HTTP server on 127.0.0.1 speaking the Hub's protocol.</summary>
public sealed class HubTests : IDisposable
{
    private readonly FakeHub _hub = new();
    private readonly string _cacheRoot = Path.Combine(TestFiles.TempFolder, "hf-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly byte[] _model = File.ReadAllBytes(TestFiles.Shared("stories260K.gguf") ?? TestFiles.TinyModelPath);

    public void Dispose() => _hub.Dispose();

    private HubSettings Settings(bool offline = false) => new()
    {
        Endpoint = _hub.Endpoint, HubCache = _cacheRoot, TokenPath = Path.Combine(_cacheRoot, "token"), Offline = offline,
    };

    private HubInstallResult Install(string reference, string? token = null, bool offline = false, bool update = false, string? quantization = null)
    {
        Assert.True(HubReference.TryParse(reference, out var r));
        return HubModels.Install(r!, quantization, null, update, token, NullEngineEvents.Instance, default, Settings(offline));
    }

    private string AddStories(string id = "test-org/stories-GGUF") =>
        _hub.AddRepo(id, new Dictionary<string, byte[]>
        {
            ["stories260K-F32.gguf"] = _model,
            ["README.md"] = "# stories\n"u8.ToArray(),
        });

    private int CdnGets => _hub.Requests.Count(r => r.Server == "cdn" && r.Method == "GET");

    [Fact]
    public void InstallWritesExactlyTheHuggingFaceCacheLayout()
    {
        var commit = AddStories();
        var result = Install("test-org/stories-GGUF");
        var sha = FakeHub.Sha256(_model);
        var repo = Path.Combine(_cacheRoot, "models--test-org--stories-GGUF");
        // blobs/{sha256}: the bytes, nothing partial left behind
        Assert.Equal(_model, File.ReadAllBytes(Path.Combine(repo, "blobs", sha)));
        Assert.Equal([sha], Directory.GetFiles(Path.Combine(repo, "blobs")).Select(Path.GetFileName));
        // snapshots/{commit}/{path}: a relative symlink to the blob
        var link = Path.Combine(repo, "snapshots", commit, "stories260K-F32.gguf");
        Assert.Equal(link, result.Path);
        Assert.Equal("../../blobs/" + sha, new FileInfo(link).LinkTarget);
        // refs/main: the commit, no newline
        Assert.Equal(commit, File.ReadAllText(Path.Combine(repo, "refs", "main")));
        // .locks/{repo folder}/{etag}.lock
        Assert.True(File.Exists(Path.Combine(_cacheRoot, ".locks", "models--test-org--stories-GGUF", sha + ".lock")));
        Assert.Equal(["blobs", "refs", "snapshots"], Directory.GetDirectories(repo).Select(Path.GetFileName).Order());
        Assert.True(result.Downloaded);
        // And it is a working model.
        Assert.Equal("llama", ModelInfoReader.Read(result.Path).Architecture);
    }

    [Fact]
    public void ACachedModelIsUsedWithNoNetworkCall()
    {
        AddStories();
        var first = Install("test-org/stories-GGUF");
        int requests = _hub.Requests.Count;
        var second = Install("test-org/stories-GGUF");
        Assert.Equal(first.Path, second.Path);
        Assert.False(second.Downloaded);
        Assert.Equal(requests, _hub.Requests.Count);
        // Offline: the same, and a model not cached is a one-line error naming the cause.
        Assert.Equal(first.Path, Install("test-org/stories-GGUF", offline: true).Path);
        var e = Assert.Throws<LlmException>(() => Install("test-org/other-GGUF", offline: true));
        Assert.Equal("HubNotCached", e.ErrorId);
        Assert.Contains("HF_HUB_OFFLINE", e.Message);
        Assert.Equal(requests, _hub.Requests.Count);
        // -Update asks the Hub again but downloads nothing new.
        int gets = CdnGets;
        Assert.False(Install("test-org/stories-GGUF", update: true).Downloaded);
        Assert.Equal(gets, CdnGets);
    }

    [Fact]
    public void ADroppedConnectionResumesWithARangeRequest()
    {
        AddStories();
        _hub.DropNext = 1;
        _hub.DropAfterBytes = 300_000;
        Assert.True(_model.Length > 300_000);
        var result = Install("test-org/stories-GGUF");
        Assert.Equal(_model, File.ReadAllBytes(result.Path));
        Assert.Contains(_hub.Requests, r => r.Server == "cdn" && r.Range == "bytes=300000-");
    }

    [Fact]
    public void AnInterruptedDownloadIsKeptAndResumedByTheNextCall()
    {
        AddStories();
        _hub.DropNext = 100;
        _hub.DropAfterBytes = _model.Length / 10; // five attempts get half the file
        var e = Assert.Throws<LlmException>(() => Install("test-org/stories-GGUF"));
        Assert.Equal("HubDownloadInterrupted", e.ErrorId);
        var partial = Path.Combine(_cacheRoot, "models--test-org--stories-GGUF", "blobs", FakeHub.Sha256(_model) + ".incomplete");
        Assert.True(new FileInfo(partial).Length >= _model.Length / 10);
        Assert.True(new FileInfo(partial).Length < _model.Length);
        _hub.DropNext = 0;
        var result = Install("test-org/stories-GGUF");
        Assert.Equal(_model, File.ReadAllBytes(result.Path));
        Assert.False(File.Exists(partial));
        Assert.Contains(_hub.Requests, r => r.Server == "cdn" && r.Range is not null && r.Range.StartsWith("bytes=") && r.Range != "bytes=0-");
    }

    [Fact]
    public void ACorruptedDownloadNeverEntersTheCache()
    {
        AddStories();
        _hub.CorruptNext = 1;
        var e = Assert.Throws<LlmException>(() => Install("test-org/stories-GGUF"));
        Assert.Equal("HubIntegrityError", e.ErrorId);
        Assert.Contains("sha256", e.Message);
        var blobs = Path.Combine(_cacheRoot, "models--test-org--stories-GGUF", "blobs");
        Assert.Empty(Directory.GetFiles(blobs));
        Assert.False(Directory.Exists(Path.Combine(_cacheRoot, "models--test-org--stories-GGUF", "snapshots")));
        Assert.Equal(_model, File.ReadAllBytes(Install("test-org/stories-GGUF").Path));
    }

    [Fact]
    public void TheTokenNeverReachesTheCdn()
    {
        _hub.Tokens["hf_secret_for_test"] = "alice";
        AddStories();
        Install("test-org/stories-GGUF", token: "hf_secret_for_test");
        Assert.Contains(_hub.Requests, r => r.Server == "hub" && r.HadAuthorization);
        Assert.Contains(_hub.Requests, r => r.Server == "cdn");
        Assert.DoesNotContain(_hub.Requests, r => r.Server == "cdn" && r.HadAuthorization);
    }

    [Fact]
    public void GatedRepositoriesSayWhatToDo()
    {
        _hub.Tokens["hf_alice"] = "alice";
        _hub.Tokens["hf_bob"] = "bob";
        _hub.AddRepo("meta/gated-GGUF", new Dictionary<string, byte[]> { ["m-Q4_K_M.gguf"] = _model }, gated: true, members: ["alice"]);
        var anonymous = Assert.Throws<LlmException>(() => Install("meta/gated-GGUF"));
        Assert.Equal("HubGatedRepo", anonymous.ErrorId);
        Assert.Contains("accept its terms", anonymous.Message);
        Assert.Contains("token", anonymous.Message);
        var notApproved = Assert.Throws<LlmException>(() => Install("meta/gated-GGUF", token: "hf_bob"));
        Assert.Equal("HubGatedRepo", notApproved.ErrorId);
        Assert.Contains("authorized list", notApproved.Message);
        Assert.True(File.Exists(Install("meta/gated-GGUF", token: "hf_alice").Path));
    }

    [Fact]
    public void MissingPrivateAndBadTokenErrors()
    {
        _hub.Tokens["hf_alice"] = "alice";
        _hub.AddRepo("alice/private-GGUF", new Dictionary<string, byte[]> { ["m.gguf"] = _model }, isPrivate: true, members: ["alice"]);
        Assert.Equal("HubRepoNotFound", Assert.Throws<LlmException>(() => Install("nobody/missing-GGUF")).ErrorId);
        Assert.Equal("HubRepoNotFound", Assert.Throws<LlmException>(() => Install("alice/private-GGUF")).ErrorId);
        Assert.True(File.Exists(Install("alice/private-GGUF", token: "hf_alice").Path));
        var bad = Assert.Throws<LlmException>(() => Install("nobody/missing-GGUF", token: "hf_revoked"));
        Assert.Equal("HubInvalidToken", bad.ErrorId);
        Assert.DoesNotContain("hf_revoked", bad.Message);
        AddStories();
        Assert.Equal("HubRevisionNotFound", Assert.Throws<LlmException>(() => Install("test-org/stories-GGUF@v9")).ErrorId);
        Assert.Equal("HubFileNotFound", Assert.Throws<LlmException>(() => Install("test-org/stories-GGUF/nope.gguf")).ErrorId);
        // The missing file is recorded in .no_exist/{commit}/{path}, so asking again makes no network call.
        var commit = _hub.CommitOf("test-org/stories-GGUF");
        Assert.True(File.Exists(Path.Combine(_cacheRoot, "models--test-org--stories-GGUF", ".no_exist", commit, "nope.gguf")));
        int requests = _hub.Requests.Count;
        Assert.Equal("HubFileNotFound", Assert.Throws<LlmException>(() => Install("test-org/stories-GGUF/nope.gguf")).ErrorId);
        Assert.Equal(requests, _hub.Requests.Count);
    }

    [Fact]
    public void QuantizationIsChosenAsLlamaCppDoesAndAmbiguityListsTheFiles()
    {
        var small = "GGUF-small"u8.ToArray();
        _hub.AddRepo("org/multi-GGUF", new Dictionary<string, byte[]>
        {
            ["model-Q4_K_M.gguf"] = _model, ["model-Q8_0.gguf"] = [.. _model, 1], ["mmproj-model-f16.gguf"] = small,
        });
        Assert.EndsWith("model-Q4_K_M.gguf", Install("org/multi-GGUF").Path);
        Assert.EndsWith("model-Q8_0.gguf", Install("org/multi-GGUF:Q8_0").Path);
        Assert.EndsWith("model-Q8_0.gguf", Install("org/multi-GGUF", quantization: "q8_0").Path);
        _hub.AddRepo("org/noq4-GGUF", new Dictionary<string, byte[]> { ["a-Q8_0.gguf"] = _model, ["a-F16.gguf"] = [.. _model, 2] });
        var e = Assert.Throws<LlmException>(() => Install("org/noq4-GGUF"));
        Assert.Equal("HubQuantizationNotFound", e.ErrorId);
        Assert.Contains("a-Q8_0.gguf (Q8_0)", e.Message);
        Assert.Contains("a-F16.gguf (F16)", e.Message);
    }

    [Fact]
    public void SplitModelsDownloadEveryPart()
    {
        var commit = _hub.AddRepo("org/split-GGUF", new Dictionary<string, byte[]>
        {
            ["big-Q4_K_M-00001-of-00002.gguf"] = _model, ["big-Q4_K_M-00002-of-00002.gguf"] = [.. _model, 9],
        });
        var result = Install("org/split-GGUF");
        Assert.EndsWith("big-Q4_K_M-00001-of-00002.gguf", result.Path);
        Assert.Equal(2, result.Model.Parts.Count);
        Assert.True(File.Exists(Path.Combine(_cacheRoot, "models--org--split-GGUF", "snapshots", commit, "big-Q4_K_M-00002-of-00002.gguf")));
    }

    [Fact]
    public void TwoConcurrentDownloadsOfOneFileDoNotCorruptIt()
    {
        AddStories();
        _hub.DelayPerChunkMs = 20;
        var results = new HubInstallResult[2];
        Parallel.For(0, 2, i => results[i] = Install("test-org/stories-GGUF"));
        Assert.Equal(results[0].Path, results[1].Path);
        Assert.Equal(_model, File.ReadAllBytes(results[0].Path));
        Assert.Equal(1, CdnGets); // the second waited on the lock, then reused the blob
    }

    [Fact]
    public void RemovingASnapshotKeepsBlobsAnotherSnapshotUses()
    {
        var first = AddStories();
        Install("test-org/stories-GGUF");
        var cache = new HubCache(_cacheRoot);
        var blob = cache.BlobPath("test-org/stories-GGUF", FakeHub.Sha256(_model));
        // The repository moves to a new commit with the same weights: the new snapshot links the same blob.
        var second = _hub.AddRepo("test-org/stories-GGUF", new Dictionary<string, byte[]> { ["stories260K-F32.gguf"] = _model, ["NEW.md"] = "x"u8.ToArray() });
        Assert.NotEqual(first, second);
        Install("test-org/stories-GGUF", update: true);
        Assert.Equal(0, cache.Remove("test-org/stories-GGUF", first, ["stories260K-F32.gguf"]));
        Assert.True(File.Exists(blob));
        Assert.Equal(_model.Length, cache.Remove("test-org/stories-GGUF", second, ["stories260K-F32.gguf"]));
        Assert.False(File.Exists(blob));
        Assert.False(File.Exists(Path.Combine(_cacheRoot, "models--test-org--stories-GGUF", "refs", "main")));
    }

    [Fact]
    public void SearchAndWhoAmI()
    {
        _hub.Tokens["hf_alice"] = "alice";
        AddStories();
        AddStories("other/qwen-GGUF");
        using var client = new HubClient(Settings(), "hf_alice");
        var found = client.Search("stories", null, "downloads", 10, default);
        Assert.Equal("test-org/stories-GGUF", Assert.Single(found).Id);
        Assert.Equal(2, client.Search(null, null, "downloads", 10, default).Count);
        var me = client.WhoAmI(HubTokenSource.Parameter, default);
        Assert.Equal("alice", me.Name);
        Assert.Equal("read", me.TokenRole);
        Assert.Contains("test-org", me.Organizations);
        using var anonymous = new HubClient(Settings(), null);
        Assert.Equal("HubNotSignedIn", Assert.Throws<LlmException>(() => anonymous.WhoAmI(HubTokenSource.None, default)).ErrorId);
        using var revoked = new HubClient(Settings(), "hf_nope");
        Assert.Equal("HubInvalidToken", Assert.Throws<LlmException>(() => revoked.WhoAmI(HubTokenSource.Parameter, default)).ErrorId);
    }

    [Fact]
    public void OfflineMeansNoNetworkCallAtAll()
    {
        AddStories();
        using var client = new HubClient(Settings(offline: true), null);
        Assert.Equal("HubOffline", Assert.Throws<LlmException>(() => client.Search("x", null, "downloads", 1, default)).ErrorId);
        Assert.Empty(_hub.Requests);
    }

    [SkippableFact]
    public void AModelInstalledFromTheHubRuns()
    {
        Skip.If(TestFiles.Shared("stories260K.gguf") is null, "../shared/models is absent (a fresh clone)");
        AddStories();
        var path = Install("test-org/stories-GGUF").Path;
        using var lease = ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var r = CompletionEngine.Complete(lease, "Once upon a time", new CompletionOptions { Temperature = 0, RepeatPenalty = 1, MaxTokens = 10 },
            new ContextOptions { Threads = 1, ContextSize = 256 }, NullEngineEvents.Instance, default);
        Assert.StartsWith(", there was a little girl named Lily", r.Text);
    }

    [Theory]
    [InlineData("org/name", "org/name", null, null, null)]
    [InlineData("org/name:Q8_0", "org/name", null, "Q8_0", null)]
    [InlineData("org/name@v1.2", "org/name", null, null, "v1.2")]
    [InlineData("org/name:Q4_K_M@main", "org/name", null, "Q4_K_M", "main")]
    [InlineData("org/name/sub/model-Q5_K_S.gguf", "org/name", "sub/model-Q5_K_S.gguf", null, null)]
    [InlineData("org/name/model.gguf@0123456789abcdef0123456789abcdef01234567", "org/name", "model.gguf", null, "0123456789abcdef0123456789abcdef01234567")]
    public void ReferencesParse(string text, string repo, string? path, string? quant, string? revision)
    {
        Assert.True(HubReference.TryParse(text, out var r));
        Assert.Equal(new HubReference(repo, path, quant, revision), r);
    }

    [Theory]
    [InlineData("./model.gguf")]
    [InlineData("/abs/model.gguf")]
    [InlineData("models/tiny.gguf")]
    [InlineData("~/model.gguf")]
    [InlineData("model.gguf")]
    public void LocalPathsAreNotReferences(string text) => Assert.False(HubReference.TryParse(text, out _));

    [Theory]
    [InlineData("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "Q4_K_M")]
    [InlineData("llama-3.2-1b-instruct-q8_0.gguf", "Q8_0")]
    [InlineData("model.IQ2_XXS.gguf", "IQ2_XXS")]
    [InlineData("phi-3-mini-4k-instruct-fp16.gguf", "F16")]
    [InlineData("gemma-2b-it-BF16-00001-of-00002.gguf", "BF16")]
    [InlineData("README.gguf", null)]
    public void QuantizationIsReadFromFileNames(string file, string? quant) => Assert.Equal(quant, HubModels.QuantizationOf(file));
}

/// <summary>Token precedence reads process environment variables: not run in parallel with anything.</summary>
[CollectionDefinition("Environment", DisableParallelization = true)]
public sealed class EnvironmentCollection;

[Collection("Environment")]
public sealed class HubTokenTests
{
    [Fact]
    public void TokenPrecedenceIsParameterThenEnvironmentThenFile()
    {
        var dir = Path.Combine(TestFiles.TempFolder, "tokens-" + Guid.NewGuid().ToString("N")[..6]);
        var settings = new HubSettings { Endpoint = "http://127.0.0.1:1", HubCache = dir, TokenPath = Path.Combine(dir, "token"), Offline = false };
        var saved = (Environment.GetEnvironmentVariable("HF_TOKEN"), Environment.GetEnvironmentVariable("HUGGING_FACE_HUB_TOKEN"));
        try
        {
            Environment.SetEnvironmentVariable("HF_TOKEN", null);
            Environment.SetEnvironmentVariable("HUGGING_FACE_HUB_TOKEN", null);
            Assert.Equal((null, HubTokenSource.None), HubToken.Resolve(null, HubTokenSource.Parameter, settings));
            HubToken.Save("hf_from_file\n", settings);
            if (!OperatingSystem.IsWindows())
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(settings.TokenPath));
            Assert.Equal(("hf_from_file", HubTokenSource.TokenFile), HubToken.Resolve(null, HubTokenSource.Parameter, settings));
            Environment.SetEnvironmentVariable("HUGGING_FACE_HUB_TOKEN", "hf_old_env");
            Assert.Equal(("hf_old_env", HubTokenSource.HUGGING_FACE_HUB_TOKEN), HubToken.Resolve(null, HubTokenSource.Parameter, settings));
            Environment.SetEnvironmentVariable("HF_TOKEN", "hf_env");
            Assert.Equal(("hf_env", HubTokenSource.HF_TOKEN), HubToken.Resolve(null, HubTokenSource.Parameter, settings));
            Assert.Equal(("hf_param", HubTokenSource.Parameter), HubToken.Resolve("hf_param", HubTokenSource.Parameter, settings));
            Assert.True(HubToken.Delete(settings));
            Assert.False(File.Exists(settings.TokenPath));
        }
        finally
        {
            Environment.SetEnvironmentVariable("HF_TOKEN", saved.Item1);
            Environment.SetEnvironmentVariable("HUGGING_FACE_HUB_TOKEN", saved.Item2);
        }
    }
}
