using System.Collections.Concurrent;
using LlmTools.Engine.Inference;
using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// The model's scheduler with real threads on real models: concurrent callers batched together with their
/// one-at-a-time results, cancellation of one caller, failed decodes, removal during load and generation, eviction of
/// kept sequences, and llama.cpp's log going to the caller whose work wrote it.
/// </summary>
public class SchedulerTests
{
    private static readonly ContextOptions Context = new() { Threads = 1, ContextSize = 256 };
    private static readonly CompletionOptions Greedy = new() { Temperature = 0, RepeatPenalty = 1, MaxTokens = 24 };

    private static readonly string[] Prompts =
    [
        "Once upon a time", "The little dog", "She saw a big red ball in the park and", "Tom",
        "One day the sun was hot so they went to the water to play", "Lily and Ben were friends.", "The cat", "Mom said good night",
    ];

    public static TheoryData<string> Models() => ["tiny", "stories260K.gguf"];

    /// <summary>A copy of the model of its own, so no other test's sequences or settings share its scheduler.</summary>
    private static string FreshCopy(string model)
    {
        string source = model == "tiny" ? TestFiles.TinyModelPath : TestFiles.Shared(model)!;
        Skip.If(source is null, "../shared/models is absent (a fresh clone)");
        var path = TestFiles.NewPath(Path.GetFileName(source));
        File.Copy(source, path);
        return path;
    }

    private static ModelLease Acquire(string path, IEngineEvents? events = null) =>
        ModelCache.Instance.Acquire(path, new ModelLoadOptions(), events ?? NullEngineEvents.Instance, default);

    private static LlmCompletionResult Complete(ModelLease lease, string prompt, CompletionOptions? options = null, IEngineEvents? events = null,
        CancellationToken cancel = default) =>
        CompletionEngine.Complete(lease, prompt, options ?? Greedy, Context, events ?? NullEngineEvents.Instance, cancel);

