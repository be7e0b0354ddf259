using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using LlmTools.Engine.Grammar;
using System.Threading.Channels;
using Microsoft.Extensions.AI;

namespace LlmTools.Interop;

/// <summary>
/// A model of the session cache as Microsoft.Extensions.AI's <see cref="IChatClient"/>, so .NET applications, Semantic
/// Kernel and the Agent Framework can use it (and wrap it with ChatClientBuilder). Just another caller of
/// <see cref="CompletionEngine.Complete"/>: the model's chat template, its end-of-turn marker, and the engine's sampling.
/// </summary>
public sealed class LlmChatClient : IChatClient
{
    private readonly ModelLease _lease;
    private readonly ChatFormat _format;
    private readonly ContextOptions _context;
    private readonly int _contextSize;
    private int _disposed;

    /// <summary>Loads <paramref name="modelPath"/> through the session cache (or finds it there); dispose to release it.</summary>
    public LlmChatClient(string modelPath, ContextOptions? contextOptions = null, ModelLoadOptions? loadOptions = null, string? chatTemplate = null)
    {
        _lease = ModelCache.Instance.Acquire(modelPath, loadOptions ?? new ModelLoadOptions(), NullEngineEvents.Instance, default);
        try
        {
            _format = ChatFormat.ForModel(_lease, chatTemplate, NullEngineEvents.Instance);
            var o = contextOptions ?? new ContextOptions();
            int trained = _lease.Info.ContextLength;
            _contextSize = o.ContextSize ?? Math.Min(trained > 0 ? trained : 4096, 4096);
            _context = o with { ContextSize = _contextSize };
            Metadata = new ChatClientMetadata("LlmTools", null, _lease.Info.Name);
        }
        catch
        {
            _lease.Dispose();
            throw;
        }
    }

    public ChatClientMetadata Metadata { get; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (prompt, completion) = Prepare(messages, options);
        var result = await Task.Factory.StartNew(
            () => CompletionEngine.Complete(_lease, prompt, completion, _context, NullEngineEvents.Instance, cancellationToken),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        cancellationToken.ThrowIfCancellationRequested();
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, Reply(result.Text)))
        {
            ModelId = _lease.Info.Name,
            FinishReason = Finish(result.StopReason),
            Usage = Usage(result),
            CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (prompt, completion) = Prepare(messages, options);
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
        var run = Task.Factory.StartNew(
            () => CompletionEngine.Complete(_lease, prompt, completion, _context, new ChannelText(channel.Writer), cancellationToken),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        _ = run.ContinueWith(_ => channel.Writer.TryComplete(), TaskScheduler.Default);
        string id = Guid.NewGuid().ToString("N");
        bool trimLeading = _format.IsTranscript;
        await foreach (var piece in channel.Reader.ReadAllAsync(CancellationToken.None))
        {
            var text = piece;
            if (trimLeading)
            {
                text = text.TrimStart();
                if (text.Length == 0) continue;
                trimLeading = false;
            }
            yield return new ChatResponseUpdate(ChatRole.Assistant, text) { ResponseId = id, ModelId = _lease.Info.Name };
        }
        var result = await run;
        cancellationToken.ThrowIfCancellationRequested();
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
        {
            ResponseId = id,
            ModelId = _lease.Info.Name,
            FinishReason = Finish(result.StopReason),
        };
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? Metadata
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _lease.Dispose();
    }

    private (string Prompt, CompletionOptions Options) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? o)
    {
        ObjectDisposedException.ThrowIf(_disposed == 1, this);
        ArgumentNullException.ThrowIfNull(messages);
        static LlmException Unsupported(string what) =>
            new("ChatOptionNotSupported", LlmErrorKind.NotImplemented, $"{what} is not supported by the LlmTools engine yet.", what);
        var list = new List<LlmChatMessage>();
        foreach (var m in messages)
        {
            var role = m.Role == ChatRole.System || m.Role.Value == "developer" ? "system"
                : m.Role == ChatRole.User ? "user"
                : m.Role == ChatRole.Assistant ? "assistant"
                : throw Unsupported($"A '{m.Role.Value}' message");
            list.Add(new LlmChatMessage(role, m.Text));
        }
        if (list.Count == 0)
            throw new LlmException("ChatNoMessages", LlmErrorKind.InvalidArgument, "There are no messages to answer.");
        if (o?.Tools is { Count: > 0 }) throw Unsupported("Tool calling");
        if (o?.Seed is < 0 or > uint.MaxValue)
            throw new LlmException("SeedOutOfRange", LlmErrorKind.InvalidArgument, $"Seed {o.Seed} is out of range: use 0 to {uint.MaxValue}.", o.Seed);

        // ChatResponseFormat.Json / ForJsonSchema: the output follows the schema (any JSON object without one), through
        // the same converter as -JsonSchema; a keyword it cannot enforce is a JsonSchemaUnsupported error naming it.
        string? grammar = null;
        if (o?.ResponseFormat is ChatResponseFormatJson json)
        {
            grammar = JsonSchemaGrammar.Convert(json.Schema is { } schema ? JsonNode.Parse(schema.GetRawText()) : JsonNode.Parse("""{"type":"object"}"""));
            GbnfGrammar.Parse(grammar);
        }

        var prompt = _format.Render(list, addGenerationPrompt: true);
        var d = new CompletionOptions();
        var options = d with
        {
            // Unset options keep the engine's defaults; an unset MaxOutputTokens lets the reply run to its end.
            Temperature = o?.Temperature ?? d.Temperature,
            TopP = o?.TopP ?? d.TopP,
            TopK = o?.TopK ?? d.TopK,
            FrequencyPenalty = o?.FrequencyPenalty ?? d.FrequencyPenalty,
            PresencePenalty = o?.PresencePenalty ?? d.PresencePenalty,
            Seed = o?.Seed is { } s ? (uint)s : null,
            MaxTokens = o?.MaxOutputTokens ?? _contextSize,
            Stop = [.. o?.StopSequences ?? [], .. _format.StopStrings],
            StopTokenIds = _format.StopTokenIds,
            AddBos = _format.AddBos(prompt),
            Grammar = grammar,
        };
        return (prompt, options);
    }

    private string Reply(string text) => _format.IsTranscript ? text.TrimStart() : text;

    private static ChatFinishReason? Finish(LlmStopReason reason) => reason switch
    {
        LlmStopReason.EndOfText or LlmStopReason.StopString => ChatFinishReason.Stop,
        LlmStopReason.MaxTokens or LlmStopReason.ContextFull => ChatFinishReason.Length,
        _ => null,
    };

    private static UsageDetails Usage(LlmCompletionResult r) => new()
    {
        InputTokenCount = r.PromptTokens,
        OutputTokenCount = r.CompletionTokens,
        TotalTokenCount = r.PromptTokens + r.CompletionTokens,
        CachedInputTokenCount = r.CachedPromptTokens,
    };

    private sealed class ChannelText(ChannelWriter<string> writer) : IEngineEvents
    {
        public void Text(string chunk) => writer.TryWrite(chunk);
        public void Progress(string activity, string status, double fraction) { }
        public void Verbose(string message) { }
        public void Warning(string message) { }
    }
}
