using System.Text.RegularExpressions;

namespace LlmTools.Hub;

/// <summary>
/// A model named on the Hub: org/name (the repository's one GGUF model, else the chosen quantization),
/// org/name:Q8_0, org/name/path/file.gguf; any of them with @revision (branch, tag or commit).
/// </summary>
public sealed partial record HubReference(string RepoId, string? FilePath, string? Quantization, string? Revision)
{
    [GeneratedRegex(@"^(?<repo>[A-Za-z0-9][\w.-]*/[\w.-]+?)(?:/(?<path>[^@:]+\.gguf))?(?::(?<quant>[\w.-]+))?(?:@(?<rev>[\w./-]+))?$")]
    private static partial Regex Pattern();

    /// <summary>Parses a Hub reference; false for anything that looks like a local path.</summary>
    public static bool TryParse(string text, out HubReference? reference)
    {
        reference = null;
        if (string.IsNullOrWhiteSpace(text) || text.StartsWith('.') || text.StartsWith('/') || text.StartsWith('~') ||
            text.Contains('\\') || (text.Length > 1 && text[1] == ':'))
            return false;
        var m = Pattern().Match(text);
        if (!m.Success) return false;
        var repo = m.Groups["repo"].Value;
        if (repo.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return false; // folder/file.gguf is a path
        reference = new HubReference(repo, m.Groups["path"].Success ? m.Groups["path"].Value : null,
            m.Groups["quant"].Success ? m.Groups["quant"].Value : null, m.Groups["rev"].Success ? m.Groups["rev"].Value : null);
        return true;
    }

    public override string ToString() =>
        RepoId + (FilePath is null ? "" : "/" + FilePath) + (Quantization is null ? "" : ":" + Quantization) + (Revision is null ? "" : "@" + Revision);
}

/// <summary>Finds GGUF models in a repository's files, picks one, and installs it into the Hugging Face cache.</summary>
public static partial class HubModels
{
    /// <summary>llama.cpp's default choice when a repository offers several quantizations.</summary>
    public const string DefaultQuantization = "Q4_K_M";

    [GeneratedRegex(@"(?<=^|[-._/])(IQ[1-4]_(?:XXS|XS|S|M|NL)|Q[2-8]_K(?:_(?:XL|S|M|L))?|Q[4-8]_[01]|Q4_0_[48]_[48]|TQ[12]_0|MXFP4(?:_MOE)?|BF16|F16|F32|FP16|FP32)(?=[-._]|$)", RegexOptions.IgnoreCase)]
    private static partial Regex QuantPattern();

    [GeneratedRegex(@"-(\d{5})-of-(\d{5})\.gguf$", RegexOptions.IgnoreCase)]
    private static partial Regex SplitPattern();

    public static string? QuantizationOf(string path)
    {
        var m = QuantPattern().Match(Path.GetFileNameWithoutExtension(path));
        return m.Success ? m.Value.ToUpperInvariant().Replace("FP16", "F16").Replace("FP32", "F32") : null;
    }

    /// <summary>The GGUF models among a repository's files: one entry per model, split parts grouped.</summary>
    public static IReadOnlyList<HubModelFile> GgufModels(string repoId, IEnumerable<HubRepoFile> files)
    {
        var ggufs = files.Where(f => f.Path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)).ToList();
        var models = new List<HubModelFile>();
        foreach (var f in ggufs.OrderBy(f => f.Path, StringComparer.Ordinal))
        {
            var split = SplitPattern().Match(f.Path);
            if (split.Success && split.Groups[1].Value != "00001") continue;
            var parts = split.Success
                ? ggufs.Where(g => g.Path.StartsWith(f.Path[..split.Index], StringComparison.Ordinal) && SplitPattern().IsMatch(g.Path))
                       .OrderBy(g => g.Path, StringComparer.Ordinal).ToList()
                : [f];
            // Multimodal projectors are not language models.
            if (Path.GetFileName(f.Path).StartsWith("mmproj", StringComparison.OrdinalIgnoreCase)) continue;
            models.Add(new HubModelFile
            {
                Repository = repoId,
                Path = f.Path,
                Size = parts.Sum(p => Math.Max(0, p.Size)),
                Quantization = QuantizationOf(f.Path),
                Parts = parts.Select(p => p.Path).ToList(),
            });
        }
        return models;
    }

