using System.Text.RegularExpressions;

namespace LlmTools.Hub;

/// <summary>
/// The Hugging Face cache layout, shared with Python's huggingface_hub:
/// models--{org}--{name}/blobs/{etag}, snapshots/{commit}/{path} (relative symlinks to the blob),
/// refs/{revision} (the commit), .no_exist/{commit}/{path}; locks in .locks/models--{org}--{name}/{etag}.lock.
/// </summary>
public sealed partial class HubCache(string root)
{
    public string Root { get; } = root;

    public static string FolderName(string repoId) => "models--" + repoId.Replace("/", "--");

    // Every path below is built from names the server or the user chose (commit, ETag, file name, revision): each
    // is checked for its shape, and the joined path must still lie inside the repository's folder.
    public string RepoFolder(string repoId) => Inside(Root, Path.Combine(Root, FolderName(RequireRepoId(repoId))));
    public string BlobPath(string repoId, string etag) => InRepo(repoId, Path.Combine("blobs", RequireEtag(etag)));
    public string SnapshotPath(string repoId, string commit, string path) =>
        InRepo(repoId, Path.Combine("snapshots", RequireCommit(commit), RequireFilePath(path)));
    public string RefPath(string repoId, string revision) => InRepo(repoId, Path.Combine("refs", RequireRevision(revision)));
    public string NoExistPath(string repoId, string commit, string path) =>
        InRepo(repoId, Path.Combine(".no_exist", RequireCommit(commit), RequireFilePath(path)));
    public string LockPath(string repoId, string etag) =>
        Inside(Root, Path.Combine(Root, ".locks", FolderName(RequireRepoId(repoId)), RequireEtag(etag) + ".lock"));

    private string InRepo(string repoId, string relative)
    {
        var repo = RepoFolder(repoId);
        return Inside(repo, Path.Combine(repo, relative));
    }

    private static string Inside(string folder, string path)
    {
        var full = Path.GetFullPath(path);
        var root = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        if (!full.StartsWith(root, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))
            throw Unsafe($"the path '{path}' would leave the cache folder '{folder}'");
        return full;
    }

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitPattern();

    [GeneratedRegex("^(?:[0-9a-f]{40}|[0-9a-f]{64})$")]
    private static partial Regex EtagPattern();

    [GeneratedRegex(@"^[A-Za-z0-9][\w.-]*/[\w.-]+$")]
    private static partial Regex RepoIdPattern();

    public static bool IsCommit(string revision) => CommitPattern().IsMatch(revision);

    private static LlmException Unsafe(string why) =>
        new("HubUnsafePath", LlmErrorKind.InvalidData,
            $"The Hub's answer cannot be cached safely: {why}. Nothing was written; if HF_ENDPOINT points to a mirror, check it.");

    /// <summary>A commit from the server: 40 lowercase hex digits, nothing else.</summary>
    public static string RequireCommit(string commit) =>
        commit is not null && IsCommit(commit) ? commit : throw Unsafe($"the commit '{Show(commit)}' is not a 40-digit hex hash");

    /// <summary>An ETag from the server: a git sha1 (40 hex) or an LFS sha256 (64 hex).</summary>
    public static string RequireEtag(string etag) =>
        etag is not null && EtagPattern().IsMatch(etag) ? etag : throw Unsafe($"the ETag '{Show(etag)}' is not a sha1 or sha256 hash");

    public static string RequireRepoId(string repoId) =>
        repoId is not null && RepoIdPattern().IsMatch(repoId) && !repoId.Split('/').Any(s => s is "." or "..")
            ? repoId : throw Unsafe($"the repository name '{Show(repoId)}' is not org/name");

    /// <summary>True for a relative file path of forward-slash segments, none empty, '.', '..', or with a backslash or control character.</summary>
    public static bool IsSafeFilePath(string? path) =>
        !string.IsNullOrEmpty(path) && !path.StartsWith('/') && !path.Contains('\\') && !path.Contains(':') &&
        !path.Any(char.IsControl) && path.Split('/').All(s => s.Length > 0 && s is not "." and not "..");

