using System.Management.Automation;

namespace LlmTools.Commands;

/// <summary>
/// Lists the models loaded in this session; with -ListAvailable the GGUF files in the known model folders; with
/// -Path the metadata of given files or folders, read from the header without loading weights.
/// </summary>
/// <remarks>
/// <para>The metadata tells what a user checks first: architecture, parameters, quantization (FileType), context
/// length, and whether the model has a chat template (HasChatTemplate) or is a base model.</para>
/// <para>-ListAvailable lists the model shipped with the module first (tinystories, for -Model tinystories), then searches
/// the folders in LLMTOOLS_MODEL_PATH, ~/.cache/llmtools/models and the Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub
/// or ~/.cache/huggingface/hub).</para>
/// </remarks>
/// <example>
/// <code>Get-LlmModel -Path ./models | Format-Table Name, Parameters, FileType, ContextLength, HasChatTemplate</code>
/// <para>Describes every GGUF file under ./models.</para>
/// </example>
/// <example>
/// <code>Get-LlmModel</code>
/// <para>Lists the models loaded in this session, with their load time and contexts.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "LlmModel", DefaultParameterSetName = LoadedSet)]
[OutputType(typeof(LlmLoadedModel), ParameterSetName = [LoadedSet])]
[OutputType(typeof(LlmModelInfo), ParameterSetName = [AvailableSet, PathSet])]
public sealed class GetLlmModelCommand : LlmCmdlet
{
    private const string LoadedSet = "Loaded";
    private const string AvailableSet = "ListAvailable";
    private const string PathSet = "Path";

    /// <summary>Filters by model name or file name (wildcards allowed).</summary>
    [Parameter(Position = 0, ParameterSetName = LoadedSet)]
    [Parameter(Position = 0, ParameterSetName = AvailableSet)]
    [SupportsWildcards]
    public string[]? Name { get; set; }

    /// <summary>List the GGUF files in the known model folders instead of the loaded models.</summary>
    [Parameter(Mandatory = true, ParameterSetName = AvailableSet)]
    public SwitchParameter ListAvailable { get; set; }

    /// <summary>GGUF files or folders to read (folders are searched recursively).</summary>
    [Parameter(Mandatory = true, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "LiteralPath")]
    [SupportsWildcards]
    public string[] Path { get; set; } = [];

    protected override void ProcessRecord()
    {
        switch (ParameterSetName)
        {
            case LoadedSet:
                foreach (var m in ModelCache.Instance.List())
                    if (Matches(m.Name, m.Path)) WriteObject(m);
                break;
            case AvailableSet:
                foreach (var info in EmbeddedModels.Describe())
                    if (Matches(info.Name, info.Path)) WriteObject(info);
                foreach (var file in ModelLocations.FindGgufFiles(ModelLocations.SearchFolders()))
                    WriteInfo(file, requireMatch: true);
                break;
            default:
                foreach (var p in Path)
                    foreach (var file in ExpandPath(p))
                        WriteInfo(file, requireMatch: false);
                break;
        }
    }

    private IEnumerable<string> ExpandPath(string path)
    {
        List<string> resolved;
        try
        {
            resolved = WildcardPattern.ContainsWildcardCharacters(path)
                ? GetResolvedProviderPathFromPSPath(path, out _).ToList()
                : [ResolvePath(path)];
        }
        catch (ItemNotFoundException)
        {
            resolved = [];
        }
        if (resolved.Count == 0 || (resolved.Count == 1 && !File.Exists(resolved[0]) && !Directory.Exists(resolved[0])))
        {
            WriteLlmError(new LlmException("ModelFileNotFound", LlmErrorKind.ObjectNotFound, $"'{path}' does not exist.", path));
            yield break;
        }
        foreach (var r in resolved)
        {
            if (Directory.Exists(r))
                foreach (var f in ModelLocations.FindGgufFiles([r])) yield return f;
            else yield return r;
        }
    }

    private void WriteInfo(string file, bool requireMatch)
    {
        try
        {
            var info = ModelInfoReader.Read(file);
            info.HubReference = HubReferenceOf(file);
            if (!requireMatch || Matches(info.Name, info.Path)) WriteObject(info);
        }
        catch (LlmException e)
        {
            WriteLlmError(e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            // One unreadable file is an error for that file; the listing goes on.
            WriteLlmError(new LlmException("ModelFileUnreadable", LlmErrorKind.ResourceUnavailable, $"Model file '{file}' cannot be read: {e.Message}", file, e));
        }
    }

    /// <summary>org/name/file.gguf@commit for a file under the Hub cache (models--org--name/snapshots/commit/file).</summary>
    private static string? HubReferenceOf(string file)
    {
        var root = Hub.HubSettings.FromEnvironment().HubCache;
        var relative = System.IO.Path.GetRelativePath(root, file).Replace('\\', '/');
        var parts = relative.Split('/');
        if (relative.StartsWith("..", StringComparison.Ordinal) || parts.Length < 4 || parts[1] != "snapshots"
            || !parts[0].StartsWith("models--", StringComparison.Ordinal))
            return null;
        var repo = parts[0]["models--".Length..].Replace("--", "/");
        return $"{repo}/{string.Join('/', parts[3..])}@{parts[2]}";
    }

    private bool Matches(string name, string path)
    {
        if (Name is null || Name.Length == 0) return true;
        var fileName = System.IO.Path.GetFileName(path);
        return Name.Any(n =>
        {
            var pattern = new WildcardPattern(n, WildcardOptions.IgnoreCase);
            return pattern.IsMatch(name) || pattern.IsMatch(fileName) || pattern.IsMatch(path);
        });
    }
}
