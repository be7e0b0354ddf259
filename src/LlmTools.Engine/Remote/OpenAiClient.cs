using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace LlmTools.Engine.Remote;

/// <summary>An OpenAI-compatible server: its base URL (…/v1) and the key sent as a bearer token.</summary>
public sealed record RemoteEndpoint
{
    public RemoteEndpoint(Uri baseUri, string? apiKey)
    {
        if (!baseUri.IsAbsoluteUri || baseUri.Scheme is not ("http" or "https"))
            throw new LlmException("RemoteEndpointInvalid", LlmErrorKind.InvalidArgument,
                $"The endpoint '{baseUri}' is not an http:// or https:// URL (e.g. http://127.0.0.1:8080/v1).", baseUri.ToString());
        // A trailing slash, so relative paths ("chat/completions") append to …/v1 rather than replace it.
        BaseUri = baseUri.AbsoluteUri.EndsWith('/') ? baseUri : new Uri(baseUri.AbsoluteUri + "/");
        ApiKey = string.IsNullOrEmpty(apiKey) ? null : apiKey;
    }

    public Uri BaseUri { get; }
    [Newtonsoft.Json.JsonIgnore] // never in ConvertTo-Json of a session (LlmTools.JsonShape)
    public string? ApiKey { get; }
    /// <summary>The URL as a user wrote it, without the trailing slash: what results report as ModelPath.</summary>
    public string Url => BaseUri.AbsoluteUri.TrimEnd('/');

    // The key never appears in ToString (records print every property).
    public override string ToString() => Url;
}

/// <summary>Sampling as sent: a null field is left out, so the server's own default applies.</summary>
public sealed record RemoteOptions
{
    public int MaxTokens { get; init; } = CompletionOptions.DefaultMaxTokens;
    public float? Temperature { get; init; }
    public float? TopP { get; init; }
    /// <summary>llama.cpp's extensions (llama-server, vLLM, LlmTools' server); OpenAI itself refuses them, so they go only when given.</summary>
    public int? TopK { get; init; }
    public float? MinP { get; init; }
    public float? RepeatPenalty { get; init; }
    /// <summary>OpenAI's own penalties (-2 to 2), sent only when given.</summary>
    public float? FrequencyPenalty { get; init; }
    public float? PresencePenalty { get; init; }
    public uint? Seed { get; init; }
    /// <summary>A JSON schema the output must follow, sent as OpenAI's response_format json_schema.</summary>
    public string? JsonSchema { get; init; }
    /// <summary>A GBNF grammar, sent as llama.cpp's grammar field (llama-server, LlmTools' server).</summary>
    public string? Grammar { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Per request (each attempt); default 300 s.</summary>
    [Newtonsoft.Json.JsonIgnore] // serialised as TimeoutMs (LlmTools.JsonShape)
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(300);
    public double TimeoutMs => JsonShape.Milliseconds(Timeout);
    /// <summary>Retries after 429, 503 or a dropped connection (with backoff, honouring Retry-After).</summary>
    public int MaxRetries { get; init; } = 4;
}

/// <summary>
/// The client side of the OpenAI HTTP API (/v1/completions, /v1/chat/completions, /v1/models), plain HttpClient and
/// System.Text.Json: the official SDK has no /v1/completions and hides finish_reason and llama.cpp's sampling
/// extensions behind its own types (DEVELOPERS.md). Results are the same objects local generation gives.
/// </summary>
public static class OpenAiClient
{
    private static readonly HttpClient Http = new(new SocketsHttpHandler
    {
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        ConnectTimeout = TimeSpan.FromSeconds(30),
        AutomaticDecompression = DecompressionMethods.All,
    })
    {
        Timeout = System.Threading.Timeout.InfiniteTimeSpan, // each request has its own (RemoteOptions.Timeout)
    };

