using System.Collections.Concurrent;
using System.Diagnostics;
using LlmTools.Engine.Gguf;
using LlmTools.TestModels;

namespace LlmTools.Fuzz;

public sealed class FuzzOptions
{
    public int Count { get; init; } = 40;
    public int Seed { get; init; } = 1;
    /// <summary>How long the child may take for one accepted file before it counts as a hang.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>stories260K.gguf, used as a second base file when it exists.</summary>
    public string? Stories { get; init; }
    public required string WorkDir { get; init; }
    public TextWriter Log { get; init; } = TextWriter.Null;
}

public sealed class FuzzReport
{
    public int Run, Accepted, Refused, Survived, NativeRefused, Crashes, Hangs, RawExceptions;
    public SortedDictionary<string, int> RefusalIds { get; } = new(StringComparer.Ordinal);
    public SortedDictionary<string, int> NativeIds { get; } = new(StringComparer.Ordinal);
    public List<string> Findings { get; } = [];
    public int FindingCount => Crashes + Hangs + RawExceptions;

    public override string ToString() =>
        $"mutants run {Run}, accepted {Accepted}, refused {Refused}, crashes {Crashes}, hangs {Hangs}, raw exceptions {RawExceptions}" +
        $" (accepted: {Survived} loaded and decoded, {NativeRefused} refused by the engine after validation)";
}

/// <summary>
/// Mutates base GGUF files; each mutant goes through the managed validator in this process, and each one the
/// validator accepts is loaded and decoded by real llama.cpp in a child process. A child that dies or hangs on an
/// accepted file, or an exception that is not the module's own LlmException, is a finding.
/// </summary>
public static class Fuzzer
{
    public static FuzzReport Run(FuzzOptions o)
    {
        Directory.CreateDirectory(o.WorkDir);
        var findings = Path.Combine(o.WorkDir, "findings");
        var bases = new List<(string Name, byte[] Bytes, GgufImage Image)>();
        void AddBase(string name, string path)
        {
            bases.Add((name, File.ReadAllBytes(path), GgufImage.Load(path)));
        }
        AddBase("tiny", TinyModel.Write(Path.Combine(o.WorkDir, "base-tiny.gguf"), new TinyModelOptions { Layers = 1 }));
        AddBase("tiny-chat", TinyModel.Write(Path.Combine(o.WorkDir, "base-chat.gguf"), TinyChatModel.Options()));
        if (o.Stories is { } s && File.Exists(s)) AddBase("stories260K", s);
        o.Log.WriteLine($"Fuzzing {o.Count} mutants of {string.Join(", ", bases.Select(b => b.Name))} (seed {o.Seed}, timeout {o.Timeout.TotalSeconds:0} s).");

        var report = new FuzzReport();
        using var child = new ChildRunner(o.Timeout);
        for (int i = 0; i < o.Count; i++)
        {
            var rng = new Random(unchecked(o.Seed * 1_000_003 + i));
            var b = bases[i % bases.Count];
            var (bytes, description) = Mutator.Mutate(b.Bytes, b.Image, rng);
            var path = Path.Combine(o.WorkDir, $"mutant-{i}.gguf");
            File.WriteAllBytes(path, bytes);
            report.Run++;

            void Finding(string kind, string detail)
            {
                Directory.CreateDirectory(findings);
                var keep = Path.Combine(findings, $"{kind}-{o.Seed}-{i}.gguf");
                File.Copy(path, keep, overwrite: true);
                File.WriteAllText(Path.ChangeExtension(keep, ".txt"), $"{b.Name}: {description}\n{detail}\n");
                report.Findings.Add($"{kind} #{i} ({b.Name}: {description}): {detail} -> {keep}");
                o.Log.WriteLine($"FINDING {kind} #{i} ({b.Name}: {description}): {detail}");
            }

            try
            {
                ModelInfoReader.Read(path);
            }
            catch (LlmException e)
            {
                report.Refused++;
                report.RefusalIds[e.ErrorId] = report.RefusalIds.GetValueOrDefault(e.ErrorId) + 1;
                File.Delete(path);
                continue;
            }
            catch (Exception e)
            {
                report.RawExceptions++;
                Finding("raw", $"the validator threw {e.GetType().FullName}: {e.Message}");
                continue;
            }

            report.Accepted++;
            var (status, detail) = child.Run(path);
            switch (status)
            {
                case "OK":
                    report.Survived++;
                    break;
                case "REFUSED":
                    report.NativeRefused++;
                    report.NativeIds[detail] = report.NativeIds.GetValueOrDefault(detail) + 1;
                    break;
                case "RAW":
                    report.RawExceptions++;
                    Finding("raw", detail);
                    break;
                case "HANG":
                    report.Hangs++;
                    Finding("hang", detail);
                    break;
                default:
                    report.Crashes++;
                    Finding("crash", detail);
                    break;
            }
            if (File.Exists(path)) File.Delete(path);
            if ((i + 1) % 100 == 0) o.Log.WriteLine($"  {i + 1}: {report}");
        }
        return report;
    }

