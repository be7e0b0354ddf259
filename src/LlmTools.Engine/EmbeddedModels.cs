namespace LlmTools;

/// <summary>A model shipped inside the module, named by a short name (-Model tinystories).</summary>
public sealed record EmbeddedModel(string Name, string FileName, string Description);

/// <summary>
/// The models shipped inside the module, so that it works with no network and no download: models/ in the module
/// folder (beside engine/). A short name is matched case-insensitively and wins over a relative path of that name.
/// </summary>
public static class EmbeddedModels
{
    /// <summary>The short name of the embedded default model.</summary>
    public const string DefaultName = "tinystories";

    public static IReadOnlyList<EmbeddedModel> All { get; } =
    [
        new(DefaultName, "stories260K.gguf",
            "TinyStories 260K (karpathy/tinyllamas, MIT, 1.2 MB): continues a story; not a chat model"),
    ];

    private static readonly Lazy<string?> LazyFolder = new(FindFolder);

    /// <summary>The folder that holds the embedded models, or null where it is missing (an engine used on its own).</summary>
    public static string? Folder => LazyFolder.Value;

    /// <summary>The file a short name names, or null when <paramref name="name"/> is no embedded model's name.</summary>
    public static string? TryResolve(string? name)
    {
        if (string.IsNullOrEmpty(name) || Folder is not { } folder) return null;
        foreach (var m in All)
        {
            if (!string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase)) continue;
            var path = Path.Combine(folder, m.FileName);
            return File.Exists(path) ? path : null;
        }
        return null;
    }

    /// <summary>The embedded models present on disk, with their files.</summary>
    public static IEnumerable<(EmbeddedModel Model, string Path)> Available()
    {
        if (Folder is not { } folder) yield break;
        foreach (var m in All)
        {
            var path = Path.Combine(folder, m.FileName);
            if (File.Exists(path)) yield return (m, path);
        }
    }

    /// <summary>True when <paramref name="path"/> is the file of an embedded model.</summary>
    public static bool IsEmbedded(string path) =>
        Available().Any(a => string.Equals(a.Path, Path.GetFullPath(path), StringComparison.Ordinal));

    /// <summary>
    /// The header facts of each embedded model, named by its short name (the file's own general.name, "llama" for
    /// stories260K, says nothing a user can pass to -Model; it stays in Metadata).
    /// </summary>
    public static IEnumerable<LlmModelInfo> Describe()
    {
        foreach (var (model, path) in Available())
        {
            var i = ModelInfoReader.Read(path);
            yield return new LlmModelInfo
            {
                Path = i.Path, Name = model.Name, Architecture = i.Architecture, ParameterCount = i.ParameterCount,
                SizeBytes = i.SizeBytes, FileType = i.FileType, ContextLength = i.ContextLength,
                EmbeddingLength = i.EmbeddingLength, LayerCount = i.LayerCount, VocabularySize = i.VocabularySize,
                TokenizerModel = i.TokenizerModel, TokenizerPreset = i.TokenizerPreset, BosToken = i.BosToken,
                EosToken = i.EosToken, AddBosToken = i.AddBosToken, ChatTemplate = i.ChatTemplate,
                IsVocabularyOnly = i.IsVocabularyOnly, GgufVersion = i.GgufVersion, TensorCount = i.TensorCount,
                Metadata = i.Metadata,
            };
        }
    }

    private static string? FindFolder()
    {
        // The built module: engine/LlmTools.Engine.dll and models/ side by side. A test's build output: models/ beside
        // the engine assembly.
        var here = Path.GetDirectoryName(typeof(EmbeddedModels).Assembly.Location);
        if (string.IsNullOrEmpty(here)) return null;
        foreach (var candidate in new[] { Path.Combine(here, "..", "models"), Path.Combine(here, "models") })
            if (Directory.Exists(candidate)) return Path.GetFullPath(candidate);
        return null;
    }
}