    /// <summary>Picks the model a reference means; an ambiguous or missing choice is an error listing what there is.</summary>
    public static HubModelFile Select(HubReference reference, IReadOnlyList<HubModelFile> models, string? quantization)
    {
        string repo = reference.RepoId;
        if (models.Count == 0)
            throw new LlmException("HubNoGgufFile", LlmErrorKind.ObjectNotFound,
                $"'{repo}' has no GGUF file. LlmTools runs GGUF models: look for a '-GGUF' repository (Find-LlmModel -Name '{repo.Split('/')[1]}').", repo);
        string List() => string.Join(", ", models.Select(m => m.Quantization is { } q ? $"{m.Path} ({q})" : m.Path));
        if (reference.FilePath is { } path)
            return models.FirstOrDefault(m => m.Path == path || m.Parts.Contains(path))
                ?? throw new LlmException("HubFileNotFound", LlmErrorKind.ObjectNotFound,
                    $"'{repo}' has no GGUF file '{path}'. It has: {List()}.", repo);
        var wanted = quantization ?? reference.Quantization;
        if (wanted is null && models.Count == 1) return models[0];
        wanted ??= DefaultQuantization;
        var matches = models.Where(m => string.Equals(m.Quantization, wanted, StringComparison.OrdinalIgnoreCase)).ToList();
        if (matches.Count == 1) return matches[0];
        if (matches.Count == 0)
            throw new LlmException("HubQuantizationNotFound", LlmErrorKind.ObjectNotFound,
                $"'{repo}' has no {wanted} file. Choose one with -Quantization or '{repo}:<quantization>': {List()}.", repo);
        throw new LlmException("HubAmbiguousModel", LlmErrorKind.InvalidArgument,
            $"'{repo}' has several {wanted} files; name one as '{repo}/<file>': {string.Join(", ", matches.Select(m => m.Path))}.", repo);
    }

