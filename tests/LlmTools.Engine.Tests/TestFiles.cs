using LlmTools.TestModels;

namespace LlmTools.Engine.Tests;

/// <summary>Model files for tests: the suite's own tiny model, the embedded stories260K, and ../shared/models when that folder exists.</summary>
public static class TestFiles
{
    private static readonly Lazy<string> Folder = new(() =>
    {
        var d = Path.Combine(Path.GetTempPath(), "llmtools-tests-" + Environment.ProcessId);
        Directory.CreateDirectory(d);
        return d;
    });

    private static readonly Lazy<string> Tiny = new(() => TinyModel.Write(Path.Combine(Folder.Value, "tiny.gguf")));

    public static string TempFolder => Folder.Value;

    /// <summary>The suite's own tiny llama model (random weights, real SentencePiece-style vocabulary).</summary>
    public static string TinyModelPath => Tiny.Value;

    public static string NewPath(string name) => Path.Combine(Folder.Value, Guid.NewGuid().ToString("N")[..8] + "-" + name);

    /// <summary>../shared/models beside the checkout, or null in a fresh clone.</summary>
    public static string? SharedModels
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                var candidate = Path.Combine(d.FullName, "shared", "models");
                if (File.Exists(Path.Combine(candidate, "stories260K.gguf"))) return candidate;
            }
            return null;
        }
    }

    /// <summary>
    /// A file of ../shared/models, or null. stories260K.gguf is always there: the module ships it (-Model tinystories)
    /// and this project copies it beside the tests, so the tests that need only it run in a fresh clone too.
    /// </summary>
    public static string? Shared(string relative)
    {
        if (SharedModels is { } m && File.Exists(Path.Combine(m, relative))) return Path.Combine(m, relative);
        return relative == "stories260K.gguf" ? EmbeddedModels.TryResolve(EmbeddedModels.DefaultName) : null;
    }
}
