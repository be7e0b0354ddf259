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

    /// <summary>GGUF files under the folders, recursively; of a split model only its first part.</summary>
    public static IEnumerable<string> FindGgufFiles(IEnumerable<string> folders)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, MatchCasing = MatchCasing.CaseInsensitive };
        foreach (var folder in folders)
        {
            IEnumerable<string> files;
            try { files = Directory.EnumerateFiles(folder, "*.gguf", options).OrderBy(f => f, StringComparer.Ordinal).ToList(); }
            catch (IOException) { continue; }
            foreach (var f in files)
            {
                if (IsLaterSplitPart(f)) continue;
                if (seen.Add(Path.GetFullPath(f))) yield return f;
            }
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
