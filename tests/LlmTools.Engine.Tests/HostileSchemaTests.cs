using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LlmTools.Engine.Grammar;
using LlmTools.Server;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// JSON schemas an attacker sends (response_format, a tool's parameters): keywords of the wrong JSON type, unions that
/// multiply out exponentially, enums of hundreds of thousands of values. Each is a JsonSchemaInvalid/Unsupported error
/// at once (a 400 from the server), never a cast exception (a 500) or minutes of CPU.
/// </summary>
public sealed class HostileSchemaTests
{
    [Theory]
    [InlineData("""{"allOf":[{"properties":5},{"properties":{}}]}""")]
    [InlineData("""{"allOf":[{"required":5},{"required":["a"]}]}""")]
    [InlineData("""{"allOf":[{"required":[5]},{"required":["a"]}]}""")]
    [InlineData("""{"allOf":[{"enum":5},{"enum":[1]}]}""")]
    [InlineData("""{"allOf":[{"type":[5]},{"type":"string"}]}""")]
    [InlineData("""{"type":5}""")]
    [InlineData("""{"$ref":5}""")]
    [InlineData("""{"type":"string","pattern":5}""")]
    [InlineData("""{"type":"string","format":5}""")]
    public void WrongTypedKeywordsAreInvalidSchemasNotCastExceptions(string schema)
    {
        var e = Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert(schema));
        Assert.Equal("JsonSchemaInvalid", e.ErrorId);
    }

    [Fact]
    public async Task AllOfOverManyUnionsStopsAtTheBoundBeforeMultiplyingOut()
    {
        // 2^20 alternatives: before the bound was checked as they were made, this ran for minutes.
        var parts = new JsonArray();
        for (int i = 0; i < 20; i++)
            parts.Add(new JsonObject { ["anyOf"] = new JsonArray(
                new JsonObject { ["type"] = "object", ["properties"] = new JsonObject { [$"a{i}"] = new JsonObject { ["type"] = "string" } } },
                new JsonObject { ["type"] = "object", ["properties"] = new JsonObject { [$"b{i}"] = new JsonObject { ["type"] = "integer" } } }) });
        var task = Task.Run(() => JsonSchemaGrammar.Convert(new JsonObject { ["allOf"] = parts }.ToJsonString()));
        Assert.Same(task, await Task.WhenAny(task, Task.Delay(TimeSpan.FromMinutes(1)))); // (it ends; no timing asserted)
        var e = await Assert.ThrowsAsync<LlmException>(() => task);
        Assert.Equal("JsonSchemaUnsupported", e.ErrorId);
        Assert.Contains("more than 64 alternatives", e.Message);
        // Six two-way unions (64 alternatives) still convert.
        var six = new JsonArray(parts.Take(6).Select(p => p!.DeepClone()).ToArray());
        Assert.Contains("root ::=", JsonSchemaGrammar.Convert(new JsonObject { ["allOf"] = six }.ToJsonString()));
    }

    [Theory]
    [InlineData("enum")]
    [InlineData("anyOf")]
    [InlineData("oneOf")]
    public void HugeEnumsAndUnionsAreRefused(string keyword)
    {
        JsonNode Value(int i) => keyword == "enum" ? JsonValue.Create($"v{i}") : new JsonObject { ["const"] = $"v{i}" };
        var over = new JsonObject { [keyword] = new JsonArray(Enumerable.Range(0, 1000 + 1).Select(Value).ToArray()) };
        var e = Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert(over.ToJsonString()));
        Assert.Equal("JsonSchemaUnsupported", e.ErrorId);
        Assert.Contains($"'{keyword}' with 1001 values", e.Message);
        var limit = new JsonObject { [keyword] = new JsonArray(Enumerable.Range(0, 1000).Select(Value).ToArray()) };
        Assert.Contains("root ::=", JsonSchemaGrammar.Convert(limit.ToJsonString()));
        // allOf's enum intersection (n*m comparisons) is bounded too.
        var both = new JsonObject { ["allOf"] = new JsonArray(over.DeepClone(), over.DeepClone()) };
        if (keyword == "enum") Assert.Equal("JsonSchemaUnsupported", Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert(both.ToJsonString())).ErrorId);
    }

    [Fact]
    public void IntegerBoundsBeyondDecimalAreNumbers()
    {
        // -1e300 is a number (it used to be "'minimum' must be a number"): as good as no bound.
        Assert.Contains("root ::=", JsonSchemaGrammar.Convert("""{"type":"integer","minimum":-1e300,"maximum":1e300}"""));
        Assert.Equal("JsonSchemaInvalid", Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert("""{"type":"integer","minimum":1e300}""")).ErrorId);
    }

    [Fact]
    public async Task TheServerAnswersHostileSchemasWith400InOpenAisShape()
    {
        var server = LlmServer.Start(new LlmServerOptions { Port = 0, ContextOptions = new ContextOptions { Threads = 1, ContextSize = 256 } },
            [new LlmServerModel(TestFiles.TinyModelPath, "tiny")], NullEngineEvents.Instance, default);
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(server.Endpoint + "/") };
            foreach (var schema in new[] { """{"allOf":[{"required":5},{"required":["a"]}]}""", """{"type":5}""" })
            {
                var body = """{"model":"tiny","prompt":"a","max_tokens":2,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":""" + schema + "}}}";
                var response = await http.PostAsync("completions", new StringContent(body, Encoding.UTF8, "application/json"));
                var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
                Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
                Assert.Equal("invalid_request_error", (string?)json["error"]!["type"]);
                Assert.Equal("JsonSchemaInvalid", (string?)json["error"]!["code"]);
            }
        }
        finally
        {
            server.Stop();
        }
    }
}
