using System.Diagnostics;
using LlmTools.Engine.Native;
using LLama.Native;

namespace LlmTools.Engine.Inference;

/// <summary>
/// The one owner of a loaded model's compute, as llama-server's slot loop but in-process: a long-lived thread holds
/// the model's context and is the only code that decodes, samples, creates or frees the context and moves KV cells.
/// Callers (cmdlets in any runspace, chat sessions, batched pipelines, the HTTP server) submit jobs and wait for
/// their results. Each step gathers one token of every generating sequence plus prompt chunks of new ones into one
/// batch, so concurrent callers are decoded together, and every decode runs on the same native thread (llama.cpp's
/// OpenMP backend keeps one thread team per calling thread; changing threads costs a third of generation speed).
/// </summary>
internal sealed class ModelScheduler
{
    /// <summary>Sequences one context holds at once (llama.cpp's n_seq_max); more callers wait their turn.</summary>
    internal const int SlotCount = 32;

    /// <summary>A context holds up to this many times the per-sequence size, for concurrent and cached sequences.</summary>
    private const int MaxSizeMultiple = 4;

    /// <summary>
    /// Finished sequences nobody keeps stay cached for a later call with the same prefix, but their cells widen the
    /// attention span (n_kv) of every decode after them and take room from new callers: after a burst of concurrent
    /// callers only the most recent few stay.
    /// </summary>
    internal const int IdleCachesKept = 2;

    private readonly LoadedModel _model;
    private readonly object _lock = new();
    private readonly Queue<object> _incoming = new(); // Job or Control, in arrival order
    private readonly List<Job> _waiting = [];
    private readonly List<Job> _active = [];
    private readonly Slot[] _slots = new Slot[SlotCount];
    private readonly AutoResetEvent _wake = new(false);
    private Thread? _thread;
    private SchedulerContext? _ctx;
    private bool _stopRequested;
    private bool _stopped;
    private long _clock;
    private volatile IReadOnlyList<Job> _decoding = [];

    public ModelScheduler(LoadedModel model)
    {
        _model = model;
        for (int i = 0; i < SlotCount; i++) _slots[i] = new Slot(i);
    }

    /// <summary>Test hook: a decode of these jobs fails as llama.cpp's does when this returns true.</summary>
    internal Func<IReadOnlyList<Job>, bool>? FailDecode { get; set; }

    /// <summary>Most sequences decoded together in one batch so far (a measure of batching across callers).</summary>
    public int PeakSequencesPerBatch { get; private set; }

    /// <summary>Sequences whose cells were given up for others (their owners evaluate again next time).</summary>
    public int Evictions { get; private set; }

    /// <summary>Per-sequence size of the context now held (0: none yet).</summary>
    public int ContextSize => _ctx?.SequenceSize ?? 0;

    /// <summary>Tokens the context's KV cache holds in all (0: none yet).</summary>
    public int TotalCells => _ctx?.TotalCells ?? 0;

    /// <summary>Bytes of KV cache the context takes now.</summary>
    public long KvBytes => _ctx is { } c ? _model.EstimateKvBytes(c.TotalCells) : 0;

    /// <summary>Generation jobs running now or waiting for a slot.</summary>
    public int Pending
    {
        get { lock (_lock) return _incoming.Count + _waiting.Count + _active.Count; }
    }

    // ---------------------------------------------------------------- submitting

    /// <summary>Runs <paramref name="job"/> and returns when it is done (or failed).</summary>
    public LlmCompletionResult Run(Job job)
    {
        Submit(job);
        try
        {
            return job.Done.Task.GetAwaiter().GetResult();
        }
        finally
        {
            job.Dispose();
        }
    }

    /// <summary>Queues a job; its <see cref="Job.Done"/> completes when it ends.</summary>
    public void Submit(Job job)
    {
        job.Registration = job.Cancel.Register(static j => ((Job)j!).Scheduler.OnCancelled((Job)j), job);
        lock (_lock)
        {
            if (_stopRequested) throw Unloaded();
            EnsureThread();
            _incoming.Enqueue(job);
        }
        _wake.Set();
    }

