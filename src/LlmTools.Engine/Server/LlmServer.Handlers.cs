using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using LlmTools.Engine.Tools;
using Microsoft.AspNetCore.Http;

namespace LlmTools.Server;

// The endpoints: OpenAI's wire format over CompletionEngine.Complete.
public sealed partial class LlmServer
{
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    /// <summary>Every request: the API key, then the handler; any failure becomes OpenAI's error object, never a stack trace.</summary>
    private async Task Guard(HttpContext context, RequestDelegate next)
    {
        try
        {
            if (_keyHash is not null && context.Request.Path.StartsWithSegments("/v1")) CheckKey(context.Request);
            await next(context);
        }
        catch (Exception e) when (context.RequestAborted.IsCancellationRequested && e is OperationCanceledException or IOException)
        {
            // The client went away: there is no one to answer.
        }
        catch (Exception e)
        {
            var error = e switch
            {
                OpenAiError oe => oe,
                BadHttpRequestException { StatusCode: 413 } => new OpenAiError(413,
                    $"The request body is larger than this server accepts ({Options.MaxRequestBodyBytes} bytes).", code: "request_too_large"),
                BadHttpRequestException b => new OpenAiError(b.StatusCode, b.Message),
                LlmException le => FromEngine(le),
                _ => new OpenAiError(500, $"The server failed to answer: {e.Message}", "server_error"),
            };
            if (error.Status >= 500) Log.Warning($"{context.Request.Method} {context.Request.Path}: {error.Message}");
            if (context.Response.HasStarted) return; // a stream already under way reports its errors itself
            context.Response.Clear();
            context.Response.StatusCode = error.Status;
            if (error.RetryAfter is { } seconds) context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (error.Status == 401) context.Response.Headers.WWWAuthenticate = "Bearer";
            context.Response.ContentType = "application/json";
            await context.Response.Body.WriteAsync(error.ToJson(), CancellationToken.None);
        }
    }

