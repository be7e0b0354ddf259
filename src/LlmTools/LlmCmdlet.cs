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

    /// <summary>Runs <paramref name="work"/> on a worker thread and pumps its events here until it ends.</summary>
    protected T RunEngine<T>(Func<IEngineEvents, CancellationToken, T> work, bool streamText = false)
    {
        using var pump = new EventPump(streamText);
        var token = _cancel.Token;
        var task = Task.Run(() =>
        {
            try { return work(pump, token); }
            finally { pump.Complete(); }
        });
        pump.Drain(this);
        try
        {
            return task.GetAwaiter().GetResult();
        }
        finally
        {
            WriteNativeLog();
        }
    }

    /// <summary>Writes llama.cpp's queued log: warnings and errors to Verbose, the rest to Debug.</summary>
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
        _ => ErrorCategory.InvalidOperation,
    };

    /// <summary>Queues engine events from worker threads; <see cref="Drain"/> writes them on the pipeline thread.</summary>
    private sealed class EventPump(bool streamText) : IEngineEvents, IDisposable
    {
        private readonly BlockingCollection<Action<LlmCmdlet>> _queue = new();
        private readonly Dictionary<string, int> _activities = new();

        public void Dispose() => _queue.Dispose();

        public void Complete() => _queue.CompleteAdding();

        public void Drain(LlmCmdlet cmdlet)
        {
            foreach (var write in _queue.GetConsumingEnumerable())
            {
                write(cmdlet);
                cmdlet.WriteNativeLog();
            }
        }

        private void Post(Action<LlmCmdlet> a)
        {
            try { _queue.Add(a); }
            catch (InvalidOperationException) { /* completed: the call is over */ }
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
            if (!streamText) return;
            Post(c => c.WriteInformation(new InformationRecord(
                new HostInformationMessage { Message = chunk, NoNewLine = true }, "LlmTools.Stream")
            {
                Tags = { "PSHOST" },
            }));
        }

        public void Verbose(string message) => Post(c => c.WriteVerbose(message));

        public void Warning(string message) => Post(c => c.WriteWarning(message));
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
        if (MyInvocation.BoundParameters.ContainsKey(nameof(GpuLayers)) && GpuLayers < 0)
            ThrowLlmError(new LlmException("GpuLayersOutOfRange", LlmErrorKind.InvalidArgument,
                $"GpuLayers {GpuLayers} is out of range: use 0 (CPU only) or more.", GpuLayers));
    }
}
