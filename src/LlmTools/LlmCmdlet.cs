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
    // PowerShell 7.6's PipelineStopToken is cancelled when the pipeline stops (Ctrl+C, Select-Object -First); linked
    // here so that a failed write can also cancel the engine work it belongs to (RunEngine). Made on first use: the
    // token exists only once the cmdlet runs in a pipeline.
    private CancellationTokenSource? _cancelSource;
    private int _progressId;

    private CancellationTokenSource CancelSource => _cancelSource ??= CancellationTokenSource.CreateLinkedTokenSource(PipelineStopToken);

    protected CancellationToken Cancellation => CancelSource.Token;

    public void Dispose()
    {
        DisposeResources();
        _cancelSource?.Dispose();
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
        var token = CancelSource.Token;
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
            CancelSource.Cancel();
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
        ErrorDetails = new ErrorDetails(e.Message) { RecommendedAction = e.RecommendedAction ?? RecommendedActionFor(e.ErrorId) },
    };

    /// <summary>
    /// The "what to do" of the most common errors, for ErrorRecord.ErrorDetails.RecommendedAction (the engine's messages
    /// say it too; an exception that sets its own RecommendedAction wins).
    /// </summary>
    private static string RecommendedActionFor(string errorId) => errorId switch
    {
        "ModelFileNotFound" => "Check the path, or list the models on disk with Get-LlmModel -ListAvailable.",
        "PromptTooLong" => "Shorten the prompt or raise -ContextSize (up to the model's trained length).",
        "ContextTooLarge" => "Use a smaller -ContextSize.",
        "ContextSizeOutOfRange" => "Use a -ContextSize of 16 to 1048576 tokens.",
        "HubUnreachable" or "HubTimeout" => "Check the network or HF_ENDPOINT; set HF_HUB_OFFLINE=1 to use downloaded models without the network.",
        "HubNotCached" => "Unset HF_HUB_OFFLINE once to download the model.",
        "HubGatedRepo" => "Accept the model's terms on huggingface.co, then sign in with Connect-HuggingFace.",
        "VocabularyOnlyModel" => "Use a full model file to generate; this one can only count tokens (Measure-LlmToken).",
        "NotGgufFile" or "InvalidGgufFile" => "Use a GGUF model file (Find-LlmModel finds GGUF models on the Hub).",
        "ModelNotGiven" => "Give -Model, or set a default: Set-LlmDefault -Model <path or org/name>.",
        _ => "",
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
    /// story model shipped with the module. When not given: the default model (Set-LlmDefault -Model).
    /// </summary>
    [Parameter(ParameterSetName = ModelSet, ValueFromPipelineByPropertyName = true)]
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

    // The one place parameters become options: a parameter given wins, else the default (Set-LlmDefault), else the engine's.
    protected ModelLoadOptions LoadOptions => new() { GpuLayers = GpuLayers >= 0 ? GpuLayers : Defaults.GpuLayers };

    protected ContextOptions ContextOptions => new()
    {
        ContextSize = MyInvocation.BoundParameters.ContainsKey(nameof(ContextSize)) ? ContextSize : Defaults.ContextSize,
        Threads = MyInvocation.BoundParameters.ContainsKey(nameof(Threads)) ? Threads : Defaults.Threads,
    };

    private LlmDefaults? _defaults;

    /// <summary>The defaults in effect, read once per command.</summary>
    protected LlmDefaults Defaults => _defaults ??= LlmDefaults.Effective;

    /// <summary>The local file -Model names (see <see cref="LlmCmdlet.ResolveModelPath(string)"/>).</summary>
    protected string ResolveModelPath()
    {
        if (string.IsNullOrEmpty(Model))
            throw new LlmException("ModelNotGiven", LlmErrorKind.InvalidArgument,
                "No model: give -Model (a .gguf file, a Hub reference such as org/name, or tinystories), or set a default with Set-LlmDefault -Model.", null)
            { RecommendedAction = "Give -Model, or set a default: Set-LlmDefault -Model <path or org/name>." };
        return ResolveModelPath(Model);
    }

    /// <summary>True when -Model was given on the command line (the same for every input), not bound from the pipeline.</summary>
    protected bool ModelFromCommandLine { get; private set; }

    protected override void BeginProcessing()
    {
        ModelFromCommandLine = MyInvocation.BoundParameters.ContainsKey(nameof(Model));
        try
        {
            // A default model is like one given on the command line: the same for every input (a piped one still wins).
            if (!ModelFromCommandLine && ParameterSetName is ModelSet or "__AllParameterSets" && Defaults.Model is { Length: > 0 } model)
            {
                Model = model;
                ModelFromCommandLine = true;
            }
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
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
