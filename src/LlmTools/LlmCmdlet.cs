using System.Collections.Concurrent;
using System.Management.Automation;
using LlmTools.Engine.Native;

namespace LlmTools;

/// <summary>
/// Base of every LlmTools cmdlet: Ctrl+C cancels the work, engine work runs on a worker thread while the pipeline
/// thread replays what it reports (progress, streamed text, llama.cpp's log) — PowerShell's streams are only ever
/// written from the pipeline thread — and engine failures become ErrorRecords with stable ids.
/// </summary>
public abstract class LlmCmdlet : PSCmdlet, IDisposable
{
    private readonly CancellationTokenSource _cancel = new();
    private int _progressId;

    protected CancellationToken Cancellation => _cancel.Token;

    protected override void StopProcessing() => _cancel.Cancel();

    public void Dispose()
    {
        DisposeResources();
        _cancel.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees what the call holds (model leases, contexts); runs also when the pipeline is stopped.</summary>
    protected virtual void DisposeResources() { }

    private EventPump? _pump;

    /// <summary>
    /// What the engine reports for this command, from any thread; replayed on the pipeline thread by
    /// <see cref="RunEngine{T}"/> and <see cref="WriteQueuedEvents"/>. One per command, so work the engine still does
    /// for it between two calls (a batch in flight) reports here too.
    /// </summary>
    protected IEngineEvents EngineEvents => _pump ??= new EventPump();

    /// <summary>Runs <paramref name="work"/> on a worker thread and writes what it reports here until it ends.</summary>
    /// <remarks>
    /// When a write fails (a stopped pipeline, -WarningAction Stop), the work is cancelled and waited for before the
    /// error goes on: it never runs on behind the command's back.
    /// </remarks>
    protected T RunEngine<T>(Func<IEngineEvents, CancellationToken, T> work, bool streamText = false)
    {
        var pump = (EventPump)EngineEvents;
        var token = _cancel.Token;
        pump.StreamText = streamText;
        var task = Task.Factory.StartNew(() =>
        {
            try { return work(pump, token); }
            finally { pump.Signal(); }
        }, CancellationToken.None, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);
        try
        {
            pump.DrainUntil(this, task);
        }
        catch
        {
            _cancel.Cancel();
            try { task.Wait(); } catch (AggregateException) { }
            throw;
        }
        finally
        {
            pump.StreamText = false;
        }
        return task.GetAwaiter().GetResult();
    }

    /// <summary>Writes what the engine reported since the last write (on the pipeline thread).</summary>
    protected void WriteQueuedEvents() => _pump?.Drain(this);

    /// <summary>Writes llama.cpp's log lines that no command owned: warnings and errors to Verbose, the rest to Debug.</summary>
    protected void WriteNativeLog()
    {
        foreach (var entry in NativeRuntime.DrainLog())
        {
            if (entry.Level is NativeLogLevel.Error or NativeLogLevel.Warning) WriteVerbose("llama.cpp: " + entry.Message);
            else WriteDebug("llama.cpp: " + entry.Message);
        }
    }

    /// <summary>
    /// The local file a -Model value names: a path (relative to the current location), or a Hub reference (org/name,
    /// org/name:QUANT, org/name/file.gguf, @revision) installed into the Hugging Face cache on first use, or the short
    /// name of a model shipped with the module (tinystories).
    /// </summary>
    protected string ResolveModelPath(string model)
    {
        if (EmbeddedModels.TryResolve(model) is { } embedded) return embedded;
        bool isReference = Hub.HubReference.TryParse(model, out var reference);
        string? local;
        try
        {
            local = ResolvePath(model);
        }
        catch (Exception e) when (e is System.Management.Automation.DriveNotFoundException or ProviderNotFoundException or NotSupportedException && isReference)
        {
            local = null; // "org/name:Q8_0" reads to PowerShell like a drive: it is a Hub reference
        }
        if (local is not null && (File.Exists(local) || Directory.Exists(local) || !isReference))
            return local;
        var settings = Hub.HubSettings.FromEnvironment();
        var (token, _) = HubSession.Resolve(settings);
        return RunEngine((events, cancel) => Hub.HubModels.Install(reference!, null, null, false, token, events, cancel)).Path;
    }

    /// <summary>Resolves a path as PowerShell sees it (relative to the current location, ~ expanded).</summary>
    protected string ResolvePath(string path) => SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

    protected static ErrorRecord ToErrorRecord(LlmException e) => new(e, e.ErrorId, Category(e.Kind), e.Target)
    {
        ErrorDetails = new ErrorDetails(e.Message),
    };

    protected void WriteLlmError(LlmException e) => WriteError(ToErrorRecord(e));

    protected void ThrowLlmError(LlmException e) => ThrowTerminatingError(ToErrorRecord(e));

    private static ErrorCategory Category(LlmErrorKind kind) => kind switch
    {
        LlmErrorKind.ObjectNotFound => ErrorCategory.ObjectNotFound,
        LlmErrorKind.InvalidData => ErrorCategory.InvalidData,
        LlmErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
        LlmErrorKind.LimitsExceeded => ErrorCategory.LimitsExceeded,
        LlmErrorKind.ResourceUnavailable => ErrorCategory.ResourceUnavailable,
        LlmErrorKind.NotImplemented => ErrorCategory.NotImplemented,
        LlmErrorKind.OperationStopped => ErrorCategory.OperationStopped,
        LlmErrorKind.ResourceBusy => ErrorCategory.ResourceBusy,
        LlmErrorKind.NotInstalled => ErrorCategory.NotInstalled,
        LlmErrorKind.PermissionDenied => ErrorCategory.PermissionDenied,
        LlmErrorKind.ConnectionError => ErrorCategory.ConnectionError,
        _ => ErrorCategory.InvalidOperation,
    };

    /// <summary>Queues engine events from any thread; <see cref="Drain"/> writes them on the pipeline thread.</summary>
    private sealed class EventPump : IEngineEvents
    {
        private readonly ConcurrentQueue<Action<LlmCmdlet>> _queue = new();
        private readonly SemaphoreSlim _signal = new(0);
        private readonly Dictionary<string, int> _activities = new();

        public volatile bool StreamText;

        public void Signal() => _signal.Release();

        public void DrainUntil(LlmCmdlet cmdlet, Task task)
        {
            while (!task.IsCompleted)
            {
                _signal.Wait(250);
                Drain(cmdlet);
            }
            Drain(cmdlet);
        }

        public void Drain(LlmCmdlet cmdlet)
        {
            while (_queue.TryDequeue(out var write)) write(cmdlet);
        }

        private void Post(Action<LlmCmdlet> a)
        {
            _queue.Enqueue(a);
            _signal.Release();
        }

        public void Progress(string activity, string status, double fraction) => Post(c =>
        {
            if (!_activities.TryGetValue(activity, out int id))
                _activities[activity] = id = ++c._progressId;
            var record = new ProgressRecord(id, activity, status);
            if (fraction < 0) record.RecordType = ProgressRecordType.Completed;
            else record.PercentComplete = (int)Math.Clamp(fraction * 100, 0, 100);
            c.WriteProgress(record);
        });

        public void Text(string chunk)
        {
            if (!StreamText) return;
            Post(c => c.WriteInformation(new InformationRecord(
                new HostInformationMessage { Message = chunk, NoNewLine = true }, "LlmTools.Stream")
            {
                Tags = { "PSHOST" },
            }));
        }

        public void Verbose(string message) => Post(c => c.WriteVerbose(message));

        public void Warning(string message) => Post(c => c.WriteWarning(message));

        public void Debug(string message) => Post(c => c.WriteDebug(message));
    }
}

/// <summary>
/// Base of cmdlets that run a model: -Model and the options of the loaded weights and context, resolved through the
/// session model cache so that the second call never pays the load again.
/// </summary>
public abstract class ModelCmdlet : LlmCmdlet
{
    /// <summary>The parameter set of -Model (a cmdlet may have another, e.g. Invoke-LlmChat -Session).</summary>
    protected const string ModelSet = "Model";