    /// <summary>Longest wait a Retry-After can ask for; a longer one is an error, not a silent hang.</summary>
    public static TimeSpan MaxRetryAfter { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Base of the exponential backoff when the server gives no Retry-After.</summary>
    public static TimeSpan BackoffBase { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>POST /completions: continues <paramref name="prompt"/> (after <paramref name="prefix"/>).</summary>
    public static LlmCompletionResult Complete(RemoteEndpoint endpoint, string model, string prompt, RemoteOptions options,
        IEngineEvents events, CancellationToken cancel, bool stream, string prefix = "")
    {
        var body = Body(model, options, stream, w => w.WriteString("prompt", prefix + prompt));
        var r = Send(endpoint, "completions", body, options, events, cancel, stream, chat: false);
        return r.ToResult(endpoint, model, prompt, prefix, options);
    }

    /// <summary>POST /chat/completions with the whole conversation.</summary>
    public static LlmCompletionResult Chat(RemoteEndpoint endpoint, string model, IReadOnlyList<LlmChatMessage> messages, RemoteOptions options,
        IEngineEvents events, CancellationToken cancel, bool stream)
    {
        var body = Body(model, options, stream, w =>
        {
            w.WriteStartArray("messages");
            foreach (var m in messages)
            {
                w.WriteStartObject();
                w.WriteString("role", m.Role);
                w.WriteString("content", m.Content);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
        var r = Send(endpoint, "chat/completions", body, options, events, cancel, stream, chat: true);
        return r.ToResult(endpoint, model, messages.LastOrDefault()?.Content ?? "", "", options);
    }

    /// <summary>
    /// POST /embeddings with every text in one request (OpenAI takes an array input), results in input order. When the
    /// server refuses the request (400/413: a text too long, say), each text is sent alone so the error is its own.
    /// Throws for failures of the whole request (busy after retries, unreachable, timeout); Ctrl+C throws
    /// OperationCanceledException.
    /// </summary>
    public static IReadOnlyList<EmbeddingItem> Embed(RemoteEndpoint endpoint, string model, IReadOnlyList<string> texts, RemoteOptions options,
        IEngineEvents events, CancellationToken cancel)
    {
        if (texts.Count == 0) return [];
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("model", model);
            w.WriteStartArray("input");
            foreach (var t in texts) w.WriteStringValue(t ?? "");
            w.WriteEndArray();
            w.WriteEndObject();
        }
        try
        {
            var items = Post<EmbeddingItem[]?>(endpoint, "embeddings", buffer.ToArray(), options.Timeout, options.MaxRetries, events, cancel, stream: false,
                (response, token) => ReadEmbeddings(endpoint, ReadString(response, token), model, texts), () => null);
            return items ?? throw new OperationCanceledException(cancel);
        }
        catch (LlmException e) when (e.ErrorId is "RemoteBadRequest" or "RemoteRequestTooLarge")
        {
            if (texts.Count == 1) return [new EmbeddingItem(null, e)];
            events.Verbose($"{endpoint.Url}/embeddings refused a request of {texts.Count} texts ({e.Message}); sending them one at a time.");
            var results = new List<EmbeddingItem>(texts.Count);
            foreach (var t in texts) results.AddRange(Embed(endpoint, model, [t], options, events, cancel));
            return results;
        }
    }

    private static EmbeddingItem[] ReadEmbeddings(RemoteEndpoint endpoint, string text, string model, IReadOnlyList<string> texts)
    {
        if (CutShort(text)) throw new IOException("The response body ended early.");
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        if (!root.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array)
            throw new JsonException("The response has no data array.");
        if (data.GetArrayLength() != texts.Count)
            throw new JsonException($"The response has {data.GetArrayLength()} embeddings for {texts.Count} inputs.");
        // LlmTools' server says how it pooled and what each input counted (extensions); usage alone has only the sum.
        var pooling = root.TryGetProperty("pooling", out var p) && p.ValueKind == JsonValueKind.String &&
                      Enum.TryParse<LlmPooling>(p.GetString(), ignoreCase: true, out var pl) && pl != LlmPooling.Unknown ? pl : LlmPooling.Unknown;
        int? total = root.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object &&
                     u.TryGetProperty("prompt_tokens", out var pt) && pt.TryGetInt32(out int pti) ? pti : null;
        var results = new EmbeddingItem[texts.Count];
        int position = 0;
        foreach (var item in data.EnumerateArray())
        {
            int index = item.TryGetProperty("index", out var ix) && ix.TryGetInt32(out int ixi) ? ixi : position;
            position++;
            if (index < 0 || index >= texts.Count || results[index].Embedding is not null)
                throw new JsonException($"The response has an embedding with index {index} for {texts.Count} inputs.");
            if (!item.TryGetProperty("embedding", out var e)) throw new JsonException($"The embedding {index} has no vector.");
            float[] vector;
            if (e.ValueKind == JsonValueKind.Array)
            {
                vector = new float[e.GetArrayLength()];
                int k = 0;
                foreach (var x in e.EnumerateArray()) vector[k++] = x.GetSingle();
            }
            else if (e.ValueKind == JsonValueKind.String)
            {
                var bytes = e.GetBytesFromBase64(); // encoding_format base64: little-endian float32s
                vector = new float[bytes.Length / sizeof(float)];
                Buffer.BlockCopy(bytes, 0, vector, 0, vector.Length * sizeof(float));
            }
            else throw new JsonException($"The embedding {index} is neither an array of numbers nor base64.");
            int tokens = item.TryGetProperty("prompt_tokens", out var it) && it.TryGetInt32(out int iti) ? iti
                : texts.Count == 1 ? total ?? 0 : 0; // a sum over several texts is no one text's count
            double norm = System.Numerics.Tensors.TensorPrimitives.Norm<float>(vector);
            results[index] = new EmbeddingItem(new LlmEmbedding
            {
                Text = texts[index] ?? "",
                Vector = vector,
                TokenCount = tokens,
                Model = model,
                Pooling = pooling,
                // Servers do not say; a vector of length 1 was normalized (OpenAI's, llama-server's and Ollama's are).
                Normalize = Math.Abs(norm - 1) < 1e-3 ? LlmNormalize.L2 : LlmNormalize.None,
            }, null);
        }
        return results;
    }

    /// <summary>GET /models: the names the server serves.</summary>
    public static IReadOnlyList<string> ListModels(RemoteEndpoint endpoint, TimeSpan timeout, CancellationToken cancel)
    {
        using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        timer.CancelAfter(timeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(endpoint.BaseUri, "models"));
            Authorize(request, endpoint);
            using var response = Http.Send(request, HttpCompletionOption.ResponseContentRead, timer.Token);
            var text = ReadString(response, timer.Token);
            if (!response.IsSuccessStatusCode) throw StatusError(endpoint, "models", (int)response.StatusCode, text, "");
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Array
                ? [.. data.EnumerateArray().Select(m => m.TryGetProperty("id", out var id) ? id.GetString() ?? "" : "")]
                : [];
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            throw Timeout(endpoint, timeout);
        }
        catch (HttpRequestException e)
        {
            throw Unreachable(endpoint, e);
        }
        catch (JsonException e)
        {
            throw NotOpenAi(endpoint, e);
        }
    }

    private static byte[] Body(string model, RemoteOptions o, bool stream, Action<Utf8JsonWriter> content)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("model", model);
            content(w);
            w.WriteNumber("max_tokens", o.MaxTokens);
            if (o.Temperature is { } t) w.WriteNumber("temperature", t);
            if (o.TopP is { } p) w.WriteNumber("top_p", p);
            if (o.TopK is { } k) w.WriteNumber("top_k", k);
            if (o.MinP is { } mp) w.WriteNumber("min_p", mp);
            if (o.RepeatPenalty is { } rp) w.WriteNumber("repeat_penalty", rp);
            if (o.FrequencyPenalty is { } fp) w.WriteNumber("frequency_penalty", fp);
            if (o.PresencePenalty is { } pp) w.WriteNumber("presence_penalty", pp);
            if (o.Seed is { } s) w.WriteNumber("seed", s);
            if (o.JsonSchema is { } schema)
            {
                w.WriteStartObject("response_format");
                w.WriteString("type", "json_schema");
                w.WriteStartObject("json_schema");
                w.WriteString("name", "output");
                w.WriteBoolean("strict", true);
                w.WritePropertyName("schema");
                w.WriteRawValue(schema); // checked JSON (the writer validates it again)
                w.WriteEndObject();
                w.WriteEndObject();
            }
            if (o.Grammar is { } grammar) w.WriteString("grammar", grammar);
            if (o.Stop.Count > 0)
            {
                w.WriteStartArray("stop");
                foreach (var s2 in o.Stop) w.WriteStringValue(s2);
                w.WriteEndArray();
            }
            if (stream)
            {
                w.WriteBoolean("stream", true);
                w.WriteStartObject("stream_options");
                w.WriteBoolean("include_usage", true);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>What came back, before it becomes a result object.</summary>
    private sealed class Reply
    {
        public StringBuilder Text = new();
        public string? FinishReason;
        public int? PromptTokens, CompletionTokens, CachedTokens;
        public int Chunks;
        public bool Cancelled;
        public TimeSpan? FirstToken;
        public TimeSpan Total;

        public LlmCompletionResult ToResult(RemoteEndpoint endpoint, string model, string prompt, string prefix, RemoteOptions o)
        {
            int completion = CompletionTokens ?? Chunks; // a stream without usage: one chunk per token, as llama.cpp and vLLM send
            var stop = Cancelled ? LlmStopReason.Cancelled : FinishReason switch
            {
                "length" => LlmStopReason.MaxTokens,
                _ => LlmStopReason.EndOfText, // "stop" (OpenAI does not say whether a stop sequence ended it), "content_filter", ...
            };
            var first = FirstToken ?? Total;
            var generation = Total - first;
            return new LlmCompletionResult
            {
                Text = Text.ToString(),
                Prompt = prompt,
                Prefix = prefix,
                ModelName = model,
                ModelPath = endpoint.Url,
                PromptTokens = PromptTokens ?? 0,
                CachedPromptTokens = CachedTokens ?? 0,
                CompletionTokens = completion,
                StopReason = stop,
                LoadDuration = TimeSpan.Zero,
                PromptDuration = first,
                TimeToFirstToken = first,
                GenerationDuration = generation,
                TotalDuration = Total,
                PromptTokensPerSecond = PromptTokens is > 0 && first > TimeSpan.Zero ? (PromptTokens.Value - (CachedTokens ?? 0)) / first.TotalSeconds : 0,
                // Without a stream the first token's time is unknown: the rate is over the whole request.
                TokensPerSecond = completion > 0 ? completion / (generation > TimeSpan.Zero ? generation : Total).TotalSeconds : 0,
                Seed = o.Temperature == 0 ? null : o.Seed,
                ContextSize = 0,
                Threads = 0,
            };
        }
    }

    private static Reply Send(RemoteEndpoint endpoint, string path, byte[] body, RemoteOptions options, IEngineEvents events,
        CancellationToken cancel, bool stream, bool chat)
    {
        var clock = Stopwatch.StartNew();
        string shown = ""; // text already streamed to the user, so a retry after a reset does not show it twice
        return Post(endpoint, path, body, options.Timeout, options.MaxRetries, events, cancel, stream,
            (response, token) =>
            {
                var reply = new Reply();
                if (stream) ReadStream(response, reply, chat, clock, ref shown, events, token);
                else ReadWhole(ReadString(response, token), reply, chat);
                reply.Total = clock.Elapsed;
                return reply;
            },
            // Ctrl+C: the request is aborted; what streamed so far is the text
            () => new Reply { Cancelled = true, Text = new StringBuilder(shown), Total = clock.Elapsed });
    }

    /// <summary>
    /// POSTs <paramref name="body"/> and reads a successful response with <paramref name="read"/>, retrying 429/502/503/504
    /// (after Retry-After, else backoff) and dropped connections up to <paramref name="maxRetries"/> times, each attempt
    /// within <paramref name="timeout"/>. Ctrl+C gives <paramref name="cancelled"/>'s value.
    /// </summary>
    private static T Post<T>(RemoteEndpoint endpoint, string path, byte[] body, TimeSpan timeout, int maxRetries, IEngineEvents events,
        CancellationToken cancel, bool stream, Func<HttpResponseMessage, CancellationToken, T> read, Func<T> cancelled)
    {
        for (int attempt = 0; ; attempt++)
        {
            using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            timer.CancelAfter(timeout);
            TimeSpan? wait = null;
            string why;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(endpoint.BaseUri, path))
                {
                    Content = new ByteArrayContent(body) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } },
                };
                Authorize(request, endpoint);
                if (stream) request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
                using var response = Http.Send(request, HttpCompletionOption.ResponseHeadersRead, timer.Token);
                int status = (int)response.StatusCode;
                if (status is 429 or 503 or 502 or 504)
                {
                    wait = RetryAfter(response);
                    why = $"{status} {response.ReasonPhrase}";
                    if (wait > MaxRetryAfter || attempt >= maxRetries)
                        throw StatusError(endpoint, path, status, ReadString(response, timer.Token), model: "", retried: attempt);
                }
                else if (!response.IsSuccessStatusCode)
                {
                    throw StatusError(endpoint, path, status, ReadString(response, timer.Token), ModelOf(body));
                }
                else return read(response, timer.Token);
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                return cancelled();
            }
            catch (OperationCanceledException)
            {
                throw Timeout(endpoint, timeout);
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                // Refused, reset, or the body ended early: try again (the server may be restarting or shedding load).
                if (attempt >= maxRetries) throw Unreachable(endpoint, e, attempt);
                why = e.InnerException?.Message ?? e.Message;
            }
            catch (JsonException e)
            {
                throw NotOpenAi(endpoint, e);
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException && e.TargetSite?.DeclaringType?.Namespace == "System.Text.Json")
            {
                // JSON of the wrong kinds ("prompt_tokens": "x", an embedding of strings or bad base64): JsonElement's
                // getters throw these (only theirs are caught here), which used to reach the user as RemoteRequestFailed.
                throw NotOpenAi(endpoint, e);
            }
            var delay = wait ?? Backoff(attempt);
            events.Verbose($"{endpoint.Url}/{path}: {why}; retrying in {delay.TotalSeconds:F1} s (retry {attempt + 1} of {maxRetries}).");
            try
            {
                Task.Delay(delay, cancel).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                return cancelled();
            }
        }
    }