    /// <summary>Runs <paramref name="action"/> on the scheduler thread (between decodes) and returns its result.</summary>
    public T Invoke<T>(Func<T> action, IEngineEvents events)
    {
        var control = new Control(() => action()!, events);
        lock (_lock)
        {
            if (_stopRequested) throw Unloaded();
            EnsureThread();
            _incoming.Enqueue(control);
        }
        _wake.Set();
        return (T)control.Done.Task.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Stops the thread once the jobs under way have ended, then frees the context and calls <paramref name="after"/>
    /// (freeing the weights) on it. Jobs submitted later fail with ModelUnloaded.
    /// </summary>
    public void Stop(Action after)
    {
        lock (_lock)
        {
            if (_stopRequested) return;
            _stopRequested = true;
            if (_thread is null)
            {
                _stopped = true;
                after();
                return;
            }
            _afterStop = after;
        }
        _wake.Set();
    }

    private Action? _afterStop;
    private readonly List<IDisposable> _resources = [];

    /// <summary>
    /// Hands the scheduler a native resource made on its thread (an embeddings context, say): it is freed on that
    /// thread when the model is unloaded, before the weights. Call from inside <see cref="Invoke{T}"/>.
    /// </summary>
    public void Own(IDisposable resource) => _resources.Add(resource);

    private void EnsureThread()
    {
        if (_thread is not null) return;
        // A thread of its own, not the thread pool: llama.cpp's OpenMP team stays bound to it.
        _thread = new Thread(Loop) { IsBackground = true, Name = $"LlmTools scheduler: {_model.Info.Name}" };
        _thread.Start();
    }

    private void OnCancelled(Job job)
    {
        // Abort the decode under way when every sequence in it belongs to a caller that has given up.
        var decoding = _decoding;
        if (decoding.Count > 0 && decoding.Contains(job) && decoding.All(j => j.Cancel.IsCancellationRequested) && _ctx is { } ctx)
            ctx.AbortRequested = true;
        _wake.Set();
    }

    private LlmException Unloaded() => new("ModelUnloaded", LlmErrorKind.InvalidOperation,
        $"'{_model.Info.Path}' was removed from the session (Remove-LlmModel). Run the command again to load it.", _model.Info.Path);

    // ---------------------------------------------------------------- the loop

    private void Loop()
    {
        try
        {
            while (true)
            {
                List<object> arrived;
                lock (_lock)
                {
                    arrived = [.. _incoming];
                    _incoming.Clear();
                }
                foreach (var item in arrived)
                {
                    if (item is Job job) _waiting.Add(job);
                    else RunControl((Control)item);
                }
                bool stopping;
                lock (_lock) stopping = _stopRequested;
                if (stopping && _active.Count == 0)
                {
                    foreach (var job in _waiting) Fail(job, Unloaded());
                    _waiting.Clear();
                    lock (_lock) if (_incoming.Count > 0) continue;
                    break;
                }
                RetireCancelled();
                if (!stopping) Admit();
                Volatile.Write(ref _activeCount, _active.Count + _waiting.Count);
                if (_active.Count == 0)
                {
                    _wake.WaitOne(_waiting.Count > 0 ? 50 : Timeout.Infinite);
                    continue;
                }
                Step();
            }
        }
        catch (Exception e)
        {
            // A bug here must not leave callers waiting for ever.
            var error = new LlmException("SchedulerFailed", LlmErrorKind.InvalidOperation,
                $"The inference loop of '{_model.Info.Name}' failed: {e.Message}. Remove the model (Remove-LlmModel) and load it again.", _model.Info.Path, e);
            foreach (var job in _active.Concat(_waiting)) Fail(job, error);
            _active.Clear();
            _waiting.Clear();
            lock (_lock) _stopRequested = true;
        }
        finally
        {
            Shutdown();
        }
    }

    private void Shutdown()
    {
        List<object> left;
        lock (_lock)
        {
            left = [.. _incoming];
            _incoming.Clear();
            _stopped = true;
        }
        foreach (var item in left)
        {
            if (item is Job job) Fail(job, Unloaded());
            else ((Control)item).Done.TrySetException(Unloaded());
        }
        DropContext();
        foreach (var r in _resources) r.Dispose();
        _resources.Clear();
        Action? after;
        lock (_lock) after = _afterStop;
        after?.Invoke();
    }

    private void RunControl(Control control)
    {
        using var route = NativeRuntime.RouteLogTo(control.Events);
        try
        {
            control.Done.TrySetResult(control.Action());
        }
        catch (Exception e)
        {
            control.Done.TrySetException(e);
        }
    }

    // ---------------------------------------------------------------- admission

    /// <summary>Gives waiting jobs a sequence, in arrival order, while the context has room.</summary>
    private void Admit()
    {
        // Callers that gave up while waiting leave at once, wherever they are in the queue.
        foreach (var gone in _waiting.Where(j => j.Cancel.IsCancellationRequested).ToList())
        {
            _waiting.Remove(gone);
            gone.Sequence.Stop(LlmStopReason.Cancelled, gone.Events);
            Finish(gone);
        }
        while (_waiting.Count > 0)
        {
            var job = _waiting[0];
            if (job.Cancel.IsCancellationRequested)
            {
                _waiting.RemoveAt(0);
                job.Sequence.Stop(LlmStopReason.Cancelled, job.Events);
                Finish(job);
                continue;
            }
            try
            {
                if (!EnsureContext(job)) return;
                var slot = ChooseSlot(job);
                if (slot is null) return;
                if (!HasRoom(job, slot)) return;
                _waiting.RemoveAt(0);
                Start(job, slot);
            }
            catch (LlmException e)
            {
                _waiting.RemoveAt(0);
                Fail(job, e);
            }
        }
    }

    /// <summary>Makes sure a context with sequences of at least the job's size exists; false to wait.</summary>
    private bool EnsureContext(Job job)
    {
        if (_ctx is { } ctx && ctx.SequenceSize >= job.ContextSize) return true;
        if (_active.Count > 0) return false; // a larger context replaces this one once the jobs under way end
        using var route = NativeRuntime.RouteLogTo(job.Events);
        int size = Math.Max(job.ContextSize, _ctx?.SequenceSize ?? 0);
        if (_ctx is not null) job.Events.Verbose($"Replacing the context of {_ctx.SequenceSize} tokens per sequence by one of {size}.");
        DropContext();
        _ctx = CreateContext(size, job.Events);
        return true;
    }

    private void DropContext()
    {
        _ctx?.Dispose();
        _ctx = null;
        foreach (var slot in _slots) slot.Forget();
        lock (Live) Live.Remove(this);
    }

    // Schedulers holding a context, for the process-wide KV budget.
    private static readonly List<ModelScheduler> Live = [];
    private long _lastActive;

    /// <summary>
    /// Frees the contexts of other models, least recently used first and only those idle, until
    /// <paramref name="needed"/> more bytes of KV cache fit in half the memory. Their next call creates them again.
    /// </summary>
    private void MakeRoomAcrossModels(long needed, long available, IEngineEvents events)
    {
        List<ModelScheduler> others;
        lock (Live) others = Live.Where(s => s != this).OrderBy(s => Volatile.Read(ref s._lastActive)).ToList();
        long held = others.Sum(s => s.KvBytes);
        foreach (var other in others)
        {
            if (held + needed <= available / 2) break;
            if (Volatile.Read(ref other._activeCount) > 0) continue;
            events.Verbose($"Freeing the idle context of '{other._model.Info.Name}' ({other.KvBytes / (1 << 20)} MiB) to make room.");
            held -= other.KvBytes;
            other.DropWhenIdle();
        }
    }

    /// <summary>Asks the scheduler to free its context if no job uses it (nobody waits for the answer).</summary>
    private void DropWhenIdle()
    {
        lock (_lock)
        {
            if (_stopRequested || _thread is null) return;
            _incoming.Enqueue(new Control(() =>
            {
                if (_active.Count == 0 && _waiting.Count == 0) DropContext();
                return 0;
            }, NullEngineEvents.Instance));
        }
        _wake.Set();
    }

    private int _activeCount;

    private SchedulerContext CreateContext(int sequenceSize, IEngineEvents events)
    {
        long perSequence = _model.EstimateKvBytes(sequenceSize);
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (perSequence > available / 2)
            throw new LlmException("ContextTooLarge", LlmErrorKind.LimitsExceeded,
                $"A context of {sequenceSize} tokens needs about {perSequence / (1 << 20)} MiB of KV cache, more than half of the " +
                $"{available / (1 << 20)} MiB this machine has. Use a smaller -ContextSize.", sequenceSize);
        // Room for concurrent and cached sequences besides one full-size one, within a quarter of the memory and
        // (beyond the first) 1 GiB: the KV cache is allocated up front.
        long cap = Math.Min(available / 4, Math.Max(perSequence, 1L << 30));
        int multiple = MaxSizeMultiple;
        while (multiple > 1 && perSequence * multiple > cap) multiple--;
        int total = checked(sequenceSize * multiple);
        MakeRoomAcrossModels(_model.EstimateKvBytes(total), available, events);
        events.Verbose($"Creating a context of {total} tokens ({multiple} x {sequenceSize}; {_model.EstimateKvBytes(total) / 1024} KiB KV cache) " +
                       $"for up to {SlotCount} sequences.");
        var ctx = new SchedulerContext(_model, sequenceSize, total, SlotCount);
        lock (Live) Live.Add(this);
        return ctx;
    }

    /// <summary>The slot a job runs in: its chat session's, else a free one holding the longest common prefix.</summary>
    private Slot? ChooseSlot(Job job)
    {
        if (job.Session is { } session)
        {
            if (session.Slot is { } own && own.Owner == session)
            {
                if (own.Job is not null)
                    throw new LlmException("ChatSessionBusy", LlmErrorKind.ResourceBusy, "This chat session's sequence is answering another message.");
                return own;
            }
            session.Slot = null;
        }
        Slot? best = null;
        int bestMatch = -1;
        foreach (var slot in _slots)
        {
            if (slot.Job is not null || slot.Owner is not null) continue;
            int match = CommonPrefix(slot.Cached, job.Sequence.Tokens);
            if (match > bestMatch || (match == bestMatch && slot.LastUsed < best!.LastUsed))
            {
                best = slot;
                bestMatch = match;
            }
        }
        if (best is not null) return best;
        // Every slot is busy or kept by a session or prefix: the least recently used idle one gives its sequence up
        // (its owner evaluates again next time).
        var idle = _slots.Where(s => s.Job is null && s.Owner is not null).MinBy(s => s.LastUsed);
        if (idle is null) return null;
        Evict(idle);
        return idle;
    }

    /// <summary>Whether the KV cache has room for the job; frees cached sequences (least recently used first) to make it.</summary>
    private bool HasRoom(Job job, Slot slot)
    {
        var ctx = _ctx!;
        while (true)
        {
            long used = 0;
            foreach (var s in _slots)
            {
                if (s == slot) continue;
                used += s.Cached.Count + (s.Job is { } j ? j.Reserve(ctx.SequenceSize) : 0);
            }
            if (used + job.Reserve(ctx.SequenceSize) <= ctx.TotalCells) return true;
            var victim = _slots.Where(s => s != slot && s.Job is null && s.Cached.Count > 0)
                .OrderBy(s => s.Owner is null ? 0 : 1).ThenBy(s => s.LastUsed).FirstOrDefault();
            if (victim is null) return _active.Count == 0; // only jobs under way use the room: wait for them
            Evict(victim);
        }
    }

    private void Evict(Slot slot)
    {
        if (slot.Cached.Count > 0) Evictions++;
        ClearCells(slot);
        if (slot.Owner is { } owner)
        {
            owner.Slot = null;
            slot.Owner = null;
        }
    }

    /// <summary>Puts the job in its slot, sharing the longest prefix any sequence holds, and starts it.</summary>
    private void Start(Job job, Slot slot)
    {
        var ctx = _ctx!;
        var tokens = job.Sequence.Tokens;
        // The last prompt token is always evaluated, for its logits; a prefill-only job needs none.
        int limit = job.PrefillOnly ? tokens.Length : tokens.Length - 1;
        int reuse = 0;
        if (!_model.Handle.IsRecurrent)
        {
            int own = Math.Min(CommonPrefix(slot.Cached, tokens), limit);
            Slot? source = null;
            int shared = own;
            foreach (var other in _slots)
            {
                if (other == slot) continue;
                int m = Math.Min(CommonPrefix(other.CachedForSharing(), tokens), limit);
                if (m > shared) { shared = m; source = other; }
            }
            if (source is not null && shared > own)
            {
                ClearCells(slot);
                ctx.Handle.MemorySequenceCopy(source.SeqId, slot.SeqId, 0, shared);
                slot.Cached.AddRange(tokens.AsSpan(0, shared));
                reuse = shared;
            }
            else if (TryTruncate(slot, own))
            {
                reuse = own;
            }
        }
        else ClearCells(slot);
        if (reuse == 0) ClearCells(slot);
        job.Sequence.Reused = reuse;
        job.Evaluated = reuse;
        job.Slot = slot;
        slot.Job = job;
        slot.LastUsed = ++_clock;
        if (job.Session is { } session)
        {
            slot.Owner = session;
            session.Slot = slot;
        }
        if (job.PinPrefix is { } pin)
        {
            slot.Owner = pin;
            pin.Slot = slot;
        }
        _active.Add(job);
        if (job.PrefillOnly && job.Evaluated >= tokens.Length) FinishPrefill(job);
    }

    /// <summary>Keeps the first <paramref name="keep"/> cells of the slot's sequence; false when the memory refuses.</summary>
    private bool TryTruncate(Slot slot, int keep)
    {
        if (keep >= slot.Cached.Count) return true;
        // Memories that cannot remove part of a sequence (recurrent state) say so: then it is evaluated again.
        if (!_ctx!.RemoveCells(slot.SeqId, keep))
        {
            ClearCells(slot);
            return false;
        }
        slot.Cached.RemoveRange(keep, slot.Cached.Count - keep);
        return true;
    }

    /// <summary>Sequences that hold cells with no job, session or prefix keeping them (tests; runs on the scheduler thread).</summary>
    internal int IdleCachedSequences() =>
        Invoke(() => _slots.Count(s => s.Job is null && s.Owner is null && s.Cached.Count > 0), NullEngineEvents.Instance);

    /// <summary>Frees the cells of all but the most recently used sequences that no job, session or prefix holds.</summary>
    private void TrimIdleCaches()
    {
        foreach (var slot in _slots.Where(s => s.Job is null && s.Owner is null && s.Cached.Count > 0)
                     .OrderByDescending(s => s.LastUsed).Skip(IdleCachesKept).ToList())
            ClearCells(slot);
    }

    private void ClearCells(Slot slot)
    {
        if (slot.Cached.Count > 0 || slot.Dirty) _ctx?.RemoveCells(slot.SeqId, 0);
        slot.Cached.Clear();
        slot.Dirty = false;
    }

    private static int CommonPrefix(List<LLamaToken> cached, LLamaToken[] tokens)
    {
        int n = Math.Min(cached.Count, tokens.Length), i = 0;
        while (i < n && cached[i] == tokens[i]) i++;
        return i;
    }

    // ---------------------------------------------------------------- one step

    private readonly record struct Entry(Job Job, LLamaToken Token, int Position, bool Logits, bool Generated);

    private void Step()
    {
        var ctx = _ctx!;
        Volatile.Write(ref _lastActive, Environment.TickCount64);
        var entries = new List<Entry>();
        int budget = ctx.BatchSize;
        // Generating sequences first (one token each), then chunks of prompts with what the batch has left.
        foreach (var job in _active)
        {
            if (job.Pending is not { } token) continue;
            entries.Add(new Entry(job, token, job.Sequence.Position, true, true));
            budget--;
        }
        foreach (var job in _active)
        {
            if (budget <= 0) break;
            var tokens = job.Sequence.Tokens;
            if (job.Pending is not null || job.Evaluated >= tokens.Length) continue;
            int take = Math.Min(tokens.Length - job.Evaluated, budget);
            for (int i = job.Evaluated; i < job.Evaluated + take; i++)
                entries.Add(new Entry(job, tokens[i], i, !job.PrefillOnly && i == tokens.Length - 1, false));
            budget -= take;
        }
        if (entries.Count == 0) return;
        ctx.SetThreads(entries.Max(e => e.Job.Threads));
        Decode(entries);
        ReportPromptProgress(entries);
    }

    /// <summary>Decodes entries; a failed batch is halved and retried, and only the sequences that fail alone fail.</summary>
    private void Decode(List<Entry> entries)
    {
        var ctx = _ctx!;
        var jobs = entries.Select(e => e.Job).Distinct().ToList();
        var batch = ctx.Batch;
        batch.Clear();
        var logitIndex = new int[entries.Count];
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            logitIndex[i] = batch.Add(e.Token, e.Position, e.Job.Slot!.SeqId, e.Logits);
        }
        ctx.AbortRequested = jobs.All(j => j.Cancel.IsCancellationRequested);
        _decoding = jobs;
        PeakSequencesPerBatch = Math.Max(PeakSequencesPerBatch, jobs.Count);
        DecodeResult result;
        var injected = FailDecode;
        using (NativeRuntime.RouteLogTo(jobs.Count == 1 ? jobs[0].Events : new FanOut(jobs)))
        {
            result = injected is not null && injected(jobs)
                ? DecodeResult.DecodeFailed
                : ctx.Handle.Decode(batch);
        }
        _decoding = [];
        ctx.AbortRequested = false;
        if (result == DecodeResult.Ok)
        {
            Accept(entries, logitIndex);
            return;
        }
        // The cells this batch may have written are unknown now: remove them from every sequence in it.
        foreach (var job in jobs)
        {
            int from = entries.Where(e => e.Job == job).Min(e => e.Position);
            RollBack(job, from);
        }
        foreach (var job in jobs.Where(j => j.Broken).ToList())
        {
            Fail(job, DecodeFailed(result));
            jobs.Remove(job);
            entries.RemoveAll(e => e.Job == job);
        }
        if (jobs.Count == 0) return;
        if (result == DecodeResult.ComputeAborted || jobs.All(j => j.Cancel.IsCancellationRequested))
        {
            foreach (var job in jobs) job.Sequence.Stop(LlmStopReason.Cancelled, job.Events);
            foreach (var job in jobs) Finish(job);
            return;
        }
        if (entries.Count > 1 && jobs.Count > 1)
        {
            // Halve by sequence, so each half keeps whole sequences in order.
            int half = jobs.Count / 2;
            var first = jobs.Take(half).ToHashSet();
            Decode(entries.Where(e => first.Contains(e.Job)).ToList());
            Decode(entries.Where(e => !first.Contains(e.Job) && _active.Contains(e.Job)).ToList());
            return;
        }
        if (entries.Count > 1)
        {
            // One sequence's prompt chunk: try it in halves before giving up.
            int half = entries.Count / 2;
            var job = jobs[0];
            Decode(entries.Take(half).ToList());
            if (_active.Contains(job) && job.Evaluated == entries[half].Position)
                Decode(entries.Skip(half).ToList());
            return;
        }
        Fail(jobs[0], DecodeFailed(result));
    }

