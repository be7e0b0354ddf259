using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace LlmTools.Server;

/// <summary>How a server listens and what it accepts.</summary>
public sealed record LlmServerOptions
{
    /// <summary>An IP address, "localhost", or "*" (every address).</summary>
    public string Address { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (reported by <see cref="LlmServerInfo.Port"/>).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Clients must send "Authorization: Bearer KEY"; required for a non-loopback address unless AllowAnonymous.</summary>
    public string? ApiKey { get; init; }
    public bool AllowAnonymous { get; init; }
    /// <summary>Generations running at once; more wait in a queue of <see cref="MaxQueue"/>, beyond which a request gets 503.</summary>
    public int MaxConcurrency { get; init; } = 4;
    public int MaxQueue { get; init; } = 64;
    public long MaxRequestBodyBytes { get; init; } = 4 << 20;
    public ModelLoadOptions LoadOptions { get; init; } = new();
    public ContextOptions ContextOptions { get; init; } = new();
}

/// <summary>A model file to serve, under an alias (else the file's name without .gguf).</summary>
public sealed record LlmServerModel(string Path, string? Alias = null);

/// <summary>
/// An OpenAI-compatible HTTP server (Kestrel, from the ASP.NET Core shared framework) over models of the session's
/// <see cref="ModelCache"/>: every request is just another caller of <see cref="CompletionEngine.Complete"/>.
/// </summary>
public sealed partial class LlmServer
{
    private static readonly ConcurrentDictionary<int, LlmServer> Running = new();
    private static int _nextId;

    private readonly WebApplication _app;
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _slots;
    private readonly byte[]? _keyHash;
    private readonly List<ServedModel> _models;
    private int _admitted, _active;
    private long _served, _cancelled;
    private int _stopped;

    /// <summary>The servers of this process that have not been stopped.</summary>
    public static IReadOnlyList<LlmServer> All => Running.Values.OrderBy(s => s.Id).ToList();

    public static LlmServer? Get(int id) => Running.TryGetValue(id, out var s) ? s : null;

    public static void StopAll()
    {
        foreach (var s in Running.Values) s.Stop();
    }

    public int Id { get; }
    public string Address { get; }
    public int Port { get; }
    /// <summary>The OpenAI base URL: http://host:port/v1.</summary>
    public string Endpoint { get; }
    public DateTime StartedAt { get; } = DateTime.Now;
    public LlmServerOptions Options { get; }
    public bool IsRunning => Volatile.Read(ref _stopped) == 0;
    /// <summary>Cancelled when the server stops (Start-LlmServer -Wait returns then).</summary>
    public CancellationToken Stopping => _stopping.Token;

    /// <summary>Where each request is reported (Verbose) and server warnings go; replaceable while running (Start-LlmServer -Wait).</summary>
    public IEngineEvents Log { get; set; } = NullEngineEvents.Instance;

