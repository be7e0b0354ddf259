using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace LlmTools.TestModels;

/// <summary>A fault the next request to <see cref="FakeOpenAi"/> meets.</summary>
public enum OpenAiFault
{
    /// <summary>429 with Retry-After: 1.</summary>
    TooManyRequests,
    /// <summary>503 without Retry-After (the client backs off on its own).</summary>
    Unavailable,
    /// <summary>The connection is reset after the first piece of the reply (mid-stream, or mid-body).</summary>
    ResetMidReply,
}

/// <summary>One request the fake received: when, the path, the prompt (or last message), and the body.</summary>
public sealed record OpenAiRequest(DateTime At, string Path, string Input, string Body, string? Authorization);

/// <summary>
/// A real HTTP server on 127.0.0.1 speaking the OpenAI API's wire format (/v1/models, /v1/completions,
/// /v1/chat/completions, JSON or server-sent events with usage and finish_reason, the {"error": ...} shape), with a
/// deterministic "model" (it answers "You said: INPUT", one word per token) and faults to inject: 429 with
/// Retry-After, 503, a reset mid-reply, slow replies ("sleep:MS" in the input), a required key.
/// </summary>
public sealed class FakeOpenAi : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly CancellationTokenSource _stop = new();
    private int _inFlight;

    public FakeOpenAi()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        Port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _ = Task.Run(Serve);
    }

    public int Port { get; }
    public string Endpoint => $"http://127.0.0.1:{Port}/v1";
    public string ModelName { get; set; } = "fake-model";
    /// <summary>When set, requests need "Authorization: Bearer KEY" (else 401 in OpenAI's shape).</summary>
    public string? ApiKey { get; set; }
    /// <summary>Faults for the next requests, one each, in order.</summary>
    public ConcurrentQueue<OpenAiFault> Faults { get; } = new();
    public ConcurrentQueue<OpenAiRequest> Requests { get; } = new();
    /// <summary>Most requests in flight at once.</summary>
    public int MaxInFlight { get; private set; }
    /// <summary>Slow replies whose client went away before they were done.</summary>
    public int Disconnected => _disconnected;
    private int _disconnected;

    /// <summary>The fake's embedding of a text: 8 numbers from its characters, scaled to length 1 (as OpenAI's are).</summary>
    public static float[] Embedding(string text)
    {
        var v = new double[8];
        for (int i = 0; i < text.Length; i++) v[i % 8] += text[i] * (i + 1) % 97 + 1;
        double norm = Math.Sqrt(v.Sum(x => x * x));
        return v.Select(x => (float)(x / norm)).ToArray();
    }

    /// <summary>Tokens the fake counts for a text (its words, plus one).</summary>
    public static int Tokens(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length + 1;

    /// <summary>What the fake answers to an input.</summary>
    public static string Answer(string input) => "You said: " + Regex.Replace(input, @"sleep:\d+\s*", "");

    private async Task Serve()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext ctx;
            try { ctx = await _listener.GetContextAsync(); }
            catch (Exception) { return; }
            // A thread per request (replies block while they are slow): pool threads would serialise them on 2 cores.
            _ = Task.Factory.StartNew(() =>
            {
                int now = Interlocked.Increment(ref _inFlight);
                lock (_listener) MaxInFlight = Math.Max(MaxInFlight, now);
                try { Handle(ctx); }
                catch (Exception) { try { ctx.Response.Abort(); } catch (Exception) { } }
                finally { Interlocked.Decrement(ref _inFlight); }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
    }

    private static void Send(HttpListenerResponse r, int status, string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        r.StatusCode = status;
        r.ContentType = "application/json";
        r.ContentLength64 = bytes.Length;
        r.OutputStream.Write(bytes);
        r.Close();
    }

    private static string Error(string message, string type, string? code) =>
        JsonSerializer.Serialize(new { error = new { message, type, param = (string?)null, code } });

    private void Handle(HttpListenerContext ctx)
    {
        var req = ctx.Request;
        var r = ctx.Response;
        string path = req.Url!.AbsolutePath;
        string body = new StreamReader(req.InputStream, Encoding.UTF8).ReadToEnd();
        string auth = req.Headers["Authorization"] ?? "";
        string input = "";
        JsonElement root = default;
        if (body.Length > 0)
        {
            root = JsonDocument.Parse(body).RootElement;
            if (root.TryGetProperty("prompt", out var p)) input = p.GetString() ?? "";
            else if (root.TryGetProperty("messages", out var m)) input = m[m.GetArrayLength() - 1].GetProperty("content").GetString() ?? "";
            else if (root.TryGetProperty("input", out var e))
                input = e.ValueKind == JsonValueKind.Array ? string.Join("|", e.EnumerateArray().Select(x => x.GetString())) : e.GetString() ?? "";
        }
        Requests.Enqueue(new OpenAiRequest(DateTime.UtcNow, path, input, body, req.Headers["Authorization"]));
        if (ApiKey is not null && auth != "Bearer " + ApiKey)
        {
            Send(r, 401, Error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"));
            return;
        }
        if (path == "/v1/models" && req.HttpMethod == "GET")
        {
            Send(r, 200, JsonSerializer.Serialize(new { @object = "list", data = new[] { new { id = ModelName, @object = "model", owned_by = "fake" } } }));
            return;
        }
        bool chat = path == "/v1/chat/completions";
        bool embeddings = path == "/v1/embeddings";
        if (!chat && !embeddings && path != "/v1/completions" || req.HttpMethod != "POST")
        {
            Send(r, 404, Error($"Unknown path {path}.", "invalid_request_error", null));
            return;
        }
        string model = root.TryGetProperty("model", out var mo) ? mo.GetString() ?? "" : "";
        if (model != ModelName)
        {
            Send(r, 404, Error($"The model '{model}' does not exist.", "invalid_request_error", "model_not_found"));
            return;
        }
        OpenAiFault? fault = Faults.TryDequeue(out var f) ? f : null;
        if (fault == OpenAiFault.TooManyRequests)
        {
            r.Headers["Retry-After"] = "1";
            Send(r, 429, Error("Rate limit reached.", "rate_limit_exceeded", "rate_limit_exceeded"));
            return;
        }
        if (fault == OpenAiFault.Unavailable)
        {
            Send(r, 503, Error("The server is overloaded.", "server_error", null));
            return;
        }
        if (embeddings)
        {
            Embed(r, root, model, fault);
            return;
        }
        bool stream = root.TryGetProperty("stream", out var s) && s.ValueKind == JsonValueKind.True;
        int maxTokens = root.TryGetProperty("max_tokens", out var mt) ? mt.GetInt32() : 16;
        var words = Answer(input).Split(' ');
        var pieces = words.Take(maxTokens).Select((w, i) => i == 0 ? w : " " + w).ToArray();
        string finish = words.Length > maxTokens ? "length" : "stop";
        int promptTokens = input.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length + 1;
        r.SendChunked = true;
        r.StatusCode = 200;
        r.ContentType = stream ? "text/event-stream" : "application/json";
        var o = r.OutputStream;
        // A slow reply: whitespace every 50 ms (valid before JSON, a comment line in SSE), so a client that goes away is seen.
        var sleep = Regex.Match(input, @"sleep:(\d+)");
        if (sleep.Success)
        {
            var until = DateTime.UtcNow.AddMilliseconds(int.Parse(sleep.Groups[1].Value));
            try
            {
                while (DateTime.UtcNow < until)
                {
                    o.Write(stream ? ":\n\n"u8 : " "u8);
                    o.Flush();
                    Thread.Sleep(50);
                }
            }
            catch (Exception)
            {
                Interlocked.Increment(ref _disconnected);
                throw;
            }
        }
        string id = "cmpl-" + Guid.NewGuid().ToString("N")[..8];
        string usage = $"\"usage\":{{\"prompt_tokens\":{promptTokens},\"completion_tokens\":{pieces.Length},\"total_tokens\":{promptTokens + pieces.Length}}}";
        if (!stream)
        {
            string text = string.Concat(pieces);
            string choice = chat
                ? $"{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":{JsonSerializer.Serialize(text)}}},\"finish_reason\":\"{finish}\"}}"
                : $"{{\"index\":0,\"text\":{JsonSerializer.Serialize(text)},\"finish_reason\":\"{finish}\"}}";
            var json = Encoding.UTF8.GetBytes($"{{\"id\":\"{id}\",\"object\":\"{(chat ? "chat.completion" : "text_completion")}\",\"model\":\"{model}\",\"choices\":[{choice}],{usage}}}");
            if (fault == OpenAiFault.ResetMidReply)
            {
                o.Write(json.AsSpan(0, json.Length / 2));
                o.Flush();
                r.Abort();
                return;
            }
            o.Write(json);
            r.Close();
            return;
        }
        void Event(string data)
        {
            o.Write(Encoding.UTF8.GetBytes("data: " + data + "\n\n"));
            o.Flush();
        }
        string Chunk(string? piece, string? fin)
        {
            string finJson = fin is null ? "null" : $"\"{fin}\"";
            string choice = chat
                ? $"{{\"index\":0,\"delta\":{(piece is null ? "{}" : $"{{\"content\":{JsonSerializer.Serialize(piece)}}}")},\"finish_reason\":{finJson}}}"
                : $"{{\"index\":0,\"text\":{JsonSerializer.Serialize(piece ?? "")},\"finish_reason\":{finJson}}}";
            return $"{{\"id\":\"{id}\",\"object\":\"{(chat ? "chat.completion.chunk" : "text_completion")}\",\"model\":\"{model}\",\"choices\":[{choice}]}}";
        }
        for (int i = 0; i < pieces.Length; i++)
        {
            Event(Chunk(pieces[i], null));
            if (fault == OpenAiFault.ResetMidReply && i == 1)
            {
                r.Abort();
                return;
            }
        }
        Event(Chunk(null, finish));
        Event($"{{\"id\":\"{id}\",\"object\":\"{(chat ? "chat.completion.chunk" : "text_completion")}\",\"model\":\"{model}\",\"choices\":[],{usage}}}");
        Event("[DONE]");
        r.Close();
    }

    /// <summary>
    /// /v1/embeddings as OpenAI answers it: one vector per input, usage with only the sum; a text holding "toolong"
    /// makes the whole request a 400 (as a text over OpenAI's limit does); "sleep:MS" delays the reply.
    /// </summary>
    private static void Embed(HttpListenerResponse r, JsonElement root, string model, OpenAiFault? fault)
    {
        var e = root.GetProperty("input");
        var texts = e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetString() ?? "").ToList() : [e.GetString() ?? ""];
        if (texts.FirstOrDefault(t => t.Contains("toolong")) is { } longText)
        {
            Send(r, 400, Error($"This model's maximum context length is 8 tokens, however you requested {Tokens(longText)} tokens.", "invalid_request_error", null));
            return;
        }
        if (texts.Select(t => Regex.Match(t, @"sleep:(\d+)")).FirstOrDefault(m => m.Success) is { } sleep)
            Thread.Sleep(int.Parse(sleep.Groups[1].Value));
        var json = JsonSerializer.Serialize(new
        {
            @object = "list",
            data = texts.Select((t, i) => new { @object = "embedding", index = i, embedding = Embedding(t) }),
            model,
            usage = new { prompt_tokens = texts.Sum(Tokens), total_tokens = texts.Sum(Tokens) },
        });
        var bytes = Encoding.UTF8.GetBytes(json);
        if (fault == OpenAiFault.ResetMidReply)
        {
            r.SendChunked = true;
            r.OutputStream.Write(bytes.AsSpan(0, bytes.Length / 2));
            r.OutputStream.Flush();
            r.Abort();
            return;
        }
        Send(r, 200, json);
    }

    public void Dispose()
    {
        _stop.Cancel();
        try { _listener.Stop(); _listener.Close(); } catch (Exception) { }
    }
}