    private LlmException DecodeFailed(DecodeResult result) =>
        new("DecodeFailed", result == DecodeResult.NoKvSlot ? LlmErrorKind.LimitsExceeded : LlmErrorKind.InvalidOperation,
            $"llama.cpp failed to evaluate this sequence ({result}). Run with -Verbose for llama.cpp's messages; a smaller -ContextSize or fewer " +
            "concurrent requests may help.", _model.Info.Path);

    private void RollBack(Job job, int from)
    {
        var slot = job.Slot!;
        if (_ctx!.RemoveCells(slot.SeqId, from))
        {
            if (slot.Cached.Count > from) slot.Cached.RemoveRange(from, slot.Cached.Count - from);
            return;
        }
        // The memory cannot drop part of a sequence (recurrent state): start over where nothing generated depends on it.
        ClearCells(slot);
        if (job.Sequence.CompletionTokens == 0 && job.Pending is null)
        {
            job.Evaluated = 0;
            job.Sequence.Reused = 0;
        }
        else job.Broken = true;
    }

    private void Accept(List<Entry> entries, int[] logitIndex)
    {
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            var job = e.Job;
            job.Slot!.Cached.Add(e.Token);
            if (e.Generated)
            {
                job.Pending = null;
                job.Sequence.Position = e.Position + 1;
            }
            else job.Evaluated = e.Position + 1;
        }
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            var job = e.Job;
            if (job.PrefillOnly && !e.Generated && job.Evaluated >= job.Sequence.Tokens.Length && _active.Contains(job))
            {
                FinishPrefill(job);
                continue;
            }
            if (!e.Logits) continue;
            if (!e.Generated) job.Sequence.PromptEvaluated();
            if (job.Cancel.IsCancellationRequested)
            {
                job.Sequence.Stop(LlmStopReason.Cancelled, job.Events);
                Finish(job);
                continue;
            }
            try
            {
                var token = job.Sequence.Sample(_ctx!.Handle, logitIndex[i]);
                if (job.Sequence.Accept(token, job.Events)) job.Pending = token;
                else Finish(job);
            }
            catch (LlmException error)
            {
                Fail(job, error); // a grammar with no way on, say: this sequence only
            }
        }
    }

    private void ReportPromptProgress(List<Entry> entries)
    {
        foreach (var job in entries.Where(e => !e.Generated).Select(e => e.Job).Distinct())
        {
            int total = job.Sequence.Tokens.Length, done = job.Evaluated, evaluated = total - job.Sequence.Reused;
            if (evaluated <= _ctx!.BatchSize || !_active.Contains(job)) continue;
            if (done < total) job.Events.Progress("Reading prompt", $"{done} of {total} tokens", (double)done / total);
            else job.Events.Progress("Reading prompt", "done", -1);
        }
    }

    // ---------------------------------------------------------------- ending jobs

    private void RetireCancelled()
    {
        foreach (var job in _active.Where(j => j.Cancel.IsCancellationRequested).ToList())
        {
            job.Sequence.Stop(LlmStopReason.Cancelled, job.Events);
            Finish(job);
        }
    }

    private void FinishPrefill(Job job)
    {
        job.Slot!.LastUsed = ++_clock;
        _active.Remove(job);
        job.Slot.Job = null;
        job.Done.TrySetResult(job.Sequence.ToResult(job.ContextSize, job.Threads));
    }

    private void Finish(Job job)
    {
        _active.Remove(job);
        if (job.Slot is { } slot)
        {
            slot.Job = null;
            slot.LastUsed = ++_clock;
            if (job.Broken) ClearCells(slot);
            TrimIdleCaches();
        }
        try
        {
            job.Done.TrySetResult(job.Sequence.ToResult(job.ContextSize, job.Threads));
        }
        catch (Exception e)
        {
            job.Done.TrySetException(e);
        }
    }

    private void Fail(Job job, LlmException error)
    {
        _active.Remove(job);
        if (job.Slot is { } slot)
        {
            slot.Job = null;
            ClearCells(slot);
        }
        job.Done.TrySetException(error);
    }

    // ---------------------------------------------------------------- sequences kept between jobs

    /// <summary>Forgets the cells a session or prefix keeps (on the scheduler thread).</summary>
    public void Release(SequenceOwner owner, IEngineEvents events)
    {
        bool stopped;
        lock (_lock) stopped = _stopRequested || _stopped;
        if (stopped) return;
        try
        {
            Invoke(() =>
            {
                if (owner.Slot is { } slot && slot.Owner == owner)
                {
                    slot.Owner = null;
                    if (owner.ForgetOnRelease) ClearCells(slot);
                    else TrimIdleCaches();
                }
                owner.Slot = null;
                return 0;
            }, events);
        }
        catch (LlmException) { /* unloaded meanwhile: nothing is kept */ }
    }

    /// <summary>Forgets the cells a session keeps but keeps the session's claim (the conversation starts over).</summary>
    public void Clear(SequenceOwner owner, IEngineEvents events) => Invoke(() =>
    {
        if (owner.Slot is { } slot && slot.Owner == owner && slot.Job is null) ClearCells(slot);
        return 0;
    }, events);

    /// <summary>Creates the context now (Import-LlmModel), so the first completion does not pay for it.</summary>
    public void Prepare(int sequenceSize, IEngineEvents events) => Invoke(() =>
    {
        if (_ctx is null || _ctx.SequenceSize < sequenceSize)
        {
            if (_active.Count > 0) return 0;
            DropContext();
            _ctx = CreateContext(sequenceSize, events);
        }
        return 0;
    }, events);

    // ---------------------------------------------------------------- types

    internal sealed class Slot(int index)
    {
        public LLamaSeqId SeqId { get; } = (LLamaSeqId)index;
        /// <summary>Tokens whose KV state this sequence holds, by position.</summary>
        public List<LLamaToken> Cached { get; } = [];
        public Job? Job;
        /// <summary>A chat session or a pinned prefix that keeps this sequence between jobs.</summary>
        public SequenceOwner? Owner;
        public long LastUsed;
        /// <summary>Cells may exist that <see cref="Cached"/> does not list (after a failed decode).</summary>
        public bool Dirty;

        /// <summary>Tokens other sequences may share: a running job's prompt cells are complete only up to what is evaluated.</summary>
        public List<LLamaToken> CachedForSharing() => Cached;

        public void Forget()
        {
            Cached.Clear();
            Dirty = false;
            if (Owner is { } o) o.Slot = null;
            Owner = null;
        }
    }

    /// <summary>What keeps a sequence's cells between jobs: a chat session, or a prefix shared by a batch.</summary>
    internal sealed class SequenceOwner(bool forgetOnRelease)
    {
        public Slot? Slot;
        public bool ForgetOnRelease { get; } = forgetOnRelease;
    }

    /// <summary>One generation (or a prefill) submitted by a caller.</summary>
    internal sealed class Job(ModelScheduler scheduler, Sequence sequence, int contextSize, int threads, IEngineEvents events, CancellationToken cancel)
        : IDisposable
    {
        public ModelScheduler Scheduler { get; } = scheduler;
        public Sequence Sequence { get; } = sequence;
        public int ContextSize { get; } = contextSize;
        public int Threads { get; } = threads;
        public IEngineEvents Events { get; } = events;
        public CancellationToken Cancel { get; } = cancel;
        public TaskCompletionSource<LlmCompletionResult> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public SequenceOwner? Session { get; init; }
        /// <summary>Evaluate the prompt only (a shared prefix) and keep the sequence for this owner.</summary>
        public SequenceOwner? PinPrefix { get; init; }
        public bool PrefillOnly => PinPrefix is not null;
        public CancellationTokenRegistration Registration;
        public Slot? Slot;
        public int Evaluated;
        public LLamaToken? Pending;
        public bool Broken;

        /// <summary>Cells this job may still add: the rest of its prompt and of its new tokens, within its context.</summary>
        public int Reserve(int sequenceSize)
        {
            int prompt = Sequence.Tokens.Length;
            int already = Slot?.Cached.Count ?? Math.Max(0, Evaluated);
            int max = Math.Min(sequenceSize, PrefillOnly ? prompt : prompt + Sequence.MaxNewTokens);
            return Math.Max(0, max - already);
        }

        public void Dispose()
        {
            Registration.Dispose();
            Sequence.Dispose();
        }
    }

    private sealed class Control(Func<object> action, IEngineEvents events)
    {
        public Func<object> Action { get; } = action;
        public IEngineEvents Events { get; } = events;
        public TaskCompletionSource<object> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>llama.cpp's log of a decode shared by several callers goes to each of them.</summary>
    private sealed class FanOut(List<Job> jobs) : IEngineEvents
    {
        public void Progress(string activity, string status, double fraction) { }
        public void Text(string chunk) { }
        public void Verbose(string message) { foreach (var j in jobs) j.Events.Verbose(message); }
        public void Warning(string message) { foreach (var j in jobs) j.Events.Warning(message); }
        public void Debug(string message) { foreach (var j in jobs) j.Events.Debug(message); }
    }
}