    public static string RequireFilePath(string path) =>
        IsSafeFilePath(path) ? path : throw Unsafe($"the file name '{Show(path)}' is not a plain relative path");

    /// <summary>
    /// A branch or tag name as git allows it (segments not empty and not starting with '.', no '..', no backslash
    /// or control character), or a commit. Other text cannot become refs/{revision}.
    /// </summary>
    public static bool IsSafeRevision(string? revision) =>
        !string.IsNullOrEmpty(revision) && revision.Length <= 255 && !revision.Contains("..") && !revision.Contains('\\') &&
        !revision.Any(c => char.IsControl(c) || c is ' ' or '~' or '^' or ':' or '?' or '*' or '[') &&
        !revision.EndsWith(".lock", StringComparison.Ordinal) &&
        revision.Split('/').All(s => s.Length > 0 && !s.StartsWith('.'));

    public static string RequireRevision(string revision) =>
        IsSafeRevision(revision) ? revision : throw InvalidRevision(revision);

    internal static LlmException InvalidRevision(string? revision) =>
        new("HubInvalidRevision", LlmErrorKind.InvalidArgument,
            $"'{Show(revision)}' is not a branch, tag or commit name (names cannot contain '..', a backslash, or segments starting with '.').");

    private static string Show(string? s) =>
        s is null ? "(none)" : new string((s.Length > 80 ? s[..80] : s).Select(c => char.IsControl(c) ? '?' : c).ToArray());

    /// <summary>The commit a revision points to in the cache (a commit is itself), or null.</summary>
    public string? CachedCommit(string repoId, string revision)
    {
        if (IsCommit(revision)) return Directory.Exists(Path.Combine(RepoFolder(repoId), "snapshots", revision)) ? revision : null;
        if (!IsSafeRevision(revision)) throw InvalidRevision(revision);
        var refPath = RefPath(repoId, revision);
        if (!File.Exists(refPath)) return null;
        var commit = File.ReadAllText(refPath).Trim();
        return IsCommit(commit) ? commit : null;
    }

    /// <summary>The cached file for repo/revision/path, without any network call, or null.</summary>
    public string? Find(string repoId, string revision, string path)
    {
        if (CachedCommit(repoId, revision) is not { } commit || !IsSafeFilePath(path)) return null;
        var p = SnapshotPath(repoId, commit, path);
        return File.Exists(p) ? p : null; // File.Exists follows the symlink: a dangling one does not count
    }

    /// <summary>Files (paths relative to the snapshot) cached for a commit.</summary>
    public IReadOnlyList<string> CachedFiles(string repoId, string commit)
    {
        var dir = Path.Combine(RepoFolder(repoId), "snapshots", RequireCommit(commit));
        if (!Directory.Exists(dir)) return [];
        return Directory.EnumerateFiles(dir, "*", new EnumerationOptions { RecurseSubdirectories = true })
            .Where(File.Exists).Select(f => Path.GetRelativePath(dir, f).Replace('\\', '/')).OrderBy(f => f, StringComparer.Ordinal).ToList();
    }

    /// <summary>Writes refs/{revision} (atomically) unless the revision is the commit itself.</summary>
    public void WriteRef(string repoId, string revision, string commit)
    {
        if (revision == commit) return;
        var refPath = RefPath(repoId, revision);
        Directory.CreateDirectory(Path.GetDirectoryName(refPath)!);
        if (File.Exists(refPath) && File.ReadAllText(refPath) == commit) return;
        var tmp = refPath + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        File.WriteAllText(tmp, commit);
        File.Move(tmp, refPath, overwrite: true);
    }

