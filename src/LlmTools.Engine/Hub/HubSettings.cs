namespace LlmTools.Hub;

/// <summary>
/// Where the Hub and its cache are, resolved from the environment exactly as Python's huggingface_hub does, so
/// either tool finds the other's downloads and login.
/// </summary>
public sealed record HubSettings
{
    public const string DefaultEndpoint = "https://huggingface.co";

    public required string Endpoint { get; init; }
    public required string HubCache { get; init; }
    public required string TokenPath { get; init; }
    public required bool Offline { get; init; }

    /// <summary>
    /// How long a request may wait for the next bytes of an answer before it counts as stalled: HF_HUB_DOWNLOAD_TIMEOUT
    /// seconds, 10 by default, as huggingface_hub.
    /// </summary>
    public TimeSpan ReadTimeout { get; init; } = DefaultReadTimeout;

    public static readonly TimeSpan DefaultReadTimeout = TimeSpan.FromSeconds(10);

    public static HubSettings FromEnvironment()
    {
        var home = Environment.GetEnvironmentVariable("HF_HOME");
        if (string.IsNullOrEmpty(home))
        {
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            home = Path.Combine(string.IsNullOrEmpty(xdg)
                ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache")
                : xdg, "huggingface");
        }
        home = Expand(home);
        var cache = Environment.GetEnvironmentVariable("HF_HUB_CACHE");
        if (string.IsNullOrEmpty(cache)) cache = Environment.GetEnvironmentVariable("HUGGINGFACE_HUB_CACHE");
        var tokenPath = Environment.GetEnvironmentVariable("HF_TOKEN_PATH");
        var endpoint = Environment.GetEnvironmentVariable("HF_ENDPOINT");
        return new HubSettings
        {
            Endpoint = (string.IsNullOrEmpty(endpoint) ? DefaultEndpoint : endpoint).TrimEnd('/'),
            HubCache = string.IsNullOrEmpty(cache) ? Path.Combine(home, "hub") : Expand(cache),
            TokenPath = string.IsNullOrEmpty(tokenPath) ? Path.Combine(home, "token") : Expand(tokenPath),
            Offline = IsTrue("HF_HUB_OFFLINE") || IsTrue("TRANSFORMERS_OFFLINE"),
            ReadTimeout = double.TryParse(Environment.GetEnvironmentVariable("HF_HUB_DOWNLOAD_TIMEOUT"),
                System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var seconds)
                && seconds > 0 && seconds <= 86400 ? TimeSpan.FromSeconds(seconds) : DefaultReadTimeout,
        };
    }

    private static bool IsTrue(string name) =>
        Environment.GetEnvironmentVariable(name)?.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    private static string Expand(string path)
    {
        path = Environment.ExpandEnvironmentVariables(path);
        if (path == "~" || path.StartsWith("~/", StringComparison.Ordinal))
            path = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) + path[1..];
        return Path.GetFullPath(path);
    }
}

/// <summary>Where a token came from (never the token itself).</summary>
public enum HubTokenSource { None, Parameter, Session, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, TokenFile }

/// <summary>Finds, saves and deletes the Hub token the way huggingface_hub does.</summary>
public static class HubToken
{
    /// <summary>The token to use: the given one, else HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token file.</summary>
    public static (string? Token, HubTokenSource Source) Resolve(string? given, HubTokenSource givenSource, HubSettings settings)
    {
        if (Clean(given) is { } t) return (t, givenSource);
        if (Clean(Environment.GetEnvironmentVariable("HF_TOKEN")) is { } env) return (env, HubTokenSource.HF_TOKEN);
        if (Clean(Environment.GetEnvironmentVariable("HUGGING_FACE_HUB_TOKEN")) is { } old) return (old, HubTokenSource.HUGGING_FACE_HUB_TOKEN);
        try
        {
            if (File.Exists(settings.TokenPath) && Clean(File.ReadAllText(settings.TokenPath)) is { } file)
                return (file, HubTokenSource.TokenFile);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return (null, HubTokenSource.None);
    }

    private static string? Clean(string? token)
    {
        var t = token?.Replace("\r", "").Replace("\n", "").Trim();
        return string.IsNullOrEmpty(t) ? null : t;
    }

    /// <summary>
    /// Writes the token file (owner-only permissions) so Python tools see the same login. Only the file's mode is
    /// set: HF_HOME keeps its own (huggingface_hub leaves it alone too; other tools share that folder).
    /// </summary>
    public static void Save(string token, HubSettings settings)
    {
        var dir = Path.GetDirectoryName(settings.TokenPath)!;
        Directory.CreateDirectory(dir);
        var tmp = settings.TokenPath + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        using (var fs = OperatingSystem.IsWindows()
                   ? new FileStream(tmp, FileMode.CreateNew, FileAccess.Write)
                   : new FileStream(tmp, new FileStreamOptions
                   {
                       Mode = FileMode.CreateNew, Access = FileAccess.Write,
                       UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                   }))
        using (var w = new StreamWriter(fs))
            w.Write(token);
        File.Move(tmp, settings.TokenPath, overwrite: true);
    }

    public static bool Delete(HubSettings settings)
    {
        if (!File.Exists(settings.TokenPath)) return false;
        File.Delete(settings.TokenPath);
        return true;
    }
}