    private static void Authorize(HttpRequestMessage request, RemoteEndpoint endpoint)
    {
        if (endpoint.ApiKey is { } key) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
    }

    private static string ReadString(HttpResponseMessage response, CancellationToken cancel)
    {
        using var reader = new StreamReader(response.Content.ReadAsStream(cancel), Encoding.UTF8);
        return reader.ReadToEndAsync(cancel).GetAwaiter().GetResult();
    }

    private static string ModelOf(byte[] body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.GetProperty("model").GetString() ?? "";
        }
        catch (JsonException) { return ""; }
    }

    /// <summary>Retry-After in seconds or as an HTTP date; null when absent.</summary>
    private static TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        var h = response.Headers.RetryAfter;
        if (h?.Delta is { } d) return d < TimeSpan.Zero ? TimeSpan.Zero : d;
        if (h?.Date is { } date) return date - DateTimeOffset.UtcNow is var left && left > TimeSpan.Zero ? left : TimeSpan.Zero;
        return null;
    }

    /// <summary>Exponential with jitter, capped at 8 s: 0.5, 1, 2, 4 s (± a quarter).</summary>
    private static TimeSpan Backoff(int attempt)
    {
        double ms = Math.Min(BackoffBase.TotalMilliseconds * Math.Pow(2, attempt), 8000);
        return TimeSpan.FromMilliseconds(ms * (0.75 + Random.Shared.NextDouble() * 0.5));
    }

    private static void ReadWhole(string text, Reply reply, bool chat)
    {
        // A body cut short (the connection dropped mid-body; some stacks end a chunked body quietly): retry it as a reset.
        if (CutShort(text)) throw new IOException("The response body ended early.");
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0)
        {
            var c = choices[0];
            string? piece = chat
                ? (c.TryGetProperty("message", out var m) && m.TryGetProperty("content", out var mc) && mc.ValueKind == JsonValueKind.String ? mc.GetString() : null)
                : (c.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null);
            reply.Text.Append(piece);
            if (c.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String) reply.FinishReason = f.GetString();
        }
        else throw new JsonException("The response has no choices.");
        ReadUsage(root, reply);
    }

    private static void ReadUsage(JsonElement root, Reply reply)
    {
        if (!root.TryGetProperty("usage", out var u) || u.ValueKind != JsonValueKind.Object) return;
        if (u.TryGetProperty("prompt_tokens", out var p) && p.TryGetInt32(out int pi)) reply.PromptTokens = pi;
        if (u.TryGetProperty("completion_tokens", out var c) && c.TryGetInt32(out int ci)) reply.CompletionTokens = ci;
        if (u.TryGetProperty("prompt_tokens_details", out var d) && d.ValueKind == JsonValueKind.Object &&
            d.TryGetProperty("cached_tokens", out var ct) && ct.TryGetInt32(out int cti)) reply.CachedTokens = cti;
    }

    /// <summary>Server-sent events: "data: {chunk}" lines until "data: [DONE]" (or the end of the body).</summary>
    private static void ReadStream(HttpResponseMessage response, Reply reply, bool chat, Stopwatch clock, ref string shown,
        IEngineEvents events, CancellationToken cancel)
    {
        using var reader = new StreamReader(response.Content.ReadAsStream(cancel), Encoding.UTF8);
        bool done = false;
        while (reader.ReadLineAsync(cancel).AsTask().GetAwaiter().GetResult() is { } line)
        {
            if (!line.StartsWith("data:", StringComparison.Ordinal)) continue; // comments, event:, id:, blank separators
            var data = line.AsSpan(5).Trim();
            if (data.SequenceEqual("[DONE]")) { done = true; break; }
            using var doc = JsonDocument.Parse(data.ToString());
            var root = doc.RootElement;
            if (root.TryGetProperty("error", out var err))
                throw new LlmException("RemoteStreamError", LlmErrorKind.InvalidOperation,
                    $"The server reported an error mid-stream: {Message(err)}");
            if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0)
            {
                var c = choices[0];
                string? piece = chat
                    ? (c.TryGetProperty("delta", out var d) && d.TryGetProperty("content", out var dc) && dc.ValueKind == JsonValueKind.String ? dc.GetString() : null)
                    : (c.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null);
                if (!string.IsNullOrEmpty(piece))
                {
                    reply.FirstToken ??= clock.Elapsed;
                    reply.Chunks++;
                    reply.Text.Append(piece);
                    var text = reply.Text.ToString();
                    // After a retry the text starts over: show only what goes beyond what was shown already.
                    if (text.Length > shown.Length && text.StartsWith(shown, StringComparison.Ordinal))
                    {
                        events.Text(text[shown.Length..]);
                        shown = text;
                    }
                }
                if (c.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String) reply.FinishReason = f.GetString();
            }
            ReadUsage(root, reply);
        }
        if (!done && reply.FinishReason is null)
            throw new IOException("The event stream ended before [DONE].");
        if (!reply.Text.ToString().StartsWith(shown, StringComparison.Ordinal))
            events.Warning("The connection dropped mid-reply and the retried reply differs from the text shown; the result holds the retried reply.");
    }

    private static string Message(JsonElement error) =>
        error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String
            ? m.GetString() ?? "" : error.ToString();

    private static string ServerMessage(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.TryGetProperty("error", out var e)) return Message(e);
            if (doc.RootElement.TryGetProperty("detail", out var d)) return d.ToString(); // FastAPI servers (vLLM's older errors)
        }
        catch (JsonException) { }
        return body.Length > 300 ? body[..300] + "…" : body;
    }

    private static LlmException StatusError(RemoteEndpoint endpoint, string path, int status, string body, string model, int retried = 0)
    {
        string said = ServerMessage(body);
        string where = $"{endpoint.Url}/{path}";
        return status switch
        {
            401 or 403 => new LlmException("RemoteUnauthorized", LlmErrorKind.PermissionDenied,
                $"{where} refused the API key ({status}): {said} Give the right key with -ApiKey or Connect-LlmEndpoint -ApiKey (or OPENAI_API_KEY).", endpoint.Url),
            404 => new LlmException("RemoteNotFound", LlmErrorKind.ObjectNotFound,
                $"{where} answered 404{(model.Length > 0 ? $" for model '{model}'" : "")}: {said} Check -Model against the server's models (Connect-LlmEndpoint lists them) and that the endpoint ends in /v1.", model),
            413 => new LlmException("RemoteRequestTooLarge", LlmErrorKind.LimitsExceeded, $"{where} refused the request as too large (413): {said}", endpoint.Url),
            400 or 422 => new LlmException("RemoteBadRequest", LlmErrorKind.InvalidArgument, $"{where} refused the request ({status}): {said}", endpoint.Url),
            429 or 503 or 502 or 504 => new LlmException("RemoteBusy", LlmErrorKind.ResourceBusy,
                $"{where} is busy ({status}) after {retried} retries: {said}", endpoint.Url),
            _ => new LlmException("RemoteRequestFailed", LlmErrorKind.InvalidOperation, $"{where} failed ({status}): {said}", endpoint.Url),
        };
    }

    private static LlmException Timeout(RemoteEndpoint endpoint, TimeSpan timeout) =>
        new("RemoteTimeout", LlmErrorKind.ConnectionError,
            $"{endpoint.Url} did not answer within {timeout.TotalSeconds:0.#} s (-TimeoutSec).", endpoint.Url);

    private static LlmException Unreachable(RemoteEndpoint endpoint, Exception e, int retried = 0) =>
        new("RemoteUnreachable", LlmErrorKind.ConnectionError,
            $"{endpoint.Url} cannot be reached{(retried > 0 ? $" after {retried} retries" : "")}: {e.InnerException?.Message ?? e.Message}", endpoint.Url, e);

    /// <summary>
    /// A JSON object whose end is missing: the connection dropped mid-body, so a retry may get all of it. A body that
    /// never began as an object (an HTML page from a web server that is no OpenAI endpoint) is not retried: it is
    /// RemoteInvalidResponse at once, not "cannot be reached after 4 retries".
    /// </summary>
    private static bool CutShort(string text)
    {
        var t = text.AsSpan().Trim();
        return t.Length == 0 || (t[0] == '{' && t[^1] != '}');
    }

    private static LlmException NotOpenAi(RemoteEndpoint endpoint, Exception e) =>
        new("RemoteInvalidResponse", LlmErrorKind.InvalidData,
            $"{endpoint.Url} did not answer in the OpenAI API's JSON ({e.Message}). Is it an OpenAI-compatible endpoint ending in /v1?", endpoint.Url, e);
}