    /// <summary>Holds the scheduler's thread until the returned gate is set, so jobs submitted meanwhile start together.</summary>
    private static ManualResetEventSlim HoldScheduler(ModelScheduler scheduler)
    {
        var gate = new ManualResetEventSlim();
        var held = new ManualResetEventSlim();
        _ = Task.Run(() => scheduler.Invoke(() => { held.Set(); gate.Wait(); return 0; }, NullEngineEvents.Instance));
        held.Wait();
        return gate;
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void ConcurrentCallersAreDecodedTogetherAndGetTheirOneAtATimeResults(string model)
    {
        var path = FreshCopy(model);
        using var lease = Acquire(path);
        var sequential = Prompts.Select(p => Complete(lease, p)).ToArray();
        var scheduler = lease.Model.Scheduler;
        var gate = HoldScheduler(scheduler);
        var tasks = Prompts.Select(p => Task.Factory.StartNew(() => Complete(lease, p), TaskCreationOptions.LongRunning)).ToArray();
        SpinWait.SpinUntil(() => scheduler.Pending == Prompts.Length, 10_000);
        gate.Set();
        var concurrent = Task.WhenAll(tasks).GetAwaiter().GetResult();
        Assert.Equal(Prompts.Length, scheduler.PeakSequencesPerBatch);
        for (int i = 0; i < Prompts.Length; i++)
        {
            Assert.Equal(Prompts[i], concurrent[i].Prompt);
            Assert.Equal(sequential[i].Text, concurrent[i].Text);
            Assert.Equal(sequential[i].CompletionTokens, concurrent[i].CompletionTokens);
        }
        ModelCache.Instance.Unload(path);
    }

    [Fact]
    public void AfterABurstOnlyTheMostRecentFinishedSequencesStayCachedSoIdleCellsDoNotWidenLaterDecodes()
    {
        var path = FreshCopy("tiny");
        using var lease = Acquire(path);
        var scheduler = lease.Model.Scheduler;
        var once = new CompletionOptions { Temperature = 0, RepeatPenalty = 1, MaxTokens = 1 };
        string[] prompts = ["Apples grow on trees in the orchard", "Boats float on the lake at dawn", "Clouds drift over the hills",
                            "Dogs bark at the mail carrier", "Eagles fly above the mountains"];
        // A burst: five callers at once take five sequences, which all finish in the same step.
        var gate = HoldScheduler(scheduler);
        var tasks = prompts.Select(p => Task.Factory.StartNew(() => Complete(lease, p, once), TaskCreationOptions.LongRunning)).ToArray();
        SpinWait.SpinUntil(() => scheduler.Pending == prompts.Length, 10_000);
        gate.Set();
        Task.WaitAll(tasks);
        Assert.Equal(prompts.Length, scheduler.PeakSequencesPerBatch);
        // Five finished sequences, but only the most recent keep their cells (which ones depends on arrival order).
        Assert.Equal(ModelScheduler.IdleCachesKept, scheduler.IdleCachedSequences());
        ModelCache.Instance.Unload(path);
    }

    [Fact]
    public void CancellingOneCallerStopsOnlyItsSequence()
    {
        var path = FreshCopy("tiny");
        using var lease = Acquire(path);
        var expected = Prompts[..3].Select(p => Complete(lease, p, Greedy with { MaxTokens = 40 })).ToArray();
        using var cts = new CancellationTokenSource();
        var stopper = new Recorder { OnText = cts.Cancel };
        var long_ = Task.Factory.StartNew(() => Complete(lease, "The little dog", Greedy with { MaxTokens = 5000 }, stopper, cts.Token),
            TaskCreationOptions.LongRunning);
        var others = Prompts[..3].Select(p => Task.Factory.StartNew(() => Complete(lease, p, Greedy with { MaxTokens = 40 }),
            TaskCreationOptions.LongRunning)).ToArray();
        var stopped = long_.GetAwaiter().GetResult();
        Assert.Equal(LlmStopReason.Cancelled, stopped.StopReason);
        Assert.True(stopped.CompletionTokens < 5000);
        var done = Task.WhenAll(others).GetAwaiter().GetResult();
        for (int i = 0; i < done.Length; i++)
        {
            Assert.NotEqual(LlmStopReason.Cancelled, done[i].StopReason);
            Assert.Equal(expected[i].Text, done[i].Text);
        }
        ModelCache.Instance.Unload(path);
    }

    [Fact]
    public void AFailedDecodeIsHalvedAndFailsOnlyTheSequenceThatCannotRun()
    {
        var path = FreshCopy("tiny");
        using var lease = Acquire(path);
        var expected = Prompts.Select(p => Complete(lease, p)).ToArray();
        var scheduler = lease.Model.Scheduler;
        int failures = 0;
        // Any batch that holds the poisoned prompt's sequence fails, as a decode llama.cpp cannot do.
        scheduler.FailDecode = jobs =>
        {
            bool fail = jobs.Any(j => j.Sequence.Prompt == "POISON");
            if (fail) Interlocked.Increment(ref failures);
            return fail;
        };
        try
        {
            var gate = HoldScheduler(scheduler);
            var inputs = Prompts.Take(3).Append("POISON").Concat(Prompts.Skip(3)).ToArray();
            var tasks = inputs.Select(p => Task.Factory.StartNew(() => Complete(lease, p), TaskCreationOptions.LongRunning)).ToArray();
            SpinWait.SpinUntil(() => scheduler.Pending == inputs.Length, 10_000);
            gate.Set();
            for (int i = 0; i < inputs.Length; i++)
            {
                if (inputs[i] == "POISON")
                {
                    var e = Assert.Throws<LlmException>(() => tasks[i].GetAwaiter().GetResult());
                    Assert.Equal("DecodeFailed", e.ErrorId);
                    continue;
                }
                var r = tasks[i].GetAwaiter().GetResult();
                Assert.Equal(expected[Array.IndexOf(Prompts, inputs[i])].Text, r.Text);
            }
            Assert.True(failures >= 2, $"{failures} failed decodes: the batch was not retried in halves");
        }
        finally
        {
            scheduler.FailDecode = null;
        }
        // The model goes on working.
        Assert.Equal(expected[0].Text, Complete(lease, Prompts[0]).Text);
        ModelCache.Instance.Unload(path);
    }

    [Fact]
    public void RemovingAModelWhileItLoadsLeavesNoCopyBehind()
    {
        var path = FreshCopy("tiny");
        var loading = new ManualResetEventSlim();
        var events = new Recorder
        {
            OnProgress = () =>
            {
                if (loading.IsSet) return;
                loading.Set();
                Thread.Sleep(500); // the removal happens now, while llama.cpp is loading
            },
        };
        var load = Task.Factory.StartNew(() => Acquire(path, events), TaskCreationOptions.LongRunning);
        Assert.True(loading.Wait(30_000), "the load reported no progress");
        ModelCache.Instance.Unload(path);
        var e = Assert.Throws<LlmException>(() => load.GetAwaiter().GetResult());
        Assert.Equal("ModelRemovedWhileLoading", e.ErrorId);
        Assert.DoesNotContain(ModelCache.Instance.List(), m => m.Path == path);
        using var again = Acquire(path);
        Assert.False(again.FromCache);
        Assert.True(Complete(again, "Once").CompletionTokens > 0);
        Assert.Single(ModelCache.Instance.List(), m => m.Path == path);
        ModelCache.Instance.Unload(path);
    }

    [Fact]
    public void RemovingAModelDuringGenerationLetsTheCallFinishAndListsItAsUnloadingUntilThen()
    {
        var path = FreshCopy("tiny");
        var lease = Acquire(path);
        var expected = Complete(lease, "Once upon a time", Greedy with { MaxTokens = 60 });
        var started = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        var events = new Recorder
        {
            OnText = () =>
            {
                if (started.IsSet) return;
                started.Set();
                release.Wait(); // generation is held here while the model is removed
            },
        };
        var call = Task.Factory.StartNew(() => Complete(lease, "Once upon a time", Greedy with { MaxTokens = 60 }, events),
            TaskCreationOptions.LongRunning);
        Assert.True(started.Wait(30_000));
        Assert.Equal(1, ModelCache.Instance.Unload(path));
        var listed = Assert.Single(ModelCache.Instance.List(), m => m.Path == path);
        Assert.Equal("Unloading", listed.Status);
        release.Set();
        var r = call.GetAwaiter().GetResult();
        Assert.Equal(expected.Text, r.Text);
        lease.Dispose();
        Assert.True(lease.Model.IsDisposed);
        Assert.DoesNotContain(ModelCache.Instance.List(), m => m.Path == path);
    }

    [Fact]
    public void ChatSessionsBeyondTheCacheAreEvictedAndEvaluateAgainWithTheSameReply()
    {
        var path = TinyChatModel.Write(TestFiles.NewPath("chat-evict.gguf"));
        var context = new ContextOptions { Threads = 1, ContextSize = 96 };
        var options = new CompletionOptions { Temperature = 0, RepeatPenalty = 1, MaxTokens = 8 };
        ChatSession Open()
        {
            var lease = Acquire(path);
            return new ChatSession(lease, ChatFormat.ForModel(lease, null, NullEngineEvents.Instance), "Be brief.", options, context,
                NullEngineEvents.Instance);
        }
        var sessions = Enumerable.Range(0, 12).Select(_ => Open()).ToList();
        try
        {
            var first = sessions.Select((s, i) => s.Send($"Tell me a story about dog number {i} and the park", NullEngineEvents.Instance, default)).ToList();
            using (var probe = Acquire(path))
            {
                // 12 conversations of ~40 tokens do not all fit in 4 x 96 cells: the oldest were given up.
                Assert.True(probe.Model.Scheduler.Evictions > 0, "no sequence was evicted");
            }
            var again = sessions[0].Send("And then?", NullEngineEvents.Instance, default);
            // Its own conversation was gone (at most a prefix common to all sessions is shared from another one).
            Assert.True(again.CachedPromptTokens < first[0].PromptTokens, $"{again.CachedPromptTokens} cached");
            using var fresh = Open();
            fresh.LoadJson(System.Text.Json.JsonSerializer.Serialize(sessions[0].Messages.Take(3)));
            Assert.Equal(again.Text, fresh.Send("And then?", NullEngineEvents.Instance, default).Text);
            // The newest session kept its cells: its next turn reuses them.
            var kept = sessions[^1].Send("And then?", NullEngineEvents.Instance, default);
            Assert.True(kept.CachedPromptTokens >= first[^1].PromptTokens, $"{kept.CachedPromptTokens} cached");
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
            ModelCache.Instance.Unload(path);
        }
    }

    [Fact]
    public void LlamaCppLogGoesToTheCallerWhoseWorkWroteIt()
    {
        var warm = FreshCopy("tiny");
        using var warmLease = Acquire(warm);
        Complete(warmLease, "Once"); // its context exists: later calls write no context log
        var cold = FreshCopy("tiny");
        var coldEvents = new Recorder();
        var warmEvents = new Recorder();
        using var coldLease = Acquire(cold, coldEvents);
        var a = Task.Factory.StartNew(() => Complete(coldLease, "Once upon a time", events: coldEvents), TaskCreationOptions.LongRunning);
        var b = Task.Factory.StartNew(() => Complete(warmLease, "Once upon a time", events: warmEvents), TaskCreationOptions.LongRunning);
        Task.WaitAll(a, b);
        Assert.Contains(coldEvents.Debug, l => l.StartsWith("llama.cpp: ") && l.Contains("n_ctx"));
        Assert.DoesNotContain(warmEvents.Debug.Concat(warmEvents.Verbose), l => l.StartsWith("llama.cpp: "));
        ModelCache.Instance.Unload(warm);
        ModelCache.Instance.Unload(cold);
    }

    [Fact]
    public void ImportOptionsBecomeTheModelsDefaultsAndALargerContextReplacesTheSmaller()
    {
        var path = FreshCopy("tiny");
        using var lease = Acquire(path);
        CompletionEngine.Prepare(lease, new ContextOptions { ContextSize = 64, Threads = 1 }, NullEngineEvents.Instance);
        Assert.Equal(64, lease.Describe().ContextSize);
        var r = CompletionEngine.Complete(lease, "Once", Greedy, new ContextOptions(), NullEngineEvents.Instance, default);
        Assert.Equal(64, r.ContextSize);
        Assert.Equal(1, r.Threads);
        var bigger = CompletionEngine.Complete(lease, "Once", Greedy, new ContextOptions { ContextSize = 512 }, NullEngineEvents.Instance, default);
        Assert.Equal(512, bigger.ContextSize);
        var described = lease.Describe();
        Assert.Equal(1, described.Contexts); // replaced, not piled up
        Assert.Equal(512, described.ContextSize);
        Assert.Equal(lease.Model.EstimateKvBytes(lease.Model.Scheduler.TotalCells), described.KvCacheBytes);
        ModelCache.Instance.Unload(path);
    }

    [Fact]
    public void TooManyThreadsAreWarnedAbout()
    {
        using var lease = Acquire(TestFiles.TinyModelPath);
        var events = new Recorder();
        CompletionEngine.Complete(lease, "Once", Greedy with { MaxTokens = 2 },
            new ContextOptions { ContextSize = 256, Threads = Environment.ProcessorCount + 1 }, events, default);
        Assert.Contains(events.Warnings, w => w.Contains("more than the") && w.Contains("cores"));
    }

    private sealed class Recorder : IEngineEvents
    {
        public Action? OnText, OnProgress;
        public ConcurrentQueue<string> Debug { get; } = new();
        public ConcurrentQueue<string> Verbose { get; } = new();
        public ConcurrentQueue<string> Warnings { get; } = new();
        public void Progress(string activity, string status, double fraction) => OnProgress?.Invoke();
        public void Text(string chunk) => OnText?.Invoke();
        void IEngineEvents.Verbose(string message) => Verbose.Enqueue(message);
        public void Warning(string message) => Warnings.Enqueue(message);
        void IEngineEvents.Debug(string message) => Debug.Enqueue(message);
    }
}
