using System.Collections.Concurrent;
using System.Diagnostics;
using LlmTools.Engine.Gguf;
using LlmTools.Engine.Inference;
using LlmTools.Engine.Native;
using LLama.Native;

namespace LlmTools.Engine;

/// <summary>
/// The process-wide cache of loaded models. Loading costs seconds to minutes on real sizes, so a model is loaded once
/// per process and shared by every pipeline and runspace until it is unloaded. Keyed by the file (path, size, time
/// written) and the options that change the loaded weights.
/// </summary>
public sealed class ModelCache
{
    public static ModelCache Instance { get; } = new();

    private readonly ConcurrentDictionary<CacheKey, Entry> _entries = new();

    private readonly record struct FileIdentity(string Path, long Length, long WriteTicks);
    private readonly record struct CacheKey(FileIdentity File, int GpuLayers, bool VocabularyOnly);

    private sealed class Entry
    {
        public readonly SemaphoreSlim Gate = new(1, 1);
        public LoadedModel? Model;
        /// <summary>Cancelled by Remove-LlmModel, so a load under way stops instead of leaving an orphan.</summary>
        public readonly CancellationTokenSource Removed = new();
    }

    // Models removed while calls or chat sessions still use them: listed as Unloading until they are freed.
    private readonly List<LoadedModel> _unloading = [];