    /// <summary>
    /// Returns the local path of the model (its first part), installing it into the Hugging Face cache first when it
    /// is not there. A cached model is used with no network call unless <paramref name="update"/> is set.
    /// </summary>
    public static HubInstallResult Install(HubReference reference, string? quantization, string? revision, bool update,
        string? token, IEngineEvents events, CancellationToken cancel, HubSettings? hubSettings = null)
    {
        var settings = hubSettings ?? HubSettings.FromEnvironment();
        var cache = new HubCache(settings.HubCache);
        var rev = reference.Revision ?? revision ?? "main";
        string repo = reference.RepoId;
        // The user's revision and file name become cache paths (refs/{revision}, snapshots/{commit}/{file}).
        if (!HubCache.IsSafeRevision(rev)) throw HubCache.InvalidRevision(rev);
        if (reference.FilePath is { } wantedFile && !HubCache.IsSafeFilePath(wantedFile))
            throw new LlmException("HubInvalidReference", LlmErrorKind.InvalidArgument,
                $"'{wantedFile}' is not a file path inside a repository (no '..', empty or '.' segments, or backslashes).", repo);

        if (!update || settings.Offline)
        {
            if (FromCache(cache, reference, quantization, rev) is { } cached)
            {
                if (settings.Offline) WarnOfflineChoice(reference, quantization, update, cached, events);
                return cached;
            }
            if (reference.FilePath is { } file && cache.IsMarkedMissing(repo, rev, file))
                throw new LlmException("HubFileNotFound", LlmErrorKind.ObjectNotFound,
                    $"File '{file}' does not exist in '{repo}' at '{rev}' (known from an earlier answer of the Hub). " +
                    $"Find-LlmModel -Name {repo} -Files lists its GGUF files.", repo);
            if (settings.Offline)
                throw new LlmException("HubNotCached", LlmErrorKind.ResourceUnavailable,
                    $"'{reference}' is not in the Hugging Face cache ({settings.HubCache}) and HF_HUB_OFFLINE is set, so it cannot be downloaded. " +
                    "Unset HF_HUB_OFFLINE once to install it.", repo);
        }

        using var client = new HubClient(settings, token);
        HubRepoInfo info;
        try
        {
            info = client.GetRepoInfo(repo, rev, cancel);
        }
        catch (LlmException e) when (e.ErrorId is "HubUnreachable" or "HubTimeout" && FromCache(cache, reference, quantization, rev) is { } fallback)
        {
            events.Warning($"The Hub cannot be reached ({e.Message}); using the cached copy of '{reference}'.");
            WarnOfflineChoice(reference, quantization, update: false, fallback, events);
            return fallback;
        }
        HubModelFile model;
        try
        {
            model = Select(reference, GgufModels(repo, info.Files), quantization);
        }
        catch (LlmException e) when (e.ErrorId == "HubFileNotFound" && reference.FilePath is { } missing)
        {
            // Recorded as huggingface_hub records an EntryNotFound, so asking again needs no network call. (The ref is
            // otherwise written only once the files are there: @huggingface/hub's cache scan rejects a dangling one.)
            cache.MarkMissing(repo, info.Commit, missing);
            cache.WriteRef(repo, rev, info.Commit);
            throw;
        }
        HubCache.RequireCommit(info.Commit);
        foreach (var part in model.Parts) HubCache.RequireFilePath(part);
        var downloader = new HubDownloader(client, cache);
        string? first = null;
        bool downloaded = false;
        foreach (var part in model.Parts)
        {
            var existing = cache.Find(repo, info.Commit, part);
            if (existing is not null && !update)
            {
                first ??= existing;
                continue;
            }
            HubFileMetadata meta;
            try
            {
                meta = client.Head(repo, info.Commit, part, cancel);
            }
            catch (LlmException e) when (e.ErrorId == "HubFileNotFound")
            {
                cache.MarkMissing(repo, info.Commit, part);
                throw;
            }
            bool had = File.Exists(cache.BlobPath(repo, meta.Etag));
            var path = downloader.Download(repo, meta, rev, part, events, cancel);
            downloaded |= !had;
            first ??= path;
        }
        cache.WriteRef(repo, rev, info.Commit);
        return new HubInstallResult(first!, model, info.Commit, downloaded);
    }

    /// <summary>
    /// Offline, the cache decides: say when that is not what the Hub would have given (-Update ignored, or the only
    /// cached quantization picked where the Hub's default choice is <see cref="DefaultQuantization"/>).
    /// </summary>
    private static void WarnOfflineChoice(HubReference reference, string? quantization, bool update, HubInstallResult cached, IEngineEvents events)
    {
        if (update)
            events.Warning($"HF_HUB_OFFLINE is set: -Update is ignored and the cached '{reference.RepoId}/{cached.Model.Path}' is used.");
        if (reference.FilePath is null && (quantization ?? reference.Quantization) is null
            && !string.Equals(cached.Model.Quantization, DefaultQuantization, StringComparison.OrdinalIgnoreCase))
            events.Warning($"Offline, '{reference.RepoId}' resolves to the cached {cached.Model.Quantization ?? cached.Model.Path} " +
                $"(online the default is {DefaultQuantization}); name the quantization ('{reference.RepoId}:<quantization>') to be sure.");
    }

    private static HubInstallResult? FromCache(HubCache cache, HubReference reference, string? quantization, string revision)
    {
        if (cache.CachedCommit(reference.RepoId, revision) is not { } commit) return null;
        var files = cache.CachedFiles(reference.RepoId, commit).Select(p => new HubRepoFile(p, -1, null));
        HubModelFile model;
        try
        {
            model = Select(reference, GgufModels(reference.RepoId, files), quantization);
        }
        catch (LlmException)
        {
            return null; // not cached, or ambiguous among what is cached: ask the Hub
        }
        var paths = model.Parts.Select(p => cache.Find(reference.RepoId, commit, p)).ToList();
        if (paths.Any(p => p is null)) return null;
        return new HubInstallResult(paths[0]!, model, commit, Downloaded: false);
    }
}

/// <summary>Where an installed model is, and whether this call downloaded it.</summary>
public sealed record HubInstallResult(string Path, HubModelFile Model, string Commit, bool Downloaded);
