namespace LlmTools;

/// <summary>Where LlmTools looks for GGUF files on disk.</summary>
public static class ModelLocations
{
    /// <summary>Folders listed in this variable (separated like PATH) are searched first.</summary>
    public const string ModelPathVariable = "LLMTOOLS_MODEL_PATH";

    /// <summary>LlmTools' own model folder: ~/.cache/llmtools/models (or $XDG_CACHE_HOME/llmtools/models).</summary>
    public static string DefaultModelFolder
    {
        get
        {
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var cache = string.IsNullOrEmpty(xdg)
                ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache")
                : xdg;
            return Path.Combine(cache, "llmtools", "models");
        }
    }

    /// <summary>The Hugging Face hub cache, as huggingface_hub resolves it: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.</summary>
    public static string HuggingFaceHubCache => Hub.HubSettings.FromEnvironment().HubCache;

    public static IReadOnlyList<string> SearchFolders()
    {
        var folders = new List<string>();
        var custom = Environment.GetEnvironmentVariable(ModelPathVariable);
        if (!string.IsNullOrEmpty(custom))
            folders.AddRange(custom.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        folders.Add(DefaultModelFolder);
        folders.Add(HuggingFaceHubCache);
        return folders.Where(Directory.Exists).Select(Path.GetFullPath).Distinct().ToList();
    }

    /// <summary>
    /// GGUF files under the folders, recursively; of a split model only its first part. Symbolic links to folders
    /// are followed, but every folder is visited once (by its resolved path), so a link loop lists each file once;
    /// unreadable folders are skipped, never the whole listing.
    /// </summary>
    public static IEnumerable<string> FindGgufFiles(IEnumerable<string> folders)
    {
        var seenFiles = new HashSet<string>(StringComparer.Ordinal);
        var seenFolders = new HashSet<string>(StringComparer.Ordinal);
        var options = new EnumerationOptions { RecurseSubdirectories = false, IgnoreInaccessible = true, MatchCasing = MatchCasing.CaseInsensitive };
        foreach (var root in folders)
        {
            var pending = new Stack<string>();
            pending.Push(root);
            while (pending.Count > 0)
            {
                var folder = pending.Pop();
                if (Resolve(folder) is not { } real || !seenFolders.Add(real)) continue;
                List<string> files, subfolders;
                try
                {
                    files = Directory.EnumerateFiles(folder, "*.gguf", options).OrderBy(f => f, StringComparer.Ordinal).ToList();
                    subfolders = Directory.EnumerateDirectories(folder, "*", options).OrderByDescending(f => f, StringComparer.Ordinal).ToList();
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.SecurityException)
                {
                    continue;
                }
                foreach (var f in files)
                {
                    if (IsLaterSplitPart(f)) continue;
                    // A file reached twice through links is listed once (under the first path found).
                    if (seenFiles.Add(Resolve(f) ?? Path.GetFullPath(f))) yield return f;
                }
                foreach (var d in subfolders) pending.Push(d);
            }
        }
    }

    /// <summary>The path with every symbolic link resolved, or null when it cannot be resolved (a dangling or looping link).</summary>
    private static string? Resolve(string path)
    {
        try
        {
            var full = Path.GetFullPath(path);
            var parts = full.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
            string current = Path.GetPathRoot(full) ?? "/";
            // Resolve component by component: a link in any parent folder matters as much as one at the end.
            foreach (var part in parts.Skip(OperatingSystem.IsWindows() ? 1 : 0))
            {
                var next = Path.Combine(current, part);
                var info = new FileInfo(next);
                if (info.LinkTarget is not null)
                {
                    var target = info.ResolveLinkTarget(returnFinalTarget: true);
                    if (target is null) return null;
                    next = target.FullName;
                }
                current = next;
            }
            return current;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return null; // too many levels of links, or unreadable
        }
    }

    private static bool IsLaterSplitPart(string path)
    {
        // name-00002-of-00003.gguf: only the first part is a model to open.
        var name = Path.GetFileNameWithoutExtension(path);
        var m = System.Text.RegularExpressions.Regex.Match(name, @"-(\d{5})-of-(\d{5})$");
        return m.Success && m.Groups[1].Value != "00001";
    }
}