    private LlmServer(int id, LlmServerOptions options, List<ServedModel> models, WebApplication app, string address, int port)
    {
        Id = id;
        Options = options;
        _models = models;
        _app = app;
        Address = address;
        Port = port;
        _slots = new SemaphoreSlim(options.MaxConcurrency, options.MaxConcurrency);
        _keyHash = options.ApiKey is null ? null : SHA256.HashData(Encoding.UTF8.GetBytes(options.ApiKey));
        var host = IPAddress.TryParse(address, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address;
        Endpoint = $"http://{host}:{port}/v1";
    }

    /// <summary>Loads (or finds in the cache) every model, then listens. Throws <see cref="LlmException"/> on bad options or a taken port.</summary>
    public static LlmServer Start(LlmServerOptions options, IReadOnlyList<LlmServerModel> models, IEngineEvents events, CancellationToken cancel)
    {
        var listen = Validate(options, models, events);
        var served = new List<ServedModel>();
        try
        {
            foreach (var m in models)
            {
                var lease = ModelCache.Instance.Acquire(m.Path, options.LoadOptions, events, cancel);
                var sm = new ServedModel(m.Alias ?? Path.GetFileNameWithoutExtension(lease.Info.Path), lease, options.ContextOptions, events);
                served.Add(sm);
                CompletionEngine.Prepare(lease, sm.ContextOptions, events);
            }
            var dup = served.GroupBy(s => s.Id, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
            if (dup is not null)
                throw new LlmException("ServerModelNameDuplicate", LlmErrorKind.InvalidArgument,
                    $"Two served models are named '{dup.Key}': give each an -Alias.", dup.Key);
            int id = Interlocked.Increment(ref _nextId);
            LlmServer? server = null;
            var app = Build(options, listen, () => server!);
            try
            {
                app.StartAsync(cancel).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or InvalidOperationException)
            {
                app.DisposeAsync().AsTask().GetAwaiter().GetResult();
                throw new LlmException("ServerPortUnavailable", LlmErrorKind.ResourceUnavailable,
                    $"Cannot listen on {options.Address}:{options.Port}: {e.Message} Use another -Port (0 picks a free one).", options.Port, e);
            }
            int port = options.Port;
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
            if (addresses?.FirstOrDefault() is { } bound && Uri.TryCreate(bound, UriKind.Absolute, out var uri)) port = uri.Port;
            server = new LlmServer(id, options, served, app, listen.Display, port);
            Running[id] = server;
            return server;
        }
        catch
        {
            foreach (var s in served) s.Lease.Dispose();
            throw;
        }
    }

    private readonly record struct Listen(IPAddress Ip, string Display, bool Loopback);

    private static Listen Validate(LlmServerOptions o, IReadOnlyList<LlmServerModel> models, IEngineEvents events)
    {
        static LlmException Bad(string id, string message, object? target) => new(id, LlmErrorKind.InvalidArgument, message, target);
        if (models.Count == 0) throw Bad("ServerNoModel", "Give at least one model to serve.", null);
        if (o.Port is < 0 or > 65535) throw Bad("ServerPortOutOfRange", $"Port {o.Port} is out of range: use 1 to 65535, or 0 to pick a free port.", o.Port);
        if (o.MaxConcurrency is < 1 or > 1024) throw Bad("MaxConcurrencyOutOfRange", $"MaxConcurrency {o.MaxConcurrency} is out of range: use 1 to 1024.", o.MaxConcurrency);
        if (o.MaxQueue is < 0 or > 100_000) throw Bad("MaxQueueOutOfRange", $"MaxQueue {o.MaxQueue} is out of range: use 0 to 100000.", o.MaxQueue);
        if (o.MaxRequestBodyBytes < 1024) throw Bad("MaxRequestBodyOutOfRange", $"MaxRequestBodyBytes {o.MaxRequestBodyBytes} is too small: use 1024 or more.", o.MaxRequestBodyBytes);
        if (o.ApiKey is { } key && string.IsNullOrWhiteSpace(key)) throw Bad("ServerApiKeyEmpty", "The API key is empty.", null);
        IPAddress ip;
        string display = o.Address;
        if (o.Address is "*" or "+") { ip = IPAddress.IPv6Any; display = "0.0.0.0"; }
        else if (string.Equals(o.Address, "localhost", StringComparison.OrdinalIgnoreCase)) { ip = IPAddress.Loopback; display = "127.0.0.1"; }
        else if (!IPAddress.TryParse(o.Address, out ip!))
            throw Bad("ServerAddressInvalid", $"'{o.Address}' is not an IP address: use 127.0.0.1 (this machine only), an address of this machine, or * (all).", o.Address);
        else display = ip.ToString();
        bool loopback = IPAddress.IsLoopback(ip);
        if (!loopback && o.ApiKey is null)
        {
            if (!o.AllowAnonymous)
                throw new LlmException("ServerApiKeyRequired", LlmErrorKind.PermissionDenied,
                    $"Listening on {display} lets other machines use the model: give -ApiKey, or -AllowAnonymous to serve anyone who can reach it.", o.Address);
            events.Warning($"Serving on {display} without an API key: anyone who can reach this port can use the model.");
        }
        return new Listen(ip, display, loopback);
    }

    private static WebApplication Build(LlmServerOptions options, Listen listen, Func<LlmServer> self)
    {
        // The empty builder reads no appsettings.json or ASPNETCORE_* variables and logs nowhere: a module must not be
        // reconfigured by the environment of the shell that imports it.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "LlmTools" });
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            k.Listen(listen.Ip, options.Port);
        });
        builder.Services.AddRoutingCore();
        var app = builder.Build();
        app.Use(next => context => self().Guard(context, next));
        app.MapGet("/health", new RequestDelegate(c => self().Health(c)));
        app.MapGet("/v1/models", new RequestDelegate(c => self().ListModels(c)));
        app.MapGet("/v1/models/{id}", new RequestDelegate(c => self().GetModel(c)));
        app.MapPost("/v1/completions", new RequestDelegate(c => self().Completion(c, chat: false)));
        app.MapPost("/v1/chat/completions", new RequestDelegate(c => self().Completion(c, chat: true)));
        app.MapPost("/v1/embeddings", new RequestDelegate(c => self().Embeddings(c)));
        app.MapFallback(new RequestDelegate(c => throw new OpenAiError(404, $"There is no {c.Request.Method} {c.Request.Path} on this server.", code: "not_found")));
        return app;
    }

