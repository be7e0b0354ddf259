using System.Management.Automation;
using System.Security;
using LlmTools.Engine.Remote;

namespace LlmTools.Commands;

/// <summary>
/// Makes an OpenAI-compatible server (LlmTools' own Start-LlmServer, llama-server, vLLM, SGLang, Ollama's /v1, LM
/// Studio, TGI) the default of this session: Invoke-LlmCompletion, Invoke-LlmChat and New-LlmChatSession then send
/// their requests there, -Model naming a model the server serves.
/// </summary>
/// <remarks>
/// <para>The server is asked for its models (GET /models) first, so a wrong URL or key is an error here. Without
/// -Uri, OPENAI_BASE_URL is used; without -ApiKey, OPENAI_API_KEY. The key is kept for this session only and is
/// never written to any stream. Disconnect-LlmEndpoint goes back to local models; -Endpoint on a call overrides.</para>
/// </remarks>
/// <example>
/// <code>Connect-LlmEndpoint -Uri http://gpu-box:8000/v1 -ApiKey (Read-Host -AsSecureString 'key')
/// Invoke-LlmCompletion 'The capital of France is' -Model meta-llama/Llama-3.1-70B -MaxTokens 8 -Temperature 0</code>
/// <para>Runs the completion on the vLLM server's model.</para>
/// </example>
[Cmdlet(VerbsCommunications.Connect, "LlmEndpoint")]
[OutputType(typeof(LlmEndpointInfo))]
public sealed class ConnectLlmEndpointCommand : LlmCmdlet
{
    /// <summary>The server's OpenAI base URL, ending in /v1 (e.g. http://127.0.0.1:8080/v1). Default: OPENAI_BASE_URL.</summary>
    [Parameter(Position = 0)]
    public Uri? Uri { get; set; }

    /// <summary>The key sent as a bearer token. Default: OPENAI_API_KEY, if set.</summary>
    [Parameter]
    public SecureString? ApiKey { get; set; }

    /// <summary>Seconds to wait for the server's answer. Default 30.</summary>
    [Parameter]
    public int TimeoutSec { get; set; } = 30;

    protected override void EndProcessing()
    {
        try
        {
            var uri = Uri;
            if (uri is null)
            {
                var env = Environment.GetEnvironmentVariable("OPENAI_BASE_URL");
                if (string.IsNullOrEmpty(env) || !System.Uri.TryCreate(env, UriKind.Absolute, out uri))
                    throw new LlmException("RemoteEndpointMissing", LlmErrorKind.InvalidArgument,
                        "Give -Uri (e.g. http://127.0.0.1:8080/v1), or set OPENAI_BASE_URL.");
            }
            if (TimeoutSec is < 1 or > 86400)
                throw new LlmException("TimeoutOutOfRange", LlmErrorKind.InvalidArgument, $"TimeoutSec {TimeoutSec} is out of range: use 1 to 86400.", TimeoutSec);
            var key = ApiKey is null ? RemoteSession.EnvironmentKey : new System.Net.NetworkCredential("", ApiKey).Password;
            var endpoint = new RemoteEndpoint(uri, key);
            var models = RunEngine((_, cancel) => OpenAiClient.ListModels(endpoint, TimeSpan.FromSeconds(TimeoutSec), cancel));
            RemoteSession.Set(endpoint);
            WriteObject(new LlmEndpointInfo { Endpoint = endpoint.Url, Models = [.. models], HasApiKey = endpoint.ApiKey is not null });
        }
        catch (LlmException e)
        {
            ThrowLlmError(e);
        }
    }
}
