using LlmTools;
using LlmTools.Engine;
using LlmTools.Fuzz;

// LlmTools.Fuzz -count N -seed S [-timeout seconds] [-stories path] [-out folder]: fuzzes, prints the figures, and
// exits 1 on any finding. LlmTools.Fuzz -child: the oracle process (reads model paths from stdin).
if (args.Contains("-child"))
    return Child.Serve();

string? Arg(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
var stories = Arg("-stories");
if (stories is null)
    for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null && stories is null; d = d.Parent)
        if (File.Exists(Path.Combine(d.FullName, "shared", "models", "stories260K.gguf")))
            stories = Path.Combine(d.FullName, "shared", "models", "stories260K.gguf");
var options = new FuzzOptions
{
    Count = int.Parse(Arg("-count") ?? "40"),
    Seed = int.Parse(Arg("-seed") ?? "1"),
    Timeout = TimeSpan.FromSeconds(double.Parse(Arg("-timeout") ?? "60")),
    Stories = stories,
    WorkDir = Arg("-out") ?? Path.Combine(Path.GetTempPath(), "llmtools-fuzz-" + Environment.ProcessId),
    Log = Console.Out,
};
var report = Fuzzer.Run(options);
Console.WriteLine(report);
if (report.RefusalIds.Count > 0)
    Console.WriteLine("validator refusals: " + string.Join(", ", report.RefusalIds.Select(kv => $"{kv.Key} {kv.Value}")));
if (report.NativeIds.Count > 0)
    Console.WriteLine("engine refusals after validation: " + string.Join(", ", report.NativeIds.Select(kv => $"{kv.Key} {kv.Value}")));
foreach (var f in report.Findings) Console.WriteLine("finding: " + f);
return report.FindingCount > 0 ? 1 : 0;

namespace LlmTools.Fuzz
{
    /// <summary>The oracle: real llama.cpp loads each file, tokenizes hostile text and decodes a few tokens.</summary>
    public static class Child
    {
        private static readonly string[] Texts =
        [
            "Hello world", "h\u00e9llo w\u00f6rld \U0001F600\U0001F389 \u2211 \u4E2D\u6587 \u0627\u0644", "\u0000\u0001\u007f\t\r\n",
            "</s><s><|im_start|><|im_end|><unk>", new string('a', 300), " ", "\u2581\u2581x",
        ];

        public static int Serve()
        {
            string? path;
            while ((path = Console.ReadLine()) is not null)
            {
                string result;
                try
                {
                    result = RunOne(path);
                }
                catch (LlmException e)
                {
                    result = "REFUSED " + e.ErrorId;
                }
                catch (Exception e)
                {
                    result = $"RAW {e.GetType().FullName}: {e.Message.ReplaceLineEndings(" ")}";
                }
                finally
                {
                    try { ModelCache.Instance.UnloadAll(); } catch (Exception) { }
                }
                Console.Out.WriteLine("@@fuzz " + result);
                Console.Out.Flush();
            }
            return 0;
        }

        private static string RunOne(string path)
        {
            var info = ModelInfoReader.Read(path);
            if (info.IsVocabularyOnly)
            {
                using var tokenizer = ModelCache.Instance.AcquireTokenizer(path, NullEngineEvents.Instance, default);
                foreach (var t in Texts) CompletionEngine.Tokenize(tokenizer, t);
                return "OK";
            }
            using var lease = ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default);
            foreach (var t in Texts) CompletionEngine.Tokenize(lease, t);
            CompletionEngine.Complete(lease, "Once upon a time \U0001F600",
                new CompletionOptions { Temperature = 0, RepeatPenalty = 1, MaxTokens = 4 },
                new ContextOptions { Threads = 1, ContextSize = 128 }, NullEngineEvents.Instance, default);
            return "OK";
        }
    }
}
