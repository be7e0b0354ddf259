using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace LlmTools;

/// <summary>Completes -Model with loaded models, the models shipped with the module (tinystories), then models in the known folders.</summary>
public sealed class ModelArgumentCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = wordToComplete.Trim('\'', '"');
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var candidates = ModelCache.Instance.List().Select(m => (m.Path, $"{m.Name} (loaded)"))
            .Concat(EmbeddedModels.Available().Select(e => (e.Model.Name, $"{e.Model.Description} (shipped with LlmTools)")))
            .Concat(HubReferences())
            .Concat(ModelLocations.FindGgufFiles(ModelLocations.SearchFolders()).Select(p => (p, Path.GetFileName(p))));
        foreach (var (path, tip) in candidates)
        {
            if (!seen.Add(path)) continue;
            if (word.Length > 0 && !path.Contains(word, StringComparison.OrdinalIgnoreCase)) continue;
            yield return new CompletionResult(Quote(path), Path.GetFileName(path), CompletionResultType.ParameterValue, tip);
        }
    }

    /// <summary>Models in the Hugging Face cache as the references that name them: org/name:QUANT (or org/name/file).</summary>
    private static IEnumerable<(string, string)> HubReferences()
    {
        var hub = ModelLocations.HuggingFaceHubCache;
        if (!Directory.Exists(hub)) yield break;
        foreach (var repoDir in Directory.EnumerateDirectories(hub, "models--*"))
        {
            var parts = Path.GetFileName(repoDir)["models--".Length..].Split("--", 2);
            if (parts.Length != 2) continue;
            var repo = parts[0] + "/" + parts[1];
            var snapshots = Path.Combine(repoDir, "snapshots");
            if (!Directory.Exists(snapshots)) continue;
            foreach (var file in ModelLocations.FindGgufFiles([snapshots]))
            {
                var name = Path.GetFileName(file);
                var quant = Hub.HubModels.QuantizationOf(name);
                yield return (quant is null ? $"{repo}/{name}" : $"{repo}:{quant}", $"{repo} {name} (Hugging Face cache)");
            }
        }
    }

    internal static string Quote(string path) => path.Any(c => char.IsWhiteSpace(c) || c is '\'' or '$' or '`' or '(' or ')' or '{' or '}' or ',' or ';' or '&')
        ? "'" + path.Replace("'", "''") + "'"
        : path;
}

/// <summary>Completes with the models loaded in this session.</summary>
public sealed class LoadedModelArgumentCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = wordToComplete.Trim('\'', '"');
        foreach (var m in ModelCache.Instance.List())
            if (word.Length == 0 || m.Path.Contains(word, StringComparison.OrdinalIgnoreCase))
                yield return new CompletionResult(ModelArgumentCompleter.Quote(m.Path), m.Name, CompletionResultType.ParameterValue, m.Path);
    }
}
