using LlmTools.Hub;
using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// A hostile or broken server and mistyped settings, against a real HTTP server on 127.0.0.1: names from the server
/// never steer a cache path, a stalled download times out and cancels at once, and each mistake has its own error.
/// </summary>
public sealed class HubHostileTests : IDisposable
{
    private readonly FakeHub _hub = new();
    private readonly string _root = Path.Combine(TestFiles.TempFolder, "hfh-" + Guid.NewGuid().ToString("N")[..8]);
    private string CacheRoot => Path.Combine(_root, "hub");
    private readonly byte[] _model = File.ReadAllBytes(TestFiles.TinyModelPath);

    public void Dispose()
    {
        _hub.ReleaseStall.Set();
        _hub.Dispose();
    }

    private HubSettings Settings(TimeSpan? readTimeout = null, string? endpoint = null) => new()
    {
        Endpoint = endpoint ?? _hub.Endpoint, HubCache = CacheRoot, TokenPath = Path.Combine(_root, "token"), Offline = false,
        ReadTimeout = readTimeout ?? HubSettings.DefaultReadTimeout,
    };

    private HubInstallResult Install(string reference, HubSettings? settings = null, string? token = null, CancellationToken cancel = default)
    {
        Assert.True(HubReference.TryParse(reference, out var r), reference);
        return HubModels.Install(r!, null, null, update: false, token, NullEngineEvents.Instance, cancel, settings ?? Settings());
    }

    private LlmException Fails(string reference, HubSettings? settings = null, string? token = null) =>
        Assert.Throws<LlmException>(() => Install(reference, settings, token));

    private string AddTiny(string id = "test-org/tiny-GGUF", string file = "tiny-F32.gguf") =>
        _hub.AddRepo(id, new Dictionary<string, byte[]> { [file] = _model, ["README.md"] = "# tiny\n"u8.ToArray() });

    /// <summary>Every file under the test's folder outside the cache root: there must be none.</summary>
    private IEnumerable<string> WrittenOutsideTheCache() =>
        Directory.Exists(_root)
            ? Directory.EnumerateFileSystemEntries(_root, "*", SearchOption.AllDirectories).Where(p => !p.StartsWith(CacheRoot, StringComparison.Ordinal))
            : [];

    [Theory]
    [InlineData("../../../escaped")]
    [InlineData("0123456789abcdef0123456789abcdef0123456/")]
    [InlineData("main")]
    [InlineData("0123456789ABCDEF0123456789ABCDEF01234567")]
    public void ACommitThatIsNotAHashIsRefused(string commit)
    {
        AddTiny();
        _hub.CommitOverride = commit;
        Assert.Equal("HubUnsafePath", Fails("test-org/tiny-GGUF").ErrorId);
        Assert.Empty(WrittenOutsideTheCache());
        Assert.False(Directory.Exists(Path.Combine(CacheRoot, "models--test-org--tiny-GGUF", "snapshots")));
    }

    [Theory]
    [InlineData("../../../../escaped")]
    [InlineData("abc")]
    [InlineData("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde/")]
    public void AnEtagThatIsNotAHashIsRefused(string etag)
    {
        AddTiny();
        _hub.EtagOverride = etag;
        Assert.Equal("HubUnsafePath", Fails("test-org/tiny-GGUF").ErrorId);
        Assert.Empty(WrittenOutsideTheCache());
        Assert.Equal(0, _hub.Requests.Count(r => r.Server == "cdn"));
    }

    [Fact]
    public void AFileNameFromTheServerThatLeavesTheFolderIsRefused()
    {
        _hub.AddRepo("test-org/evil-GGUF", new Dictionary<string, byte[]> { ["../../../escaped-Q4_K_M.gguf"] = _model });
        Assert.Equal("HubUnsafePath", Fails("test-org/evil-GGUF").ErrorId);
        Assert.Empty(WrittenOutsideTheCache());
    }

    [Theory]
    [InlineData("test-org/tiny-GGUF@..")]
    [InlineData("test-org/tiny-GGUF@../../../escaped")]
    [InlineData("test-org/tiny-GGUF@main/../../x")]
    [InlineData("test-org/tiny-GGUF@.hidden")]
    [InlineData("test-org/tiny-GGUF@branch.lock")]
    public void ARevisionThatIsNotARefNameIsRefused(string reference)
    {
        // '..' passes the reference pattern; as refs/{revision} it would write outside the repository's folder.
        AddTiny();
        Assert.Equal("HubInvalidRevision", Fails(reference).ErrorId);
        Assert.Empty(_hub.Requests);
        Assert.Empty(WrittenOutsideTheCache());
    }

    [Fact]
    public void AFilePathWithDotDotIsRefused()
    {
        AddTiny();
        Assert.Equal("HubInvalidReference", Fails("test-org/tiny-GGUF/sub/../../../x.gguf").ErrorId);
        Assert.Empty(_hub.Requests);
    }

    [Fact]
    public void UninstallDeletesTheLinkButNeverATargetOutsideTheBlobs()
    {
        var commit = AddTiny();
        var installed = Install("test-org/tiny-GGUF");
        // Someone (or a hostile tool) re-points the snapshot link at a file of the user's.
        var victim = Path.Combine(_root, "precious.gguf");
        File.WriteAllBytes(victim, _model);
        File.Delete(installed.Path);
        File.CreateSymbolicLink(installed.Path, Path.GetRelativePath(Path.GetDirectoryName(installed.Path)!, victim));
        var cache = new HubCache(CacheRoot);
        cache.Remove("test-org/tiny-GGUF", commit, ["tiny-F32.gguf"]);
        Assert.True(File.Exists(victim));
        Assert.False(File.Exists(installed.Path) || new FileInfo(installed.Path).LinkTarget is not null);
    }