    private void CheckKey(HttpRequest request)
    {
        string header = request.Headers.Authorization.ToString();
        if (header.Length == 0)
            throw new OpenAiError(401, "You didn't provide an API key: send it as 'Authorization: Bearer KEY'.", code: "invalid_api_key");
        string given = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : header.Trim();
        // Hashes have one length whatever the key's, so the comparison time tells nothing about the key.
        if (!CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), _keyHash))
            throw new OpenAiError(401, "Incorrect API key provided.", code: "invalid_api_key");
    }

    private static OpenAiError FromEngine(LlmException e) => e.ErrorId switch
    {
        "PromptTooLong" => OpenAiError.BadRequest(e.Message, "messages", "context_length_exceeded"),
        // The template refused these messages (e.g. roles out of its order): the request's, not the server's fault.
        "ChatTemplateError" => OpenAiError.BadRequest(e.Message, "messages", e.ErrorId),
        _ when e.Kind is LlmErrorKind.InvalidArgument or LlmErrorKind.LimitsExceeded or LlmErrorKind.InvalidData
            => OpenAiError.BadRequest(e.Message, code: e.ErrorId),
        _ => new OpenAiError(500, e.Message, "server_error", code: e.ErrorId),
    };

    private Task Health(HttpContext c) => WriteJson(c, 200, w =>
    {
        w.WriteStartObject();
        w.WriteString("status", "ok");
        w.WriteEndObject();
    });

    private Task ListModels(HttpContext c) => WriteJson(c, 200, w =>
    {
        w.WriteStartObject();
        w.WriteString("object", "list");
        w.WriteStartArray("data");
        foreach (var m in _models) WriteModel(w, m);
        w.WriteEndArray();
        w.WriteEndObject();
    });

    private Task GetModel(HttpContext c)
    {
        var m = Find(c.Request.RouteValues["id"] as string);
        return WriteJson(c, 200, w => WriteModel(w, m));
    }

    private void WriteModel(Utf8JsonWriter w, ServedModel m)
    {
        w.WriteStartObject();
        w.WriteString("id", m.Id);
        w.WriteString("object", "model");
        w.WriteNumber("created", new DateTimeOffset(StartedAt).ToUnixTimeSeconds());
        w.WriteString("owned_by", "llmtools");
        w.WriteNumber("context_length", m.ContextSize);
        w.WriteEndObject();
    }

    /// <summary>A "model" value among the served models only (id, else the model's own name): never a path.</summary>
    private ServedModel Find(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            if (_models.Count == 1) return _models[0];
            throw OpenAiError.BadRequest($"model is required: this server serves {string.Join(", ", _models.Select(m => m.Id))}.", "model");
        }
        return _models.FirstOrDefault(m => string.Equals(m.Id, name, StringComparison.OrdinalIgnoreCase))
               ?? _models.FirstOrDefault(m => string.Equals(m.Lease.Info.Name, name, StringComparison.OrdinalIgnoreCase))
               ?? throw new OpenAiError(404, $"The model '{name}' does not exist on this server; it serves {string.Join(", ", _models.Select(m => m.Id))}.",
                   param: "model", code: "model_not_found");
    }

    /// <summary>The request body as JSON; a body that is not JSON is a 400.</summary>
    private static async Task<JsonDocument> ReadBody(HttpContext c)
    {
        try
        {
            return await JsonDocument.ParseAsync(c.Request.Body, default, c.RequestAborted);
        }
        catch (JsonException e)
        {
            throw OpenAiError.BadRequest($"The request body is not valid JSON: {e.Message}");
        }
    }

    private async Task Completion(HttpContext c, bool chat)
    {
        OpenAiRequest request;
        ServedModel model;
        using (var doc = await ReadBody(c))
        {
            request = OpenAiRequest.Parse(doc.RootElement, chat);
            model = Find(request.Model);
        }

        var options = request.Options;
        string prompt;
        ToolPlan? tools = null;
        if (chat)
        {
            prompt = RenderChat(model, request, ref options, out tools);
            options = options with
            {
                Stop = [.. options.Stop, .. model.Chat.StopStrings],
                StopTokenIds = [.. options.StopTokenIds, .. model.Chat.StopTokenIds],
                AddBos = model.Chat.AddBos(prompt),
            };
        }
        else prompt = request.Prompt!;

        // The prompt must leave room for one new token; say both numbers, as OpenAI does.
        int promptTokens = CompletionEngine.Tokenize(model.Lease, prompt, options.AddBos ?? true).Count;
        if (promptTokens == 0)
            throw OpenAiError.BadRequest("The prompt is empty and this model adds no BOS token: there is nothing to continue.", chat ? "messages" : "prompt");
        if (promptTokens >= model.ContextSize)
            throw OpenAiError.BadRequest(
                $"This model's maximum context length is {model.ContextSize} tokens. However, your {(chat ? "messages" : "prompt")} resulted in " +
                $"{promptTokens} tokens. Please reduce the length of the {(chat ? "messages" : "prompt")}.",
                chat ? "messages" : "prompt", "context_length_exceeded");
        // Unset max_tokens: OpenAI's legacy completions stop at 16; a chat reply runs to its end (or the context's).
        if (request.MaxTokens is null) options = options with { MaxTokens = chat ? model.ContextSize : 16 };

        await Admit(c, async cancel =>
        {
            var watch = Stopwatch.StartNew();
            var result = request.Stream
                ? await Stream(c, model, request, prompt, options, chat, tools, cancel)
                : await Answer(c, model, request, prompt, options, chat, tools, cancel.Token);
            if (result is null) return;
            if (result.StopReason == LlmStopReason.Cancelled) Interlocked.Increment(ref _cancelled);
            else Interlocked.Increment(ref _served);
            Log.Verbose($"{c.Request.Path} {model.Id}: {result.PromptTokens} prompt + {result.CompletionTokens} new tokens, " +
                        $"{OpenAiJson.FinishReason(result.StopReason) ?? "cancelled"}, {watch.Elapsed.TotalMilliseconds:F0} ms{(request.Stream ? ", streamed" : "")}.");
        });
    }

    /// <summary>Admission: MaxConcurrency run, MaxQueue wait, the rest are told to come back (503 with Retry-After).</summary>
    private async Task Admit(HttpContext c, Func<CancellationTokenSource, Task> work)
    {
        if (Interlocked.Increment(ref _admitted) > Options.MaxConcurrency + Options.MaxQueue)
        {
            Interlocked.Decrement(ref _admitted);
            throw new OpenAiError(503, "The server is busy (its queue is full); retry after a moment.", "server_error", code: "server_busy") { RetryAfter = 1 };
        }
        try
        {
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(c.RequestAborted, _stopping.Token);
            try
            {
                await _slots.WaitAsync(cancel.Token);
            }
            catch (OperationCanceledException)
            {
                return; // gave up while queued
            }
            Interlocked.Increment(ref _active);
            try
            {
                await work(cancel);
            }
            finally
            {
                Interlocked.Decrement(ref _active);
                _slots.Release();
            }
        }
        finally
        {
            Interlocked.Decrement(ref _admitted);
        }
    }

    /// <summary>
    /// POST /v1/embeddings: every input of the request embedded by <see cref="EmbeddingEngine"/> (decoded together), in
    /// OpenAI's list shape. One input that cannot be embedded fails the request (400 naming it), as OpenAI does.
    /// </summary>
    private async Task Embeddings(HttpContext c)
    {
        OpenAiEmbeddingRequest request;
        ServedModel model;
        using (var doc = await ReadBody(c))
        {
            request = OpenAiEmbeddingRequest.Parse(doc.RootElement);
            model = Find(request.Model);
        }
        await Admit(c, async cancel =>
        {
            var watch = Stopwatch.StartNew();
            // The server's own context options (not the generation context's size): embeddings have a context of their own.
            var items = await Task.Factory.StartNew(
                () => EmbeddingEngine.Embed(model.Lease, request.Input, new EmbeddingOptions(), Options.ContextOptions, NullEngineEvents.Instance, cancel.Token),
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            for (int i = 0; i < items.Count; i++)
            {
                if (items[i].Error is not { } e) continue;
                string param = request.Single ? "input" : $"input[{i}]";
                throw e.ErrorId == "TextTooLong"
                    ? OpenAiError.BadRequest($"{param}: {e.Message}", param, "context_length_exceeded")
                    : FromEngine(e) is var oe && oe.Status == 400 ? OpenAiError.BadRequest($"{param}: {e.Message}", param, e.ErrorId) : oe;
            }
            var vectors = items.Select(x => x.Embedding!).ToList();
            if (request.Dimensions is { } dims && vectors.Count > 0 && vectors[0].Dimensions != dims)
                throw OpenAiError.BadRequest($"dimensions {dims} is not supported: '{model.Id}' gives {vectors[0].Dimensions}-dimensional vectors, which this server does not shorten.", "dimensions");
            int tokens = vectors.Sum(v => v.TokenCount);
            await WriteJson(c, 200, w =>
            {
                w.WriteStartObject();
                w.WriteString("object", "list");
                w.WriteStartArray("data");
                for (int i = 0; i < vectors.Count; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("object", "embedding");
                    w.WriteNumber("index", i);
                    if (request.Base64)
                        w.WriteBase64String("embedding", System.Runtime.InteropServices.MemoryMarshal.AsBytes(vectors[i].Vector.AsSpan()));
                    else
                    {
                        w.WriteStartArray("embedding");
                        foreach (var x in vectors[i].Vector) w.WriteNumberValue(x);
                        w.WriteEndArray();
                    }
                    // Extension: each input's own count (usage has only the sum), so clients can report it per text.
                    w.WriteNumber("prompt_tokens", vectors[i].TokenCount);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteString("model", model.Id);
                // Extension: how token vectors became one (llama.cpp's names).
                if (vectors.Count > 0) w.WriteString("pooling", vectors[0].Pooling.ToString().ToLowerInvariant());
                w.WriteStartObject("usage");
                w.WriteNumber("prompt_tokens", tokens);
                w.WriteNumber("total_tokens", tokens);
                w.WriteEndObject();
                w.WriteEndObject();
            });
            Interlocked.Increment(ref _served);
            Log.Verbose($"{c.Request.Path} {model.Id}: {vectors.Count} input(s), {tokens} tokens, {watch.Elapsed.TotalMilliseconds:F0} ms.");
        });
    }

    /// <summary>The tools of a chat request whose reply is read for calls: the tools and how the template writes a call.</summary>
    private sealed record ToolPlan(IReadOnlyList<ToolDefinition> Tools, ToolCallFormat Format)
    {
        public ParsedToolCalls Parse(LlmCompletionResult result) => result.StopReason == LlmStopReason.Cancelled
            ? new ParsedToolCalls(result.Text, []) : Format.Parse(result.Text, Tools);
    }

    /// <summary>
    /// The chat prompt, as ChatSession renders it: the tools go to the template as its 'tools' variable (transformers'
    /// shape); unless tool_choice is none, the reply is held to the tools' grammar (lazy for auto: from the call's
    /// opening marker on; from the start for required or a named tool) and read back for calls.
    /// </summary>
    private static string RenderChat(ServedModel model, OpenAiRequest request, ref CompletionOptions options, out ToolPlan? plan)
    {
        plan = null;
        var messages = request.Messages!;
        if (request.Tools.Count == 0) return model.Chat.Render(messages, addGenerationPrompt: true);
        // Like llama-server without --jinja: a model with no chat template cannot be shown tools.
        if (model.Chat.IsTranscript)
            throw OpenAiError.BadRequest($"'{model.Id}' has no chat template, so it cannot be shown tools; serve it with a template that renders 'tools'.",
                "tools", "tools_unsupported");
        var values = request.Tools.Select(t => (object?)t.ToTemplateValue()).ToList();
        var prompt = model.Chat.Render(messages, addGenerationPrompt: true, values);
        // A template that ignores 'tools' would leave the model calling tools it was never shown: refused, not guessed.
        if (prompt == model.Chat.Render(messages, addGenerationPrompt: true))
            throw OpenAiError.BadRequest($"The chat template of '{model.Id}' does not show tools to the model (it ignores the 'tools' variable).",
                "tools", "tools_unsupported");
        var choice = request.ToolChoice;
        if (choice.Mode == ToolChoiceMode.None) return prompt;
        // Both would hold the reply to a grammar: one must give way, and which one is the client's to say.
        if (options.Grammar is not null)
            throw OpenAiError.BadRequest("response_format (or grammar) and tools both constrain the reply: send one of them, or tool_choice 'none'.",
                "response_format");
        var callable = choice.Mode == ToolChoiceMode.Named ? request.Tools.Where(t => t.Name == choice.Name).ToList() : request.Tools;
        options = options with { Grammar = model.ToolFormat.Grammar(callable, required: choice.Mode != ToolChoiceMode.Auto) };
        plan = new ToolPlan(request.Tools, model.ToolFormat);
        return prompt;
    }

    /// <summary>Runs the completion on a thread of its own (it blocks for the whole generation).</summary>
    private static Task<LlmCompletionResult> Run(ServedModel model, string prompt, CompletionOptions options, IEngineEvents events, CancellationToken cancel) =>
        Task.Factory.StartNew(() => CompletionEngine.Complete(model.Lease, prompt, options, model.ContextOptions, events, cancel),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private async Task<LlmCompletionResult?> Answer(HttpContext c, ServedModel model, OpenAiRequest request, string prompt, CompletionOptions options,
        bool chat, ToolPlan? tools, CancellationToken cancel)
    {
        var result = await Run(model, prompt, options, NullEngineEvents.Instance, cancel);
        if (result.StopReason == LlmStopReason.Cancelled && c.RequestAborted.IsCancellationRequested) return result;
        string text = chat && model.Chat.IsTranscript ? result.Text.TrimStart() : result.Text;
        if (request.Echo) text = prompt + text;
        IReadOnlyList<LlmToolCall> calls = [];
        if (tools is not null && tools.Parse(result) is { Calls.Count: > 0 } parsed) (text, calls) = (parsed.Content, parsed.Calls);
        await WriteJson(c, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("id", NewId(chat));
            w.WriteString("object", chat ? "chat.completion" : "text_completion");
            w.WriteNumber("created", DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            w.WriteString("model", model.Id);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            if (chat)
            {
                w.WriteStartObject("message");
                w.WriteString("role", "assistant");
                // OpenAI: content null beside tool calls when the model wrote nothing else.
                if (calls.Count > 0 && text.Length == 0) w.WriteNull("content"); else w.WriteString("content", text);
                if (calls.Count > 0) WriteToolCalls(w, calls, delta: false);
                w.WriteEndObject();
            }
            else w.WriteString("text", text);
            w.WriteNull("logprobs");
            if (calls.Count > 0) w.WriteString("finish_reason", "tool_calls");
            else WriteFinish(w, result.StopReason);
            w.WriteEndObject();
            w.WriteEndArray();
            OpenAiJson.WriteUsage(w, result);
            w.WriteEndObject();
        });
        return result;
    }

    /// <summary>Server-sent events as OpenAI sends them: a chunk per piece of text, a last chunk with finish_reason, [DONE].</summary>
    private async Task<LlmCompletionResult?> Stream(HttpContext c, ServedModel model, OpenAiRequest request, string prompt, CompletionOptions options,
        bool chat, ToolPlan? tools, CancellationTokenSource cancel)
    {
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
        var run = Run(model, prompt, options, new ChannelEvents(channel.Writer), cancel.Token);
        _ = run.ContinueWith(_ => channel.Writer.TryComplete(), TaskScheduler.Default);
        string id = NewId(chat);
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var response = c.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        bool trimLeading = chat && model.Chat.IsTranscript;

        Task Send(string? text, bool first = false, string? finish = null, LlmCompletionResult? usage = null, bool usageOnly = false,
            IReadOnlyList<LlmToolCall>? calls = null) =>
            SendEvent(response, w =>
            {
                w.WriteStartObject();
                w.WriteString("id", id);
                w.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
                w.WriteNumber("created", created);
                w.WriteString("model", model.Id);
                w.WriteStartArray("choices");
                if (!usageOnly)
                {
                    w.WriteStartObject();
                    w.WriteNumber("index", 0);
                    if (chat)
                    {
                        w.WriteStartObject("delta");
                        if (first) w.WriteString("role", "assistant");
                        if (text is not null) w.WriteString("content", text);
                        if (calls is not null) WriteToolCalls(w, calls, delta: true);
                        w.WriteEndObject();
                    }
                    else w.WriteString("text", text ?? "");
                    w.WriteNull("logprobs");
                    if (finish is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finish);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                if (usage is not null) OpenAiJson.WriteUsage(w, usage);
                else if (request.IncludeUsage) w.WriteNull("usage");
                w.WriteEndObject();
            });

        try
        {
            await response.StartAsync(cancel.Token);
            if (chat) await Send("", first: true);
            else if (request.Echo) await Send(prompt);
            // With tools, text is held back from the call's opening marker on (and while the text so far could be the
            // start of it): the call goes out as tool_calls once parsed at the end, never as content.
            var held = tools is null ? null : new StringBuilder();
            bool calling = false;
            await foreach (var piece in channel.Reader.ReadAllAsync(CancellationToken.None))
            {
                var text = piece;
                if (trimLeading)
                {
                    text = text.TrimStart();
                    if (text.Length == 0) continue;
                    trimLeading = false;
                }
                if (held is not null)
                {
                    if (calling)
                    {
                        held.Append(text);
                        continue;
                    }
                    held.Append(text);
                    text = Releasable(held, tools!.Format.Trigger, out calling);
                    if (text.Length == 0) continue;
                }
                await Send(text);
            }
            LlmCompletionResult result;
            try
            {
                result = await run;
            }
            catch (LlmException e)
            {
                var error = FromEngine(e);
                await SendEvent(response, error.ToJson());
                await response.Body.WriteAsync(Done, CancellationToken.None);
                return null;
            }
            if (result.StopReason == LlmStopReason.Cancelled) return result;
            if (tools is not null && tools.Parse(result) is { Calls.Count: > 0 } parsed)
            {
                // The calls in one delta, each with its index, id, type and whole arguments; then finish_reason tool_calls.
                await Send(null, calls: parsed.Calls);
                await Send(null, finish: "tool_calls");
            }
            else
            {
                if (held is { Length: > 0 }) await Send(held.ToString()); // a marker that opened no call: it was text after all
                await Send(chat ? null : "", finish: OpenAiJson.FinishReason(result.StopReason));
            }
            if (request.IncludeUsage) await Send(null, usage: result, usageOnly: true);
            await response.Body.WriteAsync(Done, CancellationToken.None);
            await response.Body.FlushAsync(CancellationToken.None);
            return result;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The client disconnected mid-stream: stop its generation and wait for the slot to come free.
            cancel.Cancel();
            try { return await run; }
            catch (LlmException) { return null; }
        }
    }

    /// <summary>
    /// The held text that can go out as content now: all of it before the trigger (then <paramref name="calling"/>),
    /// or all but an end that could still grow into the trigger. What is returned leaves <paramref name="held"/>.
    /// </summary>
    private static string Releasable(StringBuilder held, string trigger, out bool calling)
    {
        var text = held.ToString();
        int at = text.IndexOf(trigger, StringComparison.Ordinal);
        calling = at >= 0;
        int end = at;
        if (!calling)
        {
            end = text.Length;
            for (int k = Math.Min(trigger.Length - 1, text.Length); k > 0; k--)
                if (text.AsSpan(text.Length - k).SequenceEqual(trigger.AsSpan(0, k)))
                {
                    end = text.Length - k;
                    break;
                }
        }
        held.Remove(0, end);
        return text[..end];
    }

    /// <summary>tool_calls as OpenAI writes them (arguments as a JSON string); in a stream's delta each carries its index.</summary>
    private static void WriteToolCalls(Utf8JsonWriter w, IReadOnlyList<LlmToolCall> calls, bool delta)
    {
        w.WriteStartArray("tool_calls");
        for (int i = 0; i < calls.Count; i++)
        {
            w.WriteStartObject();
            if (delta) w.WriteNumber("index", i);
            // The engine's id as is: Mistral's templates refuse any id but 9 letters and digits when it comes back.
            w.WriteString("id", calls[i].Id);
            w.WriteString("type", "function");
            w.WriteStartObject("function");
            w.WriteString("name", calls[i].Name);
            w.WriteString("arguments", calls[i].ArgumentsJson);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static void WriteFinish(Utf8JsonWriter w, LlmStopReason reason)
    {
        if (OpenAiJson.FinishReason(reason) is { } f) w.WriteString("finish_reason", f);
        else w.WriteNull("finish_reason");
    }

    private static Task SendEvent(HttpResponse response, Action<Utf8JsonWriter> write) => SendEvent(response, OpenAiJson.Write(write));

    private static async Task SendEvent(HttpResponse response, byte[] json)
    {
        var body = response.Body;
        await body.WriteAsync(DataPrefix, CancellationToken.None);
        await body.WriteAsync(json, CancellationToken.None);
        await body.WriteAsync(EventEnd, CancellationToken.None);
        await body.FlushAsync(CancellationToken.None);
    }

    private static async Task WriteJson(HttpContext c, int status, Action<Utf8JsonWriter> write)
    {
        var bytes = OpenAiJson.Write(write);
        c.Response.StatusCode = status;
        c.Response.ContentType = "application/json";
        c.Response.ContentLength = bytes.Length;
        await c.Response.Body.WriteAsync(bytes, c.RequestAborted);
    }

    private static string NewId(bool chat) => (chat ? "chatcmpl-" : "cmpl-") + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));

    /// <summary>Streamed text goes into a channel the request's writer reads; everything else is dropped.</summary>
    private sealed class ChannelEvents(ChannelWriter<string> writer) : IEngineEvents
    {
        public void Text(string chunk) => writer.TryWrite(chunk);
        public void Progress(string activity, string status, double fraction) { }
        public void Verbose(string message) { }
        public void Warning(string message) { }
    }
}
