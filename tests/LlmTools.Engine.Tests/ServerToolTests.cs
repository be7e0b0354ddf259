using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using LlmTools.Server;
using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// Tools on the server's /v1/chat/completions, driven with HttpClient on 127.0.0.1: the tiny ChatML model with a
/// template that renders tools (Hermes style) calls them through the engine's tool grammar; calls come back in OpenAI's
/// shape, streamed and not; a conversation with tool calls and results renders through the template; bad requests are 400s.
/// </summary>
public sealed class ServerToolTests : IDisposable
{
    private static readonly Lazy<string> ToolsModel = new(() =>
    {
        var o = TinyChatModel.Options();
        o.ChatTemplate = TinyChatModel.HermesToolsTemplate;
        o.Name = "tiny-tools-server";
        return TinyModel.Write(TestFiles.NewPath("server-tools.gguf"), o);
    });

    private const string WeatherSchema = """
        {"type":"object","properties":{"city":{"type":"string","enum":["Paris","Oslo","Lima"],"description":"The city"},
         "days":{"type":"integer","minimum":1,"maximum":7}},"required":["city","days"]}
        """;
    private const string ClockSchema = """{"type":"object","properties":{}}""";

    private static readonly object[] Tools =
    [
        new { type = "function", function = new { name = "get_weather", description = "Get the weather for a city", parameters = JsonNode.Parse(WeatherSchema) } },
        new { type = "function", function = new { name = "get_time", description = "The time now", parameters = JsonNode.Parse(ClockSchema) } },
    ];

    private static readonly ContextOptions Context = new() { Threads = 1, ContextSize = 1024 };
    private readonly LlmServer _server;
    private readonly HttpClient _http;

    public ServerToolTests()
    {
        _server = LlmServer.Start(new LlmServerOptions { Port = 0, ContextOptions = Context },
            [new LlmServerModel(ToolsModel.Value, "tools"), new LlmServerModel(ServerModels.ChatModelPath, "chatml"), new LlmServerModel(TestFiles.TinyModelPath, "base")],
            NullEngineEvents.Instance, default);
        _http = new HttpClient { BaseAddress = new Uri(_server.Endpoint + "/") };
    }

    public void Dispose()
    {
        _http.Dispose();
        _server.Stop();
    }

    private static object[] Ask(string text = "What is the weather in Paris?") =>
        [new { role = "system", content = "You help." }, new { role = "user", content = text }];