    /// <summary>This program started again with -child: it loads each path it is sent and reports one line per path.</summary>
    private sealed class ChildRunner(TimeSpan timeout) : IDisposable
    {
        private Process? _process;
        private BlockingCollection<string?> _lines = new();
        private readonly ConcurrentQueue<string> _stderr = new();

        private void Start()
        {
            var dll = typeof(Fuzzer).Assembly.Location;
            var psi = new ProcessStartInfo("dotnet")
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            psi.ArgumentList.Add("exec");
            // Referenced from the test project, this assembly runs with the test project's runtime configuration.
            var config = Path.ChangeExtension(dll, ".runtimeconfig.json");
            if (!File.Exists(config) && Assembly() is { } entry)
            {
                psi.ArgumentList.Add("--runtimeconfig");
                psi.ArgumentList.Add(Path.ChangeExtension(entry, ".runtimeconfig.json"));
                psi.ArgumentList.Add("--depsfile");
                psi.ArgumentList.Add(Path.ChangeExtension(entry, ".deps.json"));
            }
            psi.ArgumentList.Add(dll);
            psi.ArgumentList.Add("-child");
            var lines = new BlockingCollection<string?>();
            _lines = lines;
            _process = new Process { StartInfo = psi };
            _process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is null) lines.Add(null);
                else if (e.Data.StartsWith("@@fuzz ", StringComparison.Ordinal)) lines.Add(e.Data[7..]);
            };
            _process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                _stderr.Enqueue(e.Data);
                while (_stderr.Count > 20) _stderr.TryDequeue(out string? _);
            };
            _process.Start();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        private static string? Assembly()
        {
            // The test project's own assembly lies beside this one, named by its runtimeconfig.
            var dir = Path.GetDirectoryName(typeof(Fuzzer).Assembly.Location)!;
            return Directory.EnumerateFiles(dir, "*.runtimeconfig.json")
                .Select(f => f[..^".runtimeconfig.json".Length] + ".dll")
                .FirstOrDefault(File.Exists);
        }

        public (string Status, string Detail) Run(string path)
        {
            if (_process is null || _process.HasExited) Start();
            while (_stderr.TryDequeue(out string? _)) { }
            _process!.StandardInput.WriteLine(path);
            _process.StandardInput.Flush();
            if (!_lines.TryTake(out var line, timeout))
            {
                Kill();
                return ("HANG", $"no answer within {timeout.TotalSeconds:0} s");
            }
            if (line is null)
            {
                _process.WaitForExit(5000);
                int code = _process.HasExited ? _process.ExitCode : -1;
                var tail = string.Join(" | ", _stderr.TakeLast(6));
                _process.Dispose();
                _process = null;
                return ("CRASH", $"the child died with exit code {code}: {tail}");
            }
            int space = line.IndexOf(' ');
            return space < 0 ? (line, "") : (line[..space], line[(space + 1)..]);
        }

        private void Kill()
        {
            try { _process?.Kill(entireProcessTree: true); _process?.WaitForExit(5000); } catch (InvalidOperationException) { }
            _process?.Dispose();
            _process = null;
        }

        public void Dispose()
        {
            if (_process is { HasExited: false })
            {
                try { _process.StandardInput.Close(); } catch (IOException) { }
                if (!_process.WaitForExit(10000)) Kill();
            }
            _process?.Dispose();
        }
    }
}