    /// <summary>
    /// A .gguf file (relative paths resolve from the current location) or a Hub reference (org/name, org/name:Q8_0,
    /// org/name/file.gguf, @revision), installed into the Hugging Face cache on first use; or tinystories, the small
    /// story model shipped with the module.
    /// </summary>
    [Parameter(Mandatory = true, ParameterSetName = ModelSet, ValueFromPipelineByPropertyName = true)]
    [Alias("Path", "FullName", "ModelPath")]
    [ArgumentCompleter(typeof(ModelArgumentCompleter))]
    [ValidateNotNullOrEmpty]
    public string Model { get; set; } = "";

    /// <summary>Tokens the context holds, prompt plus generated; default min(trained length, 4096).</summary>
    [Parameter]
    public int ContextSize { get; set; }

    /// <summary>CPU threads; default one per core, as llama.cpp.</summary>
    [Parameter]
    public int Threads { get; set; }

    /// <summary>Layers offloaded to the GPU; default all when a GPU backend is available, else 0.</summary>
    [Parameter]
    public int GpuLayers { get; set; } = -1;

    protected ModelLoadOptions LoadOptions => new() { GpuLayers = GpuLayers >= 0 ? GpuLayers : null };

    protected ContextOptions ContextOptions => new()
    {
        ContextSize = MyInvocation.BoundParameters.ContainsKey(nameof(ContextSize)) ? ContextSize : null,
        Threads = MyInvocation.BoundParameters.ContainsKey(nameof(Threads)) ? Threads : null,
    };

    /// <summary>The local file -Model names (see <see cref="LlmCmdlet.ResolveModelPath(string)"/>).</summary>
    protected string ResolveModelPath() => ResolveModelPath(Model);

    /// <summary>True when -Model was given on the command line (the same for every input), not bound from the pipeline.</summary>
    protected bool ModelFromCommandLine { get; private set; }

    protected override void BeginProcessing()
    {
        ModelFromCommandLine = MyInvocation.BoundParameters.ContainsKey(nameof(Model));
        // Values wrong for every input end the call (a terminating error, caught by try/catch), before any work.
        if (MyInvocation.BoundParameters.ContainsKey(nameof(GpuLayers)) && GpuLayers < 0)
            ThrowLlmError(new LlmException("GpuLayersOutOfRange", LlmErrorKind.InvalidArgument,
                $"GpuLayers {GpuLayers} is out of range: use 0 (CPU only) or more.", GpuLayers));
        if (MyInvocation.BoundParameters.ContainsKey(nameof(ContextSize)) && (ContextSize < 16 || ContextSize > 1 << 20))
            ThrowLlmError(new LlmException("ContextSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"ContextSize {ContextSize} is out of range: use 16 to {1 << 20} tokens.", ContextSize));
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Threads)) && (Threads < 1 || Threads > 1024))
            ThrowLlmError(new LlmException("ThreadsOutOfRange", LlmErrorKind.InvalidArgument, $"Threads {Threads} is out of range: use 1 to 1024.", Threads));
    }
}
