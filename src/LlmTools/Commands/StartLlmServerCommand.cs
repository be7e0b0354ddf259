using System.Management.Automation;
using System.Net;
using System.Security;
using LlmTools.Server;

namespace LlmTools.Commands;

/// <summary>
/// Serves models over the OpenAI HTTP API (/v1/models, /v1/completions, /v1/chat/completions, /health), so other
/// shells, languages and machines can use the models this session keeps loaded.
/// </summary>
/// <remarks>
/// <para>The models are loaded through the session cache and stay loaded for later cmdlets. Without -Wait the server
/// runs in the background of the session until Stop-LlmServer (or the module is removed); with -Wait it blocks until
/// Ctrl+C, for use as a service. It listens on 127.0.0.1 by default; another address needs -ApiKey (clients send
/// "Authorization: Bearer KEY") or -AllowAnonymous.</para>
/// </remarks>
/// <example>
/// <code>$s = Start-LlmServer -Model ./qwen2.5-0.5b-instruct-q4_k_m.gguf -Alias qwen -Port 0
/// Invoke-RestMethod "$($s.Endpoint)/chat/completions" -Method Post -ContentType application/json -Body (@{ model = 'qwen'; messages = @(@{ role = 'user'; content = 'Hi' }) } | ConvertTo-Json)</code>
/// <para>Serves a model on a free port and asks it something with the OpenAI chat API.</para>
/// </example>
/// <example>
/// <code>pwsh -c 'Import-Module LlmTools; Start-LlmServer -Model Qwen/Qwen2.5-0.5B-Instruct-GGUF -Address 0.0.0.0 -ApiKey (Read-Host -AsSecureString) -Wait -Verbose'</code>
/// <para>A service for the network, logging each request.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Start, "LlmServer")]
[OutputType(typeof(LlmServerInfo))]
public sealed class StartLlmServerCommand : LlmCmdlet
{
    /// <summary>Models to serve: .gguf files or Hub references (installed on first use).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("Path", "FullName", "ModelPath")]
    [ArgumentCompleter(typeof(ModelArgumentCompleter))]
    [ValidateNotNullOrEmpty]
    public string[] Model { get; set; } = [];

    /// <summary>The names clients pass as "model", one per -Model in order; default the file name without .gguf.</summary>
    [Parameter]
    public string[] Alias { get; set; } = [];

    /// <summary>TCP port; 0 picks a free one (the result's Endpoint says which).</summary>
    [Parameter]
    [ValidateRange(0, 65535)]
    public int Port { get; set; } = 8080;

    /// <summary>IP address to listen on: 127.0.0.1 (default, this machine only), an address of this machine, or * (all).</summary>
    [Parameter]
    public string Address { get; set; } = "127.0.0.1";

    /// <summary>The key clients must send as "Authorization: Bearer KEY" (compared in constant time).</summary>
    [Parameter]
    public SecureString? ApiKey { get; set; }

    /// <summary>Serve a non-loopback address without a key (anyone who can reach the port can use the model).</summary>
    [Parameter]
    public SwitchParameter AllowAnonymous { get; set; }

    /// <summary>Generations running at once (each has its own context until the engine batches them).</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int MaxConcurrency { get; set; } = 4;

    /// <summary>Requests that may wait for a free slot; beyond them a request gets 503 with Retry-After.</summary>
    [Parameter]
    [ValidateRange(0, 100000)]
    public int MaxQueue { get; set; } = 64;

    /// <summary>Tokens per request's context, prompt plus reply; default min(trained length, 4096).</summary>
    [Parameter]
    public int ContextSize { get; set; }

    /// <summary>CPU threads per generation; default one per core.</summary>
    [Parameter]
    public int Threads { get; set; }

    /// <summary>Layers offloaded to the GPU; default all when a GPU backend is available, else 0.</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int GpuLayers { get; set; } = -1;

    /// <summary>Block until Ctrl+C (then stop the server) instead of returning; -Verbose logs each request.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    private LlmServer? _server;

    protected override void EndProcessing()
    {
        try
        {
            if (Alias.Length > Model.Length)
                throw new LlmException("ServerAliasCount", LlmErrorKind.InvalidArgument,
                    $"{Alias.Length} aliases for {Model.Length} models: give at most one -Alias per -Model, in the same order.", Alias);
            var models = Model.Select((m, i) => new LlmServerModel(ResolveModelPath(m), i < Alias.Length ? Alias[i] : null)).ToList();
            var bound = MyInvocation.BoundParameters;
            var options = new LlmServerOptions
            {
                Address = Address,
                Port = Port,
                ApiKey = ApiKey is null ? null : new NetworkCredential("", ApiKey).Password,
                AllowAnonymous = AllowAnonymous,
                MaxConcurrency = MaxConcurrency,
                MaxQueue = MaxQueue,
                LoadOptions = new ModelLoadOptions { GpuLayers = GpuLayers >= 0 ? GpuLayers : null },
                ContextOptions = new ContextOptions
                {
                    ContextSize = bound.ContainsKey(nameof(ContextSize)) ? ContextSize : null,
                    Threads = bound.ContainsKey(nameof(Threads)) ? Threads : null,
                },
            };
            _server = RunEngine((events, cancel) => LlmServer.Start(options, models, events, cancel));
            WriteObject(_server.Describe());
            if (!Wait) return;
            var server = _server;
            RunEngine((events, cancel) =>
            {
                server.Log = events;
                try { WaitHandle.WaitAny([cancel.WaitHandle, server.Stopping.WaitHandle]); }
                finally { server.Log = NullEngineEvents.Instance; }
                return 0;
            });
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
        finally
        {
            if (Wait) _server?.Stop();
        }
    }

    protected override void DisposeResources()
    {
        if (Wait) _server?.Stop();
    }
}