    /// <summary>Points snapshots/{commit}/{path} at blobs/{etag} with a relative symlink (a copy where links are impossible).</summary>
    public string LinkSnapshot(string repoId, string commit, string path, string etag)
    {
        var link = SnapshotPath(repoId, commit, path);
        Directory.CreateDirectory(Path.GetDirectoryName(link)!);
        var blob = BlobPath(repoId, etag);
        // ../../blobs/{etag} from snapshots/{commit}/, one more ../ per sub-folder of the path.
        int depth = path.Count(c => c == '/');
        var target = string.Concat(Enumerable.Repeat("../", 2 + depth)) + "blobs/" + etag;
        if (new FileInfo(link).LinkTarget is { } existing && existing == target && File.Exists(link)) return link;
        if (File.Exists(link) || new FileInfo(link).LinkTarget is not null) File.Delete(link);
        try
        {
            File.CreateSymbolicLink(link, target);
        }
        catch (IOException)
        {
            File.Copy(blob, link, overwrite: true);
        }
        catch (UnauthorizedAccessException)
        {
            File.Copy(blob, link, overwrite: true);
        }
        return link;
    }

    public void MarkMissing(string repoId, string commit, string path)
    {
        var marker = NoExistPath(repoId, commit, path);
        Directory.CreateDirectory(Path.GetDirectoryName(marker)!);
        if (!File.Exists(marker)) File.WriteAllBytes(marker, []);
    }

    public bool IsMarkedMissing(string repoId, string revision, string path) =>
        CachedCommit(repoId, revision) is { } commit && File.Exists(NoExistPath(repoId, commit, path));

    /// <summary>
    /// Removes files of a snapshot and every blob no other snapshot still links to; refs to an emptied snapshot go
    /// too. Returns the bytes freed.
    /// </summary>
    public long Remove(string repoId, string commit, IReadOnlyList<string> paths)
    {
        var repo = RepoFolder(repoId);
        var blobs = Path.Combine(repo, "blobs") + Path.DirectorySeparatorChar;
        var snapshotDir = Path.Combine(repo, "snapshots", RequireCommit(commit));
        var candidates = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in paths)
        {
            var link = SnapshotPath(repoId, commit, p);
            var fi = new FileInfo(link);
            // Only a blob of this repository is ever deleted: a link that points anywhere else (planted, or made by
            // another tool) loses the link, never its target.
            if (fi.LinkTarget is { } target && Path.GetFullPath(Path.Combine(Path.GetDirectoryName(link)!, target)) is var t
                && t.StartsWith(blobs, StringComparison.Ordinal) && !t[blobs.Length..].Contains(Path.DirectorySeparatorChar))
                candidates.Add(t);
            if (fi.Exists || fi.LinkTarget is not null) File.Delete(link);
        }
        // A blob stays while any snapshot (of any commit) still links to it.
        var stillUsed = new HashSet<string>(StringComparer.Ordinal);
        var snapshots = Path.Combine(repo, "snapshots");
        if (Directory.Exists(snapshots))
            foreach (var f in Directory.EnumerateFiles(snapshots, "*", new EnumerationOptions { RecurseSubdirectories = true }))
                if (new FileInfo(f).LinkTarget is { } t)
                    stillUsed.Add(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(f)!, t)));
        long freed = 0;
        foreach (var blob in candidates.Where(b => !stillUsed.Contains(b) && File.Exists(b)))
        {
            freed += new FileInfo(blob).Length;
            File.Delete(blob);
        }
        foreach (var p in paths) DeleteEmptyFolders(Path.GetDirectoryName(Path.Combine(snapshotDir, p))!, snapshots);
        if (!Directory.Exists(snapshotDir))
        {
            var refs = Path.Combine(repo, "refs");
            if (Directory.Exists(refs))
                foreach (var r in Directory.EnumerateFiles(refs, "*", new EnumerationOptions { RecurseSubdirectories = true }))
                    if (File.ReadAllText(r).Trim() == commit) File.Delete(r);
        }
        return freed;
    }

    private static void DeleteEmptyFolders(string dir, string stopAt)
    {
        for (var d = new DirectoryInfo(dir); d is not null && d.Exists && d.FullName.Length > stopAt.Length; d = d.Parent)
        {
            if (d.EnumerateFileSystemInfos().Any()) break;
            d.Delete();
        }
    }
}