    /// <summary>
    /// Returns the model, loading it first when it is not in the cache. Dispose the lease when the call is done;
    /// a model unloaded meanwhile is freed then.
    /// </summary>
    public ModelLease Acquire(string path, ModelLoadOptions options, IEngineEvents events, CancellationToken cancel)
    {
        var identity = Identify(path);
        int gpuLayers = options.GpuLayers ?? -1;
        if (gpuLayers < -1)
            throw new LlmException("GpuLayersOutOfRange", LlmErrorKind.InvalidArgument,
                $"GpuLayers {gpuLayers} is out of range: use 0 (CPU only) or more; leave it out to offload all layers when a GPU is available.", gpuLayers);
        if (!options.VocabularyOnly)
        {
            NativeRuntime.EnsureLoaded();
            if (!NativeRuntime.Backend.GpuOffloadSupported)
            {
                // The weights would be the same: one copy, not a second load that differs only in a number.
                if (gpuLayers > 0)
                    events.Warning($"-GpuLayers {gpuLayers} has no effect: the llama.cpp library in use ({NativeRuntime.Backend.Variant}) cannot offload to a GPU.");
                gpuLayers = 0;
            }
        }
        var key = new CacheKey(identity, gpuLayers, options.VocabularyOnly);
        while (true)
        {
            var entry = _entries.GetOrAdd(key, _ => new Entry());
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancel, entry.Removed.Token);
            try
            {
                entry.Gate.Wait(linked.Token);
            }
            catch (OperationCanceledException)
            {
                if (cancel.IsCancellationRequested) throw Cancelled(path);
                continue; // removed while this call waited: a new entry loads it again
            }
            try
            {
                if (entry.Removed.IsCancellationRequested) continue;
                if (entry.Model is { } cached && cached.TryAddCall())
                    return new ModelLease(cached, fromCache: true);
                LoadedModel model;
                try
                {
                    model = Load(identity.Path, gpuLayers, options.VocabularyOnly, events, linked.Token);
                }
                catch (LlmException e) when (e.ErrorId == "OperationCancelled" && entry.Removed.IsCancellationRequested && !cancel.IsCancellationRequested)
                {
                    throw new LlmException("ModelRemovedWhileLoading", LlmErrorKind.OperationStopped,
                        $"'{identity.Path}' was removed (Remove-LlmModel) while it was loading.", identity.Path);
                }
                if (entry.Removed.IsCancellationRequested)
                {
                    model.Unload();
                    throw new LlmException("ModelRemovedWhileLoading", LlmErrorKind.OperationStopped,
                        $"'{identity.Path}' was removed (Remove-LlmModel) while it was loading.", identity.Path);
                }
                model.TryAddCall();
                entry.Model = model;
                return new ModelLease(model, fromCache: false);
            }
            finally
            {
                entry.Gate.Release();
            }
        }
    }

    /// <summary>A model able to tokenize: any loaded variant of the file, else its vocabulary alone (fast to load).</summary>
    public ModelLease AcquireTokenizer(string path, IEngineEvents events, CancellationToken cancel)
    {
        var identity = Identify(path);
        foreach (var (key, entry) in _entries)
            if (key.File == identity && entry.Model is { } m && m.TryAddCall())
                return new ModelLease(m, fromCache: true);
        return Acquire(path, new ModelLoadOptions { VocabularyOnly = true, GpuLayers = 0 }, events, cancel);
    }

    /// <summary>The models loaded now.</summary>
    /// <remarks>A model removed while calls or chat sessions still use it is listed with Status Unloading until it is freed.</remarks>
    public IReadOnlyList<LlmLoadedModel> List()
    {
        List<LoadedModel> unloading;
        lock (_unloading)
        {
            _unloading.RemoveAll(m => m.IsDisposed);
            unloading = [.. _unloading];
        }
        return _entries.Values.Select(e => e.Model).Where(m => m is { IsUnloaded: false }).Select(m => m!)
            .Concat(unloading).Distinct().Select(m => m.Describe()).OrderBy(m => m.LoadedAt).ToList();
    }

    // Import-LlmModel -KeepAlive (Ollama's keep_alive): a model not used for that long is unloaded. Keyed by full path.
    private readonly ConcurrentDictionary<string, KeepAlive> _keepAlive = new(StringComparer.Ordinal);

    private sealed class KeepAlive(TimeSpan idle)
    {
        public readonly TimeSpan Idle = idle;
        public Timer? Timer;
    }

    /// <summary>
    /// Unloads the model at <paramref name="path"/> once no call has used it for <paramref name="idle"/> (null: never,
    /// the default). Each lease taken or returned starts the wait again; a model in use is never unloaded by this.
    /// </summary>
    public void SetKeepAlive(string path, TimeSpan? idle)
    {
        var full = Path.GetFullPath(path);
        if (_keepAlive.TryRemove(full, out var old)) old.Timer?.Dispose();
        if (idle is not { } t || t == Timeout.InfiniteTimeSpan) return;
        var k = new KeepAlive(t);
        k.Timer = new Timer(_ => Expire(full, k), null, Timeout.Infinite, Timeout.Infinite);
        _keepAlive[full] = k;
        k.Timer.Change(t, Timeout.InfiniteTimeSpan);
    }

    /// <summary>A lease of the model was taken or returned: its idle time starts again.</summary>
    internal void MarkActivity(string path)
    {
        if (_keepAlive.IsEmpty) return;
        if (_keepAlive.TryGetValue(Path.GetFullPath(path), out var k))
            try { k.Timer?.Change(k.Idle, Timeout.InfiniteTimeSpan); } catch (ObjectDisposedException) { }
    }

    private void Expire(string full, KeepAlive k)
    {
        bool inUse = _entries.Any(e => string.Equals(e.Key.File.Path, full, StringComparison.Ordinal) && e.Value.Model is { ActiveCalls: > 0 });
        if (inUse)
        {
            // Still used: look again after another idle period (the lease's return re-arms it too).
            try { k.Timer?.Change(k.Idle, Timeout.InfiniteTimeSpan); } catch (ObjectDisposedException) { }
            return;
        }
        if (!_keepAlive.TryRemove(new KeyValuePair<string, KeepAlive>(full, k))) return;
        k.Timer?.Dispose();
        try { Unload(full); } catch (Exception) { /* a timer thread has no one to report to; the model stays listed */ }
    }

    /// <summary>Unloads every cached variant of the file at <paramref name="path"/>. Returns how many were unloaded.</summary>
    public int Unload(string path)
    {
        var full = Path.GetFullPath(path);
        int n = 0;
        foreach (var (key, entry) in _entries)
        {
            if (!string.Equals(key.File.Path, full, StringComparison.Ordinal)) continue;
            if (!_entries.TryRemove(key, out _)) continue;
            // A load under way stops; waiting for the gate makes sure it cannot leave a copy behind.
            entry.Removed.Cancel();
            entry.Gate.Wait();
            try
            {
                if (entry.Model is { IsUnloaded: false } m)
                {
                    Retire(m);
                    n++;
                }
            }
            finally
            {
                entry.Gate.Release();
            }
        }
        return n;
    }

    /// <summary>Unloads everything (the module is being removed).</summary>
    public void UnloadAll()
    {
        foreach (var key in _entries.Keys.ToList())
            if (_entries.TryRemove(key, out var entry))
            {
                entry.Removed.Cancel();
                entry.Gate.Wait();
                try
                {
                    if (entry.Model is { } m) Retire(m);
                }
                finally
                {
                    entry.Gate.Release();
                }
            }
    }

    private void Retire(LoadedModel model)
    {
        model.Unload();
        if (!model.IsDisposed)
            lock (_unloading) _unloading.Add(model);
    }

    private static FileIdentity Identify(string path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new LlmException("ModelNotSpecified", LlmErrorKind.InvalidArgument, "No model was given: pass -Model with the path of a .gguf file.");
        var full = Path.GetFullPath(path);
        var fi = new FileInfo(full);
        if (!fi.Exists)
        {
            if (Directory.Exists(full))
                throw new LlmException("ModelPathIsDirectory", LlmErrorKind.InvalidArgument,
                    $"'{full}' is a folder; give the path of a .gguf file inside it (Get-LlmModel -Path '{full}' lists them).", full);
            throw new LlmException("ModelFileNotFound", LlmErrorKind.ObjectNotFound,
                $"Model file '{full}' does not exist. Check the path, or list the models on disk with Get-LlmModel -ListAvailable.", full);
        }
        return new FileIdentity(full, fi.Length, fi.LastWriteTimeUtc.Ticks);
    }

    private static LoadedModel Load(string path, int gpuLayers, bool vocabOnly, IEngineEvents events, CancellationToken cancel)
    {
        // Managed validation first: llama.cpp aborts the whole process on some malformed files.
        var file = ModelInfoReader.ReadValidated(path);
        if (!vocabOnly) GgufValidator.RequireWeights(file);
        var info = ModelInfoReader.FromGguf(file);
        NativeRuntime.EnsureLoaded();

        int layers = gpuLayers >= 0 ? gpuLayers : NativeRuntime.Backend.GpuOffloadSupported ? 999 : 0;
        string activity = $"Loading {info.Name}";
        events.Verbose($"Loading '{path}' ({info.SizeBytes / (1 << 20)} MiB, {info.FileType}, {layers} GPU layers{(vocabOnly ? ", vocabulary only" : "")}).");
        var p = LLamaModelParams.Default();
        p.n_gpu_layers = layers;
        p.vocab_only = vocabOnly;
        p.load_mode = LLamaLoadMode.MemoryMap; // llama.cpp's default: map the file, don't copy it
        LlamaProgressCallback progress = (fraction, _) =>
        {
            events.Progress(activity, $"{fraction:P0} of {info.SizeBytes / (1 << 20)} MiB", fraction);
            return !cancel.IsCancellationRequested;
        };
        p.progress_callback = progress;
        var sw = Stopwatch.StartNew();
        SafeLlamaModelHandle handle;
        using var route = NativeRuntime.RouteLogTo(events);
        try
        {
            handle = SafeLlamaModelHandle.LoadFromFile(path, p);
        }
        catch (Exception e)
        {
            if (cancel.IsCancellationRequested) throw Cancelled(path);
            throw new LlmException("ModelLoadFailed", LlmErrorKind.InvalidData,
                $"llama.cpp could not load '{path}': {e.Message}. Run with -Verbose to see llama.cpp's own messages.", path, e);
        }
        finally
        {
            GC.KeepAlive(progress);
            events.Progress(activity, "done", -1);
        }
        sw.Stop();
        events.Verbose($"Loaded '{info.Name}' in {sw.Elapsed.TotalMilliseconds:F0} ms.");
        return new LoadedModel(info, handle, layers, vocabOnly, sw.Elapsed);
    }

    private static LlmException Cancelled(string path) =>
        new("OperationCancelled", LlmErrorKind.OperationStopped, $"Loading '{path}' was cancelled.", path);
}