    /// <summary>Stops listening, cancels running generations and releases the models (they stay in the cache).</summary>
    public void Stop()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1) return;
        Running.TryRemove(Id, out _);
        _stopping.Cancel();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            _app.StopAsync(timeout.Token).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) { /* connections still open after the timeout are dropped */ }
        finally
        {
            _app.DisposeAsync().AsTask().GetAwaiter().GetResult();
            foreach (var m in _models) m.Lease.Dispose();
        }
    }

    public LlmServerInfo Describe() => new()
    {
        Id = Id,
        Endpoint = Endpoint,
        Address = Address,
        Port = Port,
        Models = _models.Select(m => m.Id).ToList(),
        ModelPaths = _models.Select(m => m.Lease.Info.Path).ToList(),
        RequestsServed = Interlocked.Read(ref _served),
        RequestsCancelled = Interlocked.Read(ref _cancelled),
        ActiveRequests = Volatile.Read(ref _active),
        QueuedRequests = Math.Max(0, Volatile.Read(ref _admitted) - Volatile.Read(ref _active)),
        MaxConcurrency = Options.MaxConcurrency,
        MaxQueue = Options.MaxQueue,
        RequiresApiKey = _keyHash is not null,
        StartedAt = StartedAt,
        IsRunning = IsRunning,
    };

    public override string ToString() => Endpoint;

    /// <summary>A served model: its lease, id, chat format and context size.</summary>
    private sealed class ServedModel
    {
        public ServedModel(string id, ModelLease lease, ContextOptions contextOptions, IEngineEvents events)
        {
            Id = id;
            Lease = lease;
            int trained = lease.Info.ContextLength;
            // Fixed here so the prompt can be measured against it before any generation starts.
            ContextSize = contextOptions.ContextSize ?? Math.Min(trained > 0 ? trained : 4096, 4096);
            ContextOptions = contextOptions with { ContextSize = ContextSize };
            Chat = ChatFormat.ForModel(lease, null, NullEngineEvents.Instance);
            if (Chat.IsTranscript)
                events.Warning($"'{id}' has no chat template (a base model?): /v1/chat/completions gives it a plain User:/Assistant: transcript.");
        }

        public string Id { get; }
        public ModelLease Lease { get; }
        public int ContextSize { get; }
        public ContextOptions ContextOptions { get; }
        public ChatFormat Chat { get; }
        /// <summary>How this model's template writes tool calls (as ChatSession reads it from the template's source).</summary>
        public LlmTools.Engine.Tools.ToolCallFormat ToolFormat => _toolFormat ??= LlmTools.Engine.Tools.ToolCallFormat.For(Chat.TemplateSource);
        private LlmTools.Engine.Tools.ToolCallFormat? _toolFormat;
    }
}