    [Fact]
    public void AStalledDownloadTimesOutAndResumes()
    {
        // The CDN sends 100 kB, then nothing: the read gives up after the read timeout (HF_HUB_DOWNLOAD_TIMEOUT),
        // and the download resumes where it stopped with a Range request.
        AddTiny();
        _hub.StallAfterBytes = 100_000;
        var result = Install("test-org/tiny-GGUF", Settings(readTimeout: TimeSpan.FromSeconds(1)));
        Assert.Equal(_model, File.ReadAllBytes(result.Path));
        // It resumed where the stalled read left it (a Range request from a non-zero offset), not from the start.
        Assert.Contains(_hub.Requests, r => r.Server == "cdn" && r.Range is { } range && range.StartsWith("bytes=") && range != "bytes=0-");
    }

    [Fact]
    public void CancellationInterruptsAStalledRead()
    {
        AddTiny();
        _hub.StallAfterBytes = 100_000;
        using var cts = new CancellationTokenSource();
        // A read timeout of an hour: only the cancellation can end this download.
        var install = Task.Run(() => Install("test-org/tiny-GGUF", Settings(readTimeout: TimeSpan.FromHours(1)), cancel: cts.Token));
        while (!_hub.Requests.Any(r => r.Server == "cdn" && r.Method == "GET")) Thread.Sleep(20);
        Thread.Sleep(200); // let the 100 kB arrive and the read start waiting
        cts.Cancel();
        // Without the fix this waits for the server (an hour); a minute is only a deadlock guard, not a measurement.
        try { install.Wait(TimeSpan.FromSeconds(60)); } catch (AggregateException) { }
        Assert.True(install.IsCompleted, "the cancelled download did not stop");
        var e = Assert.IsType<LlmException>(install.Exception!.InnerException);
        Assert.Equal("OperationCancelled", e.ErrorId);
        // The partial file is kept for a resume.
        Assert.Single(Directory.GetFiles(Path.Combine(CacheRoot, "models--test-org--tiny-GGUF", "blobs"), "*.incomplete"));
    }

    [Theory]
    [InlineData("not a url")]
    [InlineData("ftp://example.org")]
    [InlineData("huggingface.co")]
    public void AnEndpointThatIsNotAUrlSaysSo(string endpoint)
    {
        AddTiny();
        var e = Fails("test-org/tiny-GGUF", Settings(endpoint: endpoint));
        Assert.Equal("HubInvalidEndpoint", e.ErrorId);
        Assert.Equal(LlmErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("HF_ENDPOINT", e.Message);
    }

    [Fact]
    public void ANonAsciiTokenSaysSoBeforeAnyRequest()
    {
        AddTiny();
        var e = Fails("test-org/tiny-GGUF", token: "hf_t\u00f6ken");
        Assert.Equal("HubMalformedToken", e.ErrorId);
        Assert.Equal("HubMalformedToken", Assert.Throws<LlmException>(() => new HubClient(Settings(), "hf_a b")).ErrorId);
        Assert.Empty(_hub.Requests);
    }

    [Fact]
    public void AServerThatIsNotAHubIsToldApartFromAMissingRepository()
    {
        AddTiny();
        Assert.Equal("HubRepoNotFound", Fails("test-org/absent-GGUF").ErrorId);
        _hub.NotAHub = true;
        var e = Fails("test-org/tiny-GGUF");
        Assert.Equal("HubEndpointNotAHub", e.ErrorId);
        Assert.Contains("HF_ENDPOINT", e.Message);
    }

    [SkippableFact]
    public void SavingTheTokenChangesOnlyTheTokenFilesMode()
    {
        Skip.If(OperatingSystem.IsWindows(), "Unix permissions");
        var home = Path.Combine(_root, "hf-home");
        Directory.CreateDirectory(home);
        var mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead |
                   UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        File.SetUnixFileMode(home, mode);
        var settings = Settings() with { TokenPath = Path.Combine(home, "token") };
        HubToken.Save("hf_abc", settings);
        Assert.Equal(mode, File.GetUnixFileMode(home));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(settings.TokenPath));
    }
}

[Collection("Environment")]
public sealed class HubTimeoutSettingTests
{
    [Theory]
    [InlineData(null, 10)]
    [InlineData("2.5", 2.5)]
    [InlineData("soon", 10)]
    [InlineData("-1", 10)]
    public void DownloadTimeoutComesFromHfHubDownloadTimeout(string? value, double seconds)
    {
        var saved = Environment.GetEnvironmentVariable("HF_HUB_DOWNLOAD_TIMEOUT");
        try
        {
            Environment.SetEnvironmentVariable("HF_HUB_DOWNLOAD_TIMEOUT", value);
            Assert.Equal(TimeSpan.FromSeconds(seconds), HubSettings.FromEnvironment().ReadTimeout);
        }
        finally
        {
            Environment.SetEnvironmentVariable("HF_HUB_DOWNLOAD_TIMEOUT", saved);
        }
    }
}