    private async Task<(HttpStatusCode Status, JsonNode Body)> Post(object body, string path = "chat/completions")
    {
        var response = await _http.PostAsync(path, new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"));
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
    }

    /// <summary>The data of each server-sent event, [DONE] last.</summary>
    private async Task<List<string>> PostStream(object body)
    {
        using var response = await _http.PostAsync("chat/completions", new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        return [.. text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.StartsWith("data: ", StringComparison.Ordinal) ? e[6..] : throw new Xunit.Sdk.XunitException(e))];
    }

    /// <summary>A call's arguments are a JSON string that validates against its tool's schema.</summary>
    private static void AssertValidCall(JsonNode call)
    {
        Assert.Equal("function", (string?)call["type"]);
        Assert.Matches("^[A-Za-z0-9]{9}$", (string?)call["id"]);
        var name = (string)call["function"]!["name"]!;
        Assert.Contains(name, new[] { "get_weather", "get_time" });
        var arguments = call["function"]!["arguments"]!;
        Assert.Equal(JsonValueKind.String, arguments.GetValueKind()); // a JSON string, as OpenAI sends it
        var schema = JsonSchema.FromText(name == "get_weather" ? WeatherSchema : ClockSchema);
        Assert.True(schema.Evaluate(JsonDocument.Parse((string)arguments!).RootElement).IsValid, (string)arguments!);
    }

    [Fact]
    public async Task RequiredGivesAParsedCallValidAgainstTheSchemaStreamedOrNot()
    {
        var request = new { model = "tools", messages = Ask(), tools = Tools, tool_choice = "required", temperature = 0, max_tokens = 120 };
        var (status, body) = await Post(request);
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = body["choices"]![0]!;
        Assert.Equal("tool_calls", (string?)choice["finish_reason"]);
        var message = choice["message"]!;
        Assert.Equal("assistant", (string?)message["role"]);
        var calls = message["tool_calls"]!.AsArray();
        Assert.NotEmpty(calls);
        foreach (var call in calls) AssertValidCall(call!);
        Assert.Null((string?)message["content"]); // the reply is the call: no text besides
        Assert.True((int)body["usage"]!["completion_tokens"]! > 0);

        // Streamed: the same calls in OpenAI's delta shape, no markup as content, finish_reason tool_calls.
        var events = await PostStream(new { model = "tools", messages = Ask(), tools = Tools, tool_choice = "required", temperature = 0, max_tokens = 120, stream = true });
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        var content = string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["delta"]!["content"]));
        Assert.Equal("", content);
        var streamed = chunks.SelectMany(c => c["choices"]![0]!["delta"]!["tool_calls"]?.AsArray() ?? []).ToList();
        Assert.Equal(calls.Count, streamed.Count);
        for (int i = 0; i < streamed.Count; i++)
        {
            Assert.Equal(i, (int)streamed[i]!["index"]!);
            AssertValidCall(streamed[i]!);
            // Greedy: the same call as the non-streamed request (ids are new each time).
            Assert.Equal((string?)calls[i]!["function"]!["name"], (string?)streamed[i]!["function"]!["name"]);
            Assert.Equal((string?)calls[i]!["function"]!["arguments"], (string?)streamed[i]!["function"]!["arguments"]);
        }
        Assert.Equal("tool_calls", (string?)chunks[^1]["choices"]![0]!["finish_reason"]);
        Assert.All(chunks[..^1], c => Assert.Null((string?)c["choices"]![0]!["finish_reason"]));
    }

    [Fact]
    public async Task ANamedToolChoiceCallsThatTool()
    {
        var (status, body) = await Post(new
        {
            model = "tools", messages = Ask(), tools = Tools, temperature = 0, max_tokens = 120,
            tool_choice = new { type = "function", function = new { name = "get_weather" } },
        });
        Assert.Equal(HttpStatusCode.OK, status);
        var calls = body["choices"]![0]!["message"]!["tool_calls"]!.AsArray();
        Assert.NotEmpty(calls);
        Assert.All(calls, c => Assert.Equal("get_weather", (string?)c!["function"]!["name"]));
        Assert.All(calls, c => AssertValidCall(c!));
    }

    [Fact]
    public async Task AutoStreamedAndNotGiveTheSameReplyAndNoneNeverCalls()
    {
        // Greedy auto: whether the tiny model calls or answers, the stream must say the same as the whole reply.
        var request = new { model = "tools", messages = Ask(), tools = Tools, temperature = 0, max_tokens = 60 };
        var (_, body) = await Post(request);
        var message = body["choices"]![0]!["message"]!;
        var calls = message["tool_calls"]?.AsArray();
        Assert.Equal(calls is { Count: > 0 }, (string?)body["choices"]![0]!["finish_reason"] == "tool_calls");
        var events = await PostStream(new { model = "tools", messages = Ask(), tools = Tools, temperature = 0, max_tokens = 60, stream = true });
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.Equal((string?)message["content"] ?? "", string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["delta"]!["content"])));
        var streamed = chunks.SelectMany(c => c["choices"]![0]!["delta"]!["tool_calls"]?.AsArray() ?? []).ToList();
        Assert.Equal(calls?.Count ?? 0, streamed.Count);
        Assert.Equal((string?)body["choices"]![0]!["finish_reason"], (string?)chunks[^1]["choices"]![0]!["finish_reason"]);

        // none: the tools are shown, never called.
        var (_, none) = await Post(new { model = "tools", messages = Ask(), tools = Tools, tool_choice = "none", temperature = 0, max_tokens = 60 });
        Assert.Null(none["choices"]![0]!["message"]!["tool_calls"]);
        Assert.NotEqual("tool_calls", (string?)none["choices"]![0]!["finish_reason"]);
        Assert.Equal(JsonValueKind.String, none["choices"]![0]!["message"]!["content"]!.GetValueKind());
    }

    [Fact]
    public async Task ARoundTripWithToolCallsAndResultsRendersThroughTheTemplateAndAnswers()
    {
        var messages = new object[]
        {
            new { role = "system", content = "You help." },
            new { role = "user", content = "What is the weather in Paris?" },
            new
            {
                role = "assistant", content = (string?)null,
                tool_calls = new[] { new { id = "abcDEF123", type = "function", function = new { name = "get_weather", arguments = "{\"city\": \"Paris\", \"days\": 2}" } } },
            },
            new { role = "tool", tool_call_id = "abcDEF123", content = "{\"temperature\": 21}" },
        };
        var (status, body) = await Post(new { model = "tools", messages, tools = Tools, temperature = 0, max_tokens = 20 });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains((string?)body["choices"]![0]!["finish_reason"], new[] { "stop", "length", "tool_calls" });

        // The server's prompt is the template's rendering of the call (arguments as a mapping, as transformers gives
        // them) and of the result: the same token count as the engine's rendering of the same conversation.
        using var lease = ModelCache.Instance.Acquire(ToolsModel.Value, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var format = ChatFormat.ForModel(lease, null, NullEngineEvents.Instance);
        var expected = format.Render(
            [
                new LlmChatMessage("system", "You help."),
                new LlmChatMessage("user", "What is the weather in Paris?"),
                new LlmChatMessage("assistant", "") { ToolCalls = [new LlmToolCall("abcDEF123", "get_weather", "{\"city\": \"Paris\", \"days\": 2}")] },
                new LlmChatMessage("tool", "{\"temperature\": 21}") { ToolCallId = "abcDEF123", Name = "get_weather" },
            ], addGenerationPrompt: true,
            new List<object?> { LlmTools.Engine.Tools.ToolDefinition.Create("get_weather", "Get the weather for a city", WeatherSchema).ToTemplateValue(),
                LlmTools.Engine.Tools.ToolDefinition.Create("get_time", "The time now", ClockSchema).ToTemplateValue() });
        Assert.Contains("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>", expected);
        Assert.Contains("<tool_response>\n{\"temperature\": 21}\n</tool_response>", expected);
        Assert.Equal(CompletionEngine.Tokenize(lease, expected, format.AddBos(expected) ?? true).Count, (int)body["usage"]!["prompt_tokens"]!);
    }

    [Theory]
    [InlineData("""{"tools": {"type":"function"}}""", "tools")]
    [InlineData("""{"tools": [{"type":"retrieval"}]}""", "tools[0]")]
    [InlineData("""{"tools": [{"type":"function","function":{"description":"no name"}}]}""", "tools[0].function.name")]
    [InlineData("""{"tools": [{"type":"function","function":{"name":"bad name!"}}]}""", "tools[0].function.name")]
    [InlineData("""{"tools": [{"type":"function","function":{"name":"f","parameters":{"type":"string"}}}]}""", "tools[0].function.parameters")]
    [InlineData("""{"tools": [{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]}""", "tools[1].function.name")]
    [InlineData("""{"tools": [{"type":"function","function":{"name":"f"}}], "tool_choice": "sometimes"}""", "tool_choice")]
    [InlineData("""{"tools": [{"type":"function","function":{"name":"f"}}], "tool_choice": {"type":"function","function":{"name":"g"}}}""", "tool_choice")]
    [InlineData("""{"tool_choice": "required"}""", "tool_choice")]
    [InlineData("""{"tools": [{"type":"function","function":{"name":"f"}}], "response_format": {"type":"json_object"}}""", "response_format")]
    public async Task BadToolsAndToolChoiceAre400sNamingTheField(string fields, string param)
    {
        var body = JsonNode.Parse(fields)!.AsObject();
        body["model"] = "tools";
        body["messages"] = JsonSerializer.SerializeToNode(Ask());
        var (status, error) = await Post(body);
        AssertBadRequest(status, error, param);
    }

    [Fact]
    public async Task ToolMessagesMustAnswerACallAndModelsThatCannotShowToolsAreRefused()
    {
        // A tool result that answers no call, one without an id, and arguments that are not a JSON object.
        var orphan = new object[] { new { role = "user", content = "Hi" }, new { role = "tool", tool_call_id = "nope12345", content = "21" } };
        var (status, error) = await Post(new { model = "tools", messages = orphan, tools = Tools });
        AssertBadRequest(status, error, "messages[1].tool_call_id");
        (status, error) = await Post(new { model = "tools", messages = new object[] { new { role = "user", content = "Hi" }, new { role = "tool", content = "21" } } });
        AssertBadRequest(status, error, "messages[1].tool_call_id");
        var badArgs = new object[]
        {
            new { role = "user", content = "Hi" },
            new { role = "assistant", tool_calls = new[] { new { id = "abcDEF123", type = "function", function = new { name = "get_time", arguments = "not json" } } } },
        };
        (status, error) = await Post(new { model = "tools", messages = badArgs, tools = Tools });
        AssertBadRequest(status, error, "messages[1].tool_calls[0].function.arguments");

        // No chat template (the transcript), and a template that ignores 'tools': refused rather than guessed.
        (status, error) = await Post(new { model = "base", messages = Ask(), tools = Tools });
        AssertBadRequest(status, error, "tools", "tools_unsupported");
        (status, error) = await Post(new { model = "chatml", messages = Ask(), tools = Tools });
        AssertBadRequest(status, error, "tools", "tools_unsupported");
        // tools belong to chat only.
        (status, error) = await Post(new { model = "tools", prompt = "Hi", tools = Tools }, "completions");
        AssertBadRequest(status, error, "tools");
    }

    private static void AssertBadRequest(HttpStatusCode status, JsonNode body, string param, string? code = null)
    {
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = body["error"]!;
        Assert.Equal("invalid_request_error", (string?)error["type"]);
        Assert.Equal(param, (string?)error["param"]);
        if (code is not null) Assert.Equal(code, (string?)error["code"]);
        Assert.False(string.IsNullOrEmpty((string?)error["message"]));
        Assert.DoesNotContain("   at ", (string)error["message"]!);
    }
}
