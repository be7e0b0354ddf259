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

    public string RepoFolder(string repoId) => Path.Combine(Root, FolderName(repoId));
    public string BlobPath(string repoId, string etag) => Path.Combine(RepoFolder(repoId), "blobs", etag);
    public string SnapshotPath(string repoId, string commit, string path) => Path.Combine(RepoFolder(repoId), "snapshots", commit, path);
    public string RefPath(string repoId, string revision) => Path.Combine(RepoFolder(repoId), "refs", revision);
    public string NoExistPath(string repoId, string commit, string path) => Path.Combine(RepoFolder(repoId), ".no_exist", commit, path);
    public string LockPath(string repoId, string etag) => Path.Combine(Root, ".locks", FolderName(repoId), etag + ".lock");

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitPattern();

    public static bool IsCommit(string revision) => CommitPattern().IsMatch(revision);

    /// <summary>The commit a revision points to in the cache (a commit is itself), or null.</summary>
    public string? CachedCommit(string repoId, string revision)
    {
        if (IsCommit(revision)) return Directory.Exists(Path.Combine(RepoFolder(repoId), "snapshots", revision)) ? revision : null;
        var refPath = RefPath(repoId, revision);
        if (!File.Exists(refPath)) return null;
        var commit = File.ReadAllText(refPath).Trim();
        return IsCommit(commit) ? commit : null;
    }

    /// <summary>The cached file for repo/revision/path, without any network call, or null.</summary>
    public string? Find(string repoId, string revision, string path)
    {
        if (CachedCommit(repoId, revision) is not { } commit) return null;
        var p = SnapshotPath(repoId, commit, path);
        return File.Exists(p) ? p : null; // File.Exists follows the symlink: a dangling one does not count
    }

    /// <summary>Files (paths relative to the snapshot) cached for a commit.</summary>
    public IReadOnlyList<string> CachedFiles(string repoId, string commit)
    {
        var dir = Path.Combine(RepoFolder(repoId), "snapshots", commit);
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
        var snapshotDir = Path.Combine(repo, "snapshots", commit);
        var candidates = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in paths)
        {
            var link = Path.Combine(snapshotDir, p);
            var fi = new FileInfo(link);
            if (fi.LinkTarget is { } target)
                candidates.Add(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(link)!, target)));
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