/// <summary>A model in use by one call; dispose it when the call ends.</summary>
public sealed class ModelLease : IDisposable
{
    private int _disposed;

    internal ModelLease(LoadedModel model, bool fromCache)
    {
        Model = model;
        FromCache = fromCache;
        ModelCache.Instance.MarkActivity(model.Info.Path);
    }

    internal LoadedModel Model { get; }
    public LlmModelInfo Info => Model.Info;
    public bool FromCache { get; }
    private int _loadReported;

    /// <summary>Time this call spent loading: zero when the model came from the cache.</summary>
    public TimeSpan LoadDuration => FromCache ? TimeSpan.Zero : Model.LoadDuration;

    /// <summary>The load time for the first result made with this lease, zero for every later one: a load is paid once.</summary>
    public TimeSpan TakeLoadDuration() => Interlocked.Exchange(ref _loadReported, 1) == 0 ? LoadDuration : TimeSpan.Zero;

    /// <summary>The cached model as the session lists it.</summary>
    public LlmLoadedModel Describe() => Model.Describe();

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Model.ReleaseCall();
            ModelCache.Instance.MarkActivity(Model.Info.Path);
        }
        GC.SuppressFinalize(this);
    }

    // A lease a script dropped (a chat session never disposed, say) must not keep an unloaded model in memory for
    // ever. Only a counter changes here: the session's context is not handed back, since its native handle may
    // already be finalized in the same collection.
    ~ModelLease()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) Model.ReleaseCall();
    }
}
