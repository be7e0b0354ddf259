using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LlmTools.Server;
using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>Writes the chat-shaped tiny model once for the server tests.</summary>
public static class ServerModels
{
    private static readonly Lazy<string> Chat = new(() => TinyChatModel.Write(TestFiles.NewPath("tiny-chat.gguf")));
    public static string ChatModelPath => Chat.Value;

    /// <summary>A tiny model with a long context, so one request can keep generating while the test does something else.</summary>
    private static readonly Lazy<string> Long = new(() =>
        TinyModel.Write(TestFiles.NewPath("tiny-long.gguf"), new TinyModelOptions { ContextLength = 32768, Name = "tiny-long" }));
    public static string LongModelPath => Long.Value;
}

/// <summary>
/// The OpenAI-compatible server, started for real on 127.0.0.1 (a free port) and driven with HttpClient: the wire
/// format, streaming as server-sent events, errors, the API key, the queue and disconnects.
/// </summary>
public sealed class ServerTests : IDisposable
{
    private static readonly ContextOptions Context = new() { Threads = 1, ContextSize = 512 };
    private readonly LlmServer _server;
    private readonly HttpClient _http;

    public ServerTests()
    {
        _server = Start(new LlmServerOptions { Port = 0, ContextOptions = Context, MaxConcurrency = 8 },
            new LlmServerModel(TestFiles.TinyModelPath, "tiny"), new LlmServerModel(ServerModels.ChatModelPath, "chat"));
        _http = new HttpClient { BaseAddress = new Uri(_server.Endpoint + "/") };
    }

    public void Dispose()
    {
        _http.Dispose();
        _server.Stop();
    }

    private static LlmServer Start(LlmServerOptions options, params LlmServerModel[] models) =>
        LlmServer.Start(options, models, NullEngineEvents.Instance, default);

    private static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    private async Task<(HttpStatusCode Status, JsonNode Body, HttpResponseMessage Response)> Post(string path, object body, HttpClient? client = null)
    {
        var response = await (client ?? _http).PostAsync(path, Json(body));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonNode.Parse(text)!, response);
    }

    /// <summary>Reads a server-sent event stream: the data of each event, in order, up to and including [DONE].</summary>
    private static async Task<List<string>> ReadEvents(HttpResponseMessage response)
    {
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = new List<string>();
        var data = new StringBuilder();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0)
            {
                if (data.Length > 0) events.Add(data.ToString());
                data.Clear();
                continue;
            }
            Assert.StartsWith("data: ", line);
            data.Append(line["data: ".Length..]);
        }
        Assert.Equal(0, data.Length); // every event ended with a blank line
        return events;
    }

    private static void AssertError(HttpStatusCode expected, HttpStatusCode status, JsonNode body, string? code = null, string? param = null)
    {
        Assert.Equal(expected, status);
        var error = body["error"]!;
        Assert.False(string.IsNullOrEmpty((string?)error["message"]));
        Assert.NotNull((string?)error["type"]);
        Assert.Equal(code, (string?)error["code"]);
        if (param is not null) Assert.Equal(param, (string?)error["param"]);
        Assert.DoesNotContain("   at ", (string)error["message"]!); // never a stack trace
    }

    private static LlmCompletionResult Direct(string path, string prompt, CompletionOptions options)
    {
        using var lease = ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        return CompletionEngine.Complete(lease, prompt, options, Context, NullEngineEvents.Instance, default);
    }

    /// <summary>What the server's greedy request means: no truncation, no penalty.</summary>
    private static CompletionOptions Greedy(int maxTokens) => new() { Temperature = 0, TopK = 0, TopP = 1, MinP = 0, RepeatPenalty = 1, MaxTokens = maxTokens };

    [Fact]
    public async Task HealthAndModelsListTheServedModels()
    {
        var health = JsonNode.Parse(await _http.GetStringAsync("/health"))!;
        Assert.Equal("ok", (string?)health["status"]);
        var models = JsonNode.Parse(await _http.GetStringAsync("models"))!;
        Assert.Equal("list", (string?)models["object"]);
        var ids = models["data"]!.AsArray().Select(m => (string?)m!["id"]).ToList();
        Assert.Equal(["tiny", "chat"], ids);
        Assert.All(models["data"]!.AsArray(), m => Assert.Equal("model", (string?)m!["object"]));
        var one = JsonNode.Parse(await _http.GetStringAsync("models/chat"))!;
        Assert.Equal("chat", (string?)one["id"]);
        Assert.True(_server.Port > 0);
        Assert.Equal($"http://127.0.0.1:{_server.Port}/v1", _server.Endpoint);
    }

    [Fact]
    public async Task GreedyCompletionEqualsTheEngineAndReportsUsage()
    {
        var expected = Direct(TestFiles.TinyModelPath, "Once upon a time", Greedy(24));
        var (status, body, _) = await Post("completions", new { model = "tiny", prompt = "Once upon a time", max_tokens = 24, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("text_completion", (string?)body["object"]);
        Assert.StartsWith("cmpl-", (string?)body["id"]);
        Assert.Equal("tiny", (string?)body["model"]);
        var choice = body["choices"]![0]!;
        Assert.Equal(expected.Text, (string?)choice["text"]);
        Assert.Equal(expected.StopReason == LlmStopReason.MaxTokens ? "length" : "stop", (string?)choice["finish_reason"]);
        Assert.Equal(expected.PromptTokens, (int)body["usage"]!["prompt_tokens"]!);
        Assert.Equal(expected.CompletionTokens, (int)body["usage"]!["completion_tokens"]!);
        Assert.Equal(expected.PromptTokens + expected.CompletionTokens, (int)body["usage"]!["total_tokens"]!);
        // The model's own name (general.name) finds it too; echo puts the prompt in front.
        var (_, echoed, _) = await Post("completions", new { model = "tiny-llama-test", prompt = "Once upon a time", max_tokens = 24, temperature = 0, echo = true });
        Assert.Equal("Once upon a time" + expected.Text, (string?)echoed["choices"]![0]!["text"]);
    }

    [Fact]
    public async Task PenaltiesAreTheEnginesPenaltiesSamplerAndOffByDefault()
    {
        const string prompt = "the dog and the dog and the dog and the";
        // No penalty unless asked: a greedy request is the engine's greedy text with RepeatPenalty 1.
        var plain = Direct(TestFiles.TinyModelPath, prompt, Greedy(32));
        var r = await Post("completions", new { model = "tiny", prompt, max_tokens = 32, temperature = 0 });
        Assert.Equal(plain.Text, (string?)r.Body["choices"]![0]!["text"]);

        // Each penalty as llama.cpp's penalties sampler applies it (over the last repeat_last_n tokens, prompt included);
        // each changes this greedy text (a random-weights model repeats itself without one).
        var cases = new (object Body, CompletionOptions Options)[]
        {
            (new { model = "tiny", prompt, max_tokens = 32, temperature = 0, frequency_penalty = 1.5 }, Greedy(32) with { FrequencyPenalty = 1.5f }),
            (new { model = "tiny", prompt, max_tokens = 32, temperature = 0, presence_penalty = 1.5 }, Greedy(32) with { PresencePenalty = 1.5f }),
            (new { model = "tiny", prompt, max_tokens = 32, temperature = 0, repeat_penalty = 1.5, repeat_last_n = 16 }, Greedy(32) with { RepeatPenalty = 1.5f, RepeatLastN = 16 }),
            (new { model = "tiny", prompt, max_tokens = 32, temperature = 0, frequency_penalty = 0.7, presence_penalty = 0.4, repeat_penalty = 1.2 },
                Greedy(32) with { FrequencyPenalty = 0.7f, PresencePenalty = 0.4f, RepeatPenalty = 1.2f }),
        };
        foreach (var (body, options) in cases)
        {
            var expected = Direct(TestFiles.TinyModelPath, prompt, options);
            Assert.NotEqual(plain.Text, expected.Text);
            r = await Post("completions", body);
            Assert.Equal(expected.Text, (string?)r.Body["choices"]![0]!["text"]);
        }
    }

    [Fact]
    public async Task CompletionDefaultsToSixteenTokensAndStopsAtAStopString()
    {
        var (_, body, _) = await Post("completions", new { model = "tiny", prompt = "The little dog", temperature = 0 });
        Assert.Equal(16, (int)body["usage"]!["completion_tokens"]!);
        Assert.Equal("length", (string?)body["choices"]![0]!["finish_reason"]);
        var full = (string)body["choices"]![0]!["text"]!;
        var stop = full.Substring(full.Length / 2, 3);
        var (_, stopped, _) = await Post("completions", new { model = "tiny", prompt = "The little dog", temperature = 0, stop = new[] { stop, "zzzzqqq" } });
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], (string?)stopped["choices"]![0]!["text"]);
        Assert.Equal("stop", (string?)stopped["choices"]![0]!["finish_reason"]);
    }

    [Fact]
    public async Task StreamedCompletionIsServerSentEventsAsOpenAiSendsThem()
    {
        var (_, whole, _) = await Post("completions", new { model = "tiny", prompt = "Once upon a time", max_tokens = 20, temperature = 0 });
        var response = await _http.PostAsync("completions", Json(new
        {
            model = "tiny", prompt = "Once upon a time", max_tokens = 20, temperature = 0, stream = true,
            stream_options = new { include_usage = true },
        }));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = await ReadEvents(response);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.All(chunks, c => Assert.Equal("text_completion", (string?)c["object"]));
        Assert.Single(chunks.Select(c => (string?)c["id"]).Distinct());
        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        Assert.Equal(20, (int)usage["usage"]!["completion_tokens"]!);
        var final = chunks[^2];
        Assert.Equal("length", (string?)final["choices"]![0]!["finish_reason"]);
        var text = string.Concat(chunks[..^1].Select(c => (string?)c["choices"]![0]!["text"]));
        Assert.Equal((string?)whole["choices"]![0]!["text"], text);
        Assert.True(chunks.Count > 3); // streamed in pieces, not all at the end
        Assert.All(chunks[..^2], c => Assert.Null(c["choices"]![0]!["finish_reason"]));
    }

    [Fact]
    public async Task ChatUsesTheTemplateAndStreamsDeltas()
    {
        var messages = new[] { new { role = "system", content = "You are brief." }, new { role = "user", content = "Tell me a story" } };
        // What the server must do: the model's template, its end-of-turn token, greedy.
        string expected;
        using (var lease = ModelCache.Instance.Acquire(ServerModels.ChatModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default))
        {
            var format = ChatFormat.ForModel(lease, null, NullEngineEvents.Instance);
            var prompt = format.Render([new LlmChatMessage("system", "You are brief."), new LlmChatMessage("user", "Tell me a story")], true);
            Assert.Contains("<|im_start|>assistant\n", prompt);
            expected = CompletionEngine.Complete(lease, prompt, Greedy(30) with
            {
                Stop = format.StopStrings, StopTokenIds = format.StopTokenIds, AddBos = format.AddBos(prompt),
            }, Context, NullEngineEvents.Instance, default).Text;
        }
        var (status, body, _) = await Post("chat/completions", new { model = "chat", messages, max_tokens = 30, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("chat.completion", (string?)body["object"]);
        Assert.StartsWith("chatcmpl-", (string?)body["id"]);
        var message = body["choices"]![0]!["message"]!;
        Assert.Equal("assistant", (string?)message["role"]);
        Assert.Equal(expected, (string?)message["content"]);
        Assert.True((int)body["usage"]!["prompt_tokens"]! > 10);

        var response = await _http.PostAsync("chat/completions", Json(new { model = "chat", messages, max_tokens = 30, temperature = 0, stream = true }));
        var events = await ReadEvents(response);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        Assert.Null(chunks[^1]["usage"]); // not asked for
        Assert.NotNull((string?)chunks[^1]["choices"]![0]!["finish_reason"]);
        Assert.Empty(chunks[^1]["choices"]![0]!["delta"]!.AsObject());
        Assert.Equal(expected, string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["delta"]!["content"])));
    }

    [Fact]
    public async Task BaseModelChatUsesTheTranscript()
    {
        var (status, body, _) = await Post("chat/completions", new
        {
            model = "tiny", messages = new[] { new { role = "user", content = new object[] { new { type = "text", text = "Hello" } } } },
            max_tokens = 8, temperature = 0,
        });
        Assert.Equal(HttpStatusCode.OK, status);
        var expected = Direct(TestFiles.TinyModelPath, "User: Hello\nAssistant:", Greedy(8) with { Stop = ["\nUser:", "\nAssistant:"] }).Text.TrimStart();
        Assert.Equal(expected, (string?)body["choices"]![0]!["message"]!["content"]);
    }

    [Fact]
    public async Task BadRequestsGetOpenAiErrorsWithTheRightStatus()
    {
        var bad = await _http.PostAsync("completions", new StringContent("{\"prompt\": ", Encoding.UTF8, "application/json"));
        AssertError(HttpStatusCode.BadRequest, bad.StatusCode, JsonNode.Parse(await bad.Content.ReadAsStringAsync())!);

        var r = await Post("completions", new { model = "tiny", prompt = "x", temperature = "hot" });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "temperature");
        r = await Post("completions", new { model = "tiny", prompt = "x", n = 2 });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "n");
        r = await Post("completions", new { model = "tiny" });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "prompt");
        r = await Post("chat/completions", new { model = "chat", messages = Array.Empty<object>() });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "messages");
        r = await Post("completions", new { prompt = "x" }); // two models served: which one?
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "model");
        r = await Post("completions", new { model = "tiny", prompt = "x", frequency_penalty = 2.5 });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "frequency_penalty");
        r = await Post("completions", new { model = "tiny", prompt = "x", presence_penalty = -3 });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "presence_penalty");

        // A model resolves among the served ones only: a file path is just an unknown name.
        r = await Post("completions", new { model = "gpt-4o", prompt = "x" });
        AssertError(HttpStatusCode.NotFound, r.Status, r.Body, "model_not_found", "model");
        r = await Post("completions", new { model = TestFiles.TinyModelPath, prompt = "x" });
        AssertError(HttpStatusCode.NotFound, r.Status, r.Body, "model_not_found", "model");

        var missing = await _http.GetAsync("/v1/nothing");
        AssertError(HttpStatusCode.NotFound, missing.StatusCode, JsonNode.Parse(await missing.Content.ReadAsStringAsync())!, "not_found");
    }

    [Fact]
    public async Task EmbeddingsAreTheEnginesVectorsInOpenAisShape()
    {
        string[] texts = ["The cat sat on the mat.", "A dog barked."];
        IReadOnlyList<EmbeddingItem> expected;
        using (var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default))
            expected = EmbeddingEngine.Embed(lease, texts, new EmbeddingOptions(), Context, NullEngineEvents.Instance, default);

        var r = await Post("embeddings", new { model = "tiny", input = texts });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("list", (string?)r.Body["object"]);
        Assert.Equal("tiny", (string?)r.Body["model"]);
        var data = r.Body["data"]!.AsArray();
        Assert.Equal(2, data.Count);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal("embedding", (string?)data[i]!["object"]);
            Assert.Equal(i, (int)data[i]!["index"]!);
            // The same vector up to float rounding (a batch's decode may sum in another order).
            var got = data[i]!["embedding"]!.AsArray().Select(x => (float)x!).ToArray();
            Assert.Equal(expected[i].Embedding!.Vector.Length, got.Length);
            Assert.True(EmbeddingEngine.Cosine(expected[i].Embedding!.Vector, got) >= 0.99999);
            Assert.Equal(expected[i].Embedding!.TokenCount, (int)data[i]!["prompt_tokens"]!);
        }
        int sum = expected.Sum(e => e.Embedding!.TokenCount);
        Assert.Equal(sum, (int)r.Body["usage"]!["prompt_tokens"]!);
        Assert.Equal(sum, (int)r.Body["usage"]!["total_tokens"]!);

        // base64: the little-endian float32s of the same vector; a single string input gives one item.
        r = await Post("embeddings", new { model = "tiny", input = texts[1], encoding_format = "base64" });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        var bytes = Convert.FromBase64String((string)r.Body["data"]![0]!["embedding"]!);
        var vector = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, vector, 0, bytes.Length);
        Assert.Equal(expected[1].Embedding!.Vector.Length, vector.Length);
        Assert.True(EmbeddingEngine.Cosine(expected[1].Embedding!.Vector, vector) >= 0.99999);

        // One text too long fails the request, naming it; bad inputs are 400s naming the field.
        var tooLong = string.Join(" ", Enumerable.Repeat("the little dog", 400));
        r = await Post("embeddings", new { model = "tiny", input = new[] { "short", tooLong } });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, "context_length_exceeded", "input[1]");
        Assert.Contains("512", (string)r.Body["error"]!["message"]!);
        r = await Post("embeddings", new { model = "tiny", input = new object[] { "a", 7 } });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "input[1]");
        r = await Post("embeddings", new { model = "tiny", input = Array.Empty<string>() });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "input");
        r = await Post("embeddings", new { model = "tiny", input = "x", encoding_format = "int8" });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "encoding_format");
        r = await Post("embeddings", new { model = "tiny", input = "x", dimensions = 3 });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "dimensions");
        r = await Post("embeddings", new { model = "tiny", input = "x", dimensions = expected[0].Embedding!.Dimensions });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        r = await Post("embeddings", new { model = "nope", input = "x" });
        AssertError(HttpStatusCode.NotFound, r.Status, r.Body, "model_not_found", "model");
    }

    private const string PersonSchema = """
        {"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120},
         "mood":{"enum":["happy","sad"]}},"required":["name","age","mood"],"additionalProperties":false}
        """;

    private static void AssertValid(string schemaText, string text)
    {
        var value = JsonDocument.Parse(text).RootElement; // throws when the content is not JSON
        var result = global::Json.Schema.JsonSchema.FromText(schemaText).Evaluate(value, new global::Json.Schema.EvaluationOptions { OutputFormat = global::Json.Schema.OutputFormat.List });
        Assert.True(result.IsValid, $"not valid against the schema: {text}");
    }

    [Fact]
    public async Task ResponseFormatJsonSchemaGivesContentValidAgainstTheSchema()
    {
        var schema = JsonNode.Parse(PersonSchema)!;
        var format = new JsonObject
        {
            ["type"] = "json_schema",
            ["json_schema"] = new JsonObject { ["name"] = "person", ["schema"] = schema, ["strict"] = true },
        };
        var messages = new[] { new { role = "user", content = "Describe a person." } };
        var r = await Post("chat/completions", new { model = "chat", messages, temperature = 0, max_tokens = 120, response_format = format });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("stop", (string?)r.Body["choices"]![0]!["finish_reason"]);
        var content = (string)r.Body["choices"]![0]!["message"]!["content"]!;
        AssertValid(PersonSchema, content);

        // Streamed, the deltas join into the same JSON; sampled (seeded), still valid.
        var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions")
        {
            Content = Json(new { model = "chat", messages, temperature = 0, max_tokens = 120, response_format = format, stream = true }),
        };
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var events = await ReadEvents(response);
        var streamed = string.Concat(events.Where(e => e != "[DONE]").Select(e => (string?)JsonNode.Parse(e)!["choices"]!.AsArray().FirstOrDefault()?["delta"]?["content"]));
        Assert.Equal(content, streamed);
        r = await Post("completions", new { model = "tiny", prompt = "Once upon a time", temperature = 1, seed = 7, max_tokens = 120,
            response_format = format });
        Assert.Equal("stop", (string?)r.Body["choices"]![0]!["finish_reason"]);
        AssertValid(PersonSchema, (string)r.Body["choices"]![0]!["text"]!);

        // llama.cpp's extensions: json_schema at the top level, and a GBNF grammar.
        r = await Post("completions", new { model = "tiny", prompt = "Once", temperature = 0, max_tokens = 120, json_schema = schema });
        AssertValid(PersonSchema, (string)r.Body["choices"]![0]!["text"]!);
        r = await Post("completions", new { model = "tiny", prompt = "Once", temperature = 0, max_tokens = 8, grammar = "root ::= \"yes\" | \"no\"" });
        Assert.Contains((string)r.Body["choices"]![0]!["text"]!, new[] { "yes", "no" });
    }

    [Fact]
    public async Task ResponseFormatJsonObjectGivesAnObjectAndBadFormatsAre400s()
    {
        var r = await Post("completions", new { model = "tiny", prompt = "Once upon a time", temperature = 0, max_tokens = 200,
            response_format = new { type = "json_object" } });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        var text = (string)r.Body["choices"]![0]!["text"]!;
        // Any object: a random-weights model may keep writing a key until max_tokens; a finished one parses as an object.
        Assert.StartsWith("{", text);
        if ((string?)r.Body["choices"]![0]!["finish_reason"] == "stop")
            Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(text).RootElement.ValueKind);

        var unsupported = JsonNode.Parse("""{"type":"object","properties":{"a":{"type":"integer","not":{"const":3}}}}""");
        r = await Post("chat/completions", new
        {
            model = "chat", messages = new[] { new { role = "user", content = "x" } },
            response_format = new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "n", ["schema"] = unsupported } },
        });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, "JsonSchemaUnsupported", "response_format.json_schema.schema");
        Assert.Contains("'not'", (string)r.Body["error"]!["message"]!);
        r = await Post("completions", new { model = "tiny", prompt = "x", response_format = new { type = "yaml" } });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "response_format.type");
        r = await Post("completions", new { model = "tiny", prompt = "x", response_format = new { type = "json_schema" } });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "response_format.json_schema");
        r = await Post("completions", new { model = "tiny", prompt = "x", grammar = "root ::= (" });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, "GrammarInvalid", "grammar");
        r = await Post("completions", new { model = "tiny", prompt = "x", grammar = "root ::= \"a\"", response_format = new { type = "json_object" } });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, param: "grammar");
    }

    [Fact]
    public async Task APromptLongerThanTheContextIsRefusedWithBothNumbers()
    {
        var prompt = string.Join(" ", Enumerable.Repeat("the little dog", 400));
        var r = await Post("completions", new { model = "tiny", prompt });
        AssertError(HttpStatusCode.BadRequest, r.Status, r.Body, "context_length_exceeded", "prompt");
        var message = (string)r.Body["error"]!["message"]!;
        Assert.Contains("512 tokens", message);
        int count = new Tokenizer().Count(prompt);
        Assert.Contains($"{count} tokens", message);
    }

    private sealed class Tokenizer
    {
        public int Count(string text)
        {
            using var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default);
            return CompletionEngine.Tokenize(lease, text).Count;
        }
    }

    [Fact]
    public async Task ABodyOverTheLimitIs413()
    {
        var server = Start(new LlmServerOptions { Port = 0, ContextOptions = Context, MaxRequestBodyBytes = 4096 }, new LlmServerModel(TestFiles.TinyModelPath));
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(server.Endpoint + "/") };
            var r = await Post("completions", new { prompt = new string('a', 10_000) }, http);
            AssertError(HttpStatusCode.RequestEntityTooLarge, r.Status, r.Body, "request_too_large");
            // A single served model needs no "model" field.
            r = await Post("completions", new { prompt = "Once", max_tokens = 2 }, http);
            Assert.Equal(HttpStatusCode.OK, r.Status);
        }
        finally
        {
            server.Stop();
        }
    }

    [Fact]
    public async Task TheApiKeyIsRequiredOnV1()
    {
        var server = Start(new LlmServerOptions { Port = 0, ContextOptions = Context, ApiKey = "sk-test-123" }, new LlmServerModel(TestFiles.TinyModelPath, "tiny"));
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(server.Endpoint + "/") };
            var body = new { model = "tiny", prompt = "Once", max_tokens = 2 };
            var r = await Post("completions", body, http);
            AssertError(HttpStatusCode.Unauthorized, r.Status, r.Body, "invalid_api_key");
            Assert.Equal("Bearer", r.Response.Headers.WwwAuthenticate.Single().Scheme);
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sk-test-124");
            r = await Post("completions", body, http);
            AssertError(HttpStatusCode.Unauthorized, r.Status, r.Body, "invalid_api_key");
            var models = await http.GetAsync("models");
            Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sk-test-123");
            r = await Post("completions", body, http);
            Assert.Equal(HttpStatusCode.OK, r.Status);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("models")).StatusCode);
            http.DefaultRequestHeaders.Authorization = null;
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
            Assert.True(server.Describe().RequiresApiKey);
        }
        finally
        {
            server.Stop();
        }
    }

    [Fact]
    public void ANonLoopbackAddressNeedsAKeyOrAllowAnonymous()
    {
        var e = Assert.Throws<LlmException>(() => Start(new LlmServerOptions { Address = "0.0.0.0", Port = 0 }, new LlmServerModel(TestFiles.TinyModelPath)));
        Assert.Equal("ServerApiKeyRequired", e.ErrorId);
        e = Assert.Throws<LlmException>(() => Start(new LlmServerOptions { Address = "not an address", Port = 0 }, new LlmServerModel(TestFiles.TinyModelPath)));
        Assert.Equal("ServerAddressInvalid", e.ErrorId);
        e = Assert.Throws<LlmException>(() => Start(new LlmServerOptions { Port = 0 }, new LlmServerModel(TestFiles.TinyModelPath, "a"), new LlmServerModel(TestFiles.TinyModelPath, "A")));
        Assert.Equal("ServerModelNameDuplicate", e.ErrorId);
        e = Assert.Throws<LlmException>(() => Start(new LlmServerOptions { Port = _server.Port }, new LlmServerModel(TestFiles.TinyModelPath)));
        Assert.Equal("ServerPortUnavailable", e.ErrorId);
    }

    [Fact]
    public async Task EightConcurrentRequestsEachGetTheirOwnGreedyText()
    {
        var prompts = Enumerable.Range(1, 8).Select(i => $"Story number {i} is about a little dog named").ToArray();
        var expected = prompts.Select(p => Direct(TestFiles.TinyModelPath, p, Greedy(20)).Text).ToArray();
        // Half of them streamed, half not, all at once.
        var answers = await Task.WhenAll(prompts.Select(async (p, i) =>
        {
            var response = await _http.PostAsync("completions", Json(new { model = "tiny", prompt = p, max_tokens = 20, temperature = 0, stream = i % 2 == 0 }));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            if (i % 2 == 1) return (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!["text"];
            var events = await ReadEvents(response);
            return string.Concat(events[..^1].Select(e => (string?)JsonNode.Parse(e)!["choices"]![0]!["text"]));
        }));
        Assert.Equal(expected, answers);
        Assert.True(_server.Describe().RequestsServed >= 8);
    }

    [Fact]
    public async Task ADisconnectCancelsTheGenerationAndAFullQueueSays503()
    {
        var server = Start(new LlmServerOptions { Port = 0, MaxConcurrency = 1, MaxQueue = 0, ContextOptions = new() { Threads = 1, ContextSize = 32768 } },
            new LlmServerModel(ServerModels.LongModelPath, "long"));
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(server.Endpoint + "/") };
            var greedyBefore = await Post("completions", new { prompt = "Once upon a time", max_tokens = 12, temperature = 0 }, http);
            using var abort = new CancellationTokenSource();
            var request = new HttpRequestMessage(HttpMethod.Post, "completions")
            {
                Content = Json(new { prompt = "Once upon a time", max_tokens = 30000, temperature = 0, stream = true }),
            };
            var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, abort.Token);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync(abort.Token));
            Assert.StartsWith("data: ", await reader.ReadLineAsync(abort.Token)); // generating now

            // The one slot is busy and no one may wait: come back later.
            var busy = await Post("completions", new { prompt = "Once", max_tokens = 2 }, http);
            AssertError(HttpStatusCode.ServiceUnavailable, busy.Status, busy.Body, "server_busy");
            Assert.Equal("1", busy.Response.Headers.GetValues("Retry-After").Single());

            abort.Cancel();
            response.Dispose();
            while (server.Describe() is { ActiveRequests: > 0 } or { RequestsCancelled: 0 }) await Task.Delay(20);
            var info = server.Describe();
            Assert.Equal(1, info.RequestsCancelled);
            Assert.Equal(1, info.RequestsServed);

            // The model is still usable and gives the same text as before.
            var after = await Post("completions", new { prompt = "Once upon a time", max_tokens = 12, temperature = 0 }, http);
            Assert.Equal(HttpStatusCode.OK, after.Status);
            Assert.Equal((string?)greedyBefore.Body["choices"]![0]!["text"], (string?)after.Body["choices"]![0]!["text"]);
        }
        finally
        {
            server.Stop();
        }
    }

    [Fact]
    public async Task StopClosesThePortAndForgetsTheServer()
    {
        var server = Start(new LlmServerOptions { Port = 0, ContextOptions = Context }, new LlmServerModel(TestFiles.TinyModelPath));
        Assert.Contains(server, LlmServer.All);
        Assert.Same(server, LlmServer.Get(server.Id));
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(server.Endpoint + "/models")).StatusCode);
        server.Stop();
        Assert.DoesNotContain(server, LlmServer.All);
        Assert.False(server.Describe().IsRunning);
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(server.Endpoint + "/models"));
        // The model stays in the session cache for later calls.
        Assert.Contains(ModelCache.Instance.List(), m => m.Path == Path.GetFullPath(TestFiles.TinyModelPath));
    }
}
