using System.Text.Json;
using Json.Schema;
using LlmTools.Engine.Grammar;
using LlmTools.Engine.Tools;
using LlmTools.TestModels;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// Tools in chat: definitions, the lazy grammar, tool calls forced and parsed on the tiny ChatML model with a template
/// that renders tools (Hermes style, inline so the test runs without ../shared), and each template family's calls parsed
/// from what the real templates render.
/// </summary>
public class ToolTests
{
    private static readonly Lazy<string> Model = new(() =>
    {
        var o = TinyChatModel.Options();
        o.ChatTemplate = TinyChatModel.HermesToolsTemplate;
        o.Name = "tiny-tools-test";
        return TinyModel.Write(TestFiles.NewPath("tools.gguf"), o);
    });

    private const string WeatherSchema = """
        {"type":"object","properties":{"city":{"type":"string","enum":["Paris","Oslo","Lima"],"description":"The city"},
         "days":{"type":"integer","minimum":1,"maximum":7}},"required":["city","days"]}
        """;
    private static readonly ToolDefinition Weather = ToolDefinition.Create("get_weather", "Get the weather for a city", WeatherSchema);
    private static readonly ToolDefinition Clock = ToolDefinition.Create("get_time", "The time now", """{"type":"object","properties":{}}""");

    private static readonly CompletionOptions Greedy = new() { Temperature = 0, RepeatPenalty = 1, MaxTokens = 120 };

    private static ChatSession NewSession(ToolChoice choice, params ToolDefinition[] tools)
    {
        var lease = ModelCache.Instance.Acquire(Model.Value, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var format = ChatFormat.ForModel(lease, null, NullEngineEvents.Instance);
        var session = new ChatSession(lease, format, "You help.", Greedy, new ContextOptions { Threads = 1, ContextSize = 1024 }, NullEngineEvents.Instance)
        {
            Tools = tools,
            ToolChoice = choice,
        };
        return session;
    }

    [Fact]
    public void ARequiredCallParsesItsArgumentsValidateAndTheResultJoinsTheHistory()
    {
        using var session = NewSession(new ToolChoice(ToolChoiceMode.Required), Weather, Clock);
        Assert.Equal(ToolCallFamily.Hermes, session.ToolFormat.Family);
        var reply = session.Send("What is the weather in Paris?", NullEngineEvents.Instance, default);
        Assert.True(reply.StopReason == LlmStopReason.EndOfText, $"{reply.StopReason}: {reply.Text} {string.Join(", ", reply.ToolCalls)}");
        Assert.NotEmpty(reply.ToolCalls);
        var call = reply.ToolCalls[0];
        Assert.Contains(call.Name, new[] { "get_weather", "get_time" });
        Assert.Matches("^[A-Za-z0-9]{9}$", call.Id);
        foreach (var c in reply.ToolCalls)
        {
            var s = JsonSchema.FromText(c.Name == "get_weather" ? WeatherSchema : Clock.ParametersSchema);
            Assert.True(s.Evaluate(JsonDocument.Parse(c.ArgumentsJson).RootElement).IsValid, c.ArgumentsJson);
        }
        // The session keeps the call as an assistant message with tool_calls, not as text.
        var assistant = session.Messages[^1];
        Assert.Equal("assistant", assistant.Role);
        Assert.Equal(reply.ToolCalls.Count, assistant.ToolCalls!.Count);

        // The result goes back as a tool message; after it the model answers (Auto: it may not be forced again).
        var results = reply.ToolCalls.Select(c => new LlmToolResult { Call = c, Content = "{\"temperature\": 21}", Succeeded = true }).ToList();
        var next = session.SendToolResults(results, NullEngineEvents.Instance, default);
        var tool = session.Messages.Single(m => m.Role == "tool" && m.ToolCallId == call.Id);
        Assert.Equal("{\"temperature\": 21}", tool.Content);
        Assert.Equal(call.Name, tool.Name);
        Assert.Equal(1, next.Turn); // the tool round is part of the first exchange
        Assert.Equal(1, session.Turns);
        // The template shows the call and the result to the model the next time.
        var prompt = session.Format.Render(session.Messages, addGenerationPrompt: true);
        Assert.Contains("<tool_call>\n{\"name\": \"" + call.Name + "\", \"arguments\": ", prompt);
        Assert.Contains("<tool_response>\n{\"temperature\": 21}\n</tool_response>", prompt);

        // Saved and loaded, the conversation keeps its tool calls and results.
        var json = session.ToJson();
        Assert.Contains("\"tool_calls\"", json);
        using var copy = NewSession(ToolChoice.Auto, Weather, Clock);
        copy.LoadJson(json);
        Assert.Equal(session.Messages.Select(m => m.ToString()), copy.Messages.Select(m => m.ToString()));
        Assert.Equal(call.Id, copy.Messages.First(m => m.ToolCalls is not null).ToolCalls![0].Id);
    }

    [Fact]
    public void ANamedChoiceCallsThatToolAndTheArgumentsFollowItsSchema()
    {
        using var session = NewSession(new ToolChoice(ToolChoiceMode.Named, "get_weather"), Clock, Weather);
        var reply = session.Send("Weather?", NullEngineEvents.Instance, default);
        Assert.NotEmpty(reply.ToolCalls);
        Assert.All(reply.ToolCalls, c => Assert.Equal("get_weather", c.Name));
        var args = reply.ToolCalls[0].Arguments;
        Assert.Contains((string)args["city"]!, new[] { "Paris", "Oslo", "Lima" });
        Assert.InRange((long)args["days"]!, 1, 7);
    }

    [Fact]
    public void WithToolChoiceNoneTheToolsAreShownButNoCallIsMade()
    {
        using var session = NewSession(new ToolChoice(ToolChoiceMode.None), Weather);
        var reply = session.Send("Hi", NullEngineEvents.Instance, default);
        Assert.Empty(reply.ToolCalls);
        Assert.Contains("get_weather", session.Format.Render(session.Messages, true, new[] { Weather.ToTemplateValue() }));
    }

    [Fact]
    public void WithToolChoiceAutoATextReplyIsTheSameAsWithoutTheGrammar()
    {
        // The lazy grammar waits for "<tool_call>": a model that answers in text answers exactly as with None.
        using var auto = NewSession(ToolChoice.Auto, Weather);
        using var none = NewSession(new ToolChoice(ToolChoiceMode.None), Weather);
        var a = auto.Send("Tell me a story", NullEngineEvents.Instance, default);
        var b = none.Send("Tell me a story", NullEngineEvents.Instance, default);
        Assert.DoesNotContain("<tool_call>", b.Text);
        Assert.Equal(b.Text, a.Text);
        Assert.Empty(a.ToolCalls);
        Assert.True(a.CompletionTokens > 5);
    }

    private sealed class Warnings : IEngineEvents
    {
        public List<string> Seen { get; } = [];
        public void Progress(string activity, string status, double fraction) { }
        public void Text(string chunk) { }
        public void Verbose(string message) { }
        public void Warning(string message) => Seen.Add(message);
    }

    [Fact]
    public void ATemplateThatDoesNotShowTheToolsIsAWarning()
    {
        var path = TinyChatModel.Write(TestFiles.NewPath("plain-chatml.gguf")); // ChatML that ignores 'tools'
        var lease = ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        using var session = new ChatSession(lease, ChatFormat.ForModel(lease, null, NullEngineEvents.Instance), null, Greedy with { MaxTokens = 4 },
            new ContextOptions { Threads = 1, ContextSize = 512 }, NullEngineEvents.Instance) { Tools = [Weather], ToolChoice = new ToolChoice(ToolChoiceMode.None) };
        var events = new Warnings();
        session.Send("Hi", events, default);
        Assert.Contains(events.Seen, w => w.Contains("does not show tools", StringComparison.Ordinal));
        // The tools template shows them: no warning.
        using var shown = NewSession(new ToolChoice(ToolChoiceMode.None), Weather);
        var quiet = new Warnings();
        shown.Send("Hi", quiet, default);
        Assert.Empty(quiet.Seen);
    }

    [Fact]
    public void ToolChoiceAndDefinitionsAreChecked()
    {
        using var session = NewSession(ToolChoice.Auto, Weather);
        var e = Assert.Throws<LlmException>(() => session.ToolChoice = new ToolChoice(ToolChoiceMode.Named, "nope"));
        Assert.Equal("ToolChoiceUnknown", e.ErrorId);
        Assert.Equal("ToolNameDuplicate", Assert.Throws<LlmException>(() => session.Tools = [Weather, Weather]).ErrorId);
        Assert.Equal("ToolDefinitionInvalid", Assert.Throws<LlmException>(() => ToolDefinition.Create("has space", null, null)).ErrorId);
        Assert.Equal("ToolDefinitionInvalid", Assert.Throws<LlmException>(() => ToolDefinition.FromJson("{\"type\":\"function\"}")).ErrorId);
        Assert.Equal("JsonSchemaUnsupported", Assert.Throws<LlmException>(() =>
            ToolDefinition.Create("x", null, """{"type":"object","properties":{"a":{"not":{"type":"string"}}}}""")).ErrorId);
        var t = ToolDefinition.FromJson("""{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}""");
        Assert.Equal(("f", "d"), (t.Name, t.Description));
        Assert.Equal(JsonDocument.Parse(t.ToJson()).RootElement.GetProperty("function").GetProperty("parameters").GetRawText(),
            JsonDocument.Parse(t.ParametersSchema).RootElement.GetRawText());
        Assert.Equal("NoToolCallsPending", Assert.Throws<LlmException>(() => session.SendToolResults([], NullEngineEvents.Instance, default)).ErrorId);
    }

    /// <summary>
    /// The lazy grammar leaves the text free until the trigger: greedy output equals the unconstrained output up to the
    /// trigger, and after it the grammar's text follows. A trigger that ends inside a token (the first letters of a
    /// word the model writes as one token) gives the rest of that token to the grammar.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ALazyGrammarAppliesFromTheTriggerOn(bool midToken)
    {
        using var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var options = new CompletionOptions { Temperature = 0, RepeatPenalty = 1, MaxTokens = 30 };
        var context = new ContextOptions { Threads = 1, ContextSize = 256 };
        var free = CompletionEngine.Complete(lease, "Once upon a time", options, context, NullEngineEvents.Instance, default);
        // A word of five or more letters the model wrote, at its first occurrence, that is one token of the vocabulary
        // (so that a trigger of its first letters ends inside a token, and the token's rest goes to the grammar).
        var word = System.Text.RegularExpressions.Regex.Matches(free.Text, " [A-Za-z]{5,}\\b")
            .First(m => free.Text.IndexOf(m.Value, StringComparison.Ordinal) == m.Index
                        && CompletionEngine.Tokenize(lease, m.Value[1..], addSpecial: false).Pieces is [var piece] && piece == m.Value);
        var trigger = midToken ? word.Value[..3] : word.Value;
        var rest = midToken ? word.Value[3..] : "";
        var lazy = LazyGrammar.Make($"root ::= \"{rest} [done]\"", [trigger]);
        Assert.Equal([trigger], LazyGrammar.Triggers(lazy));
        var r = CompletionEngine.Complete(lease, "Once upon a time", options with { Grammar = lazy }, context, NullEngineEvents.Instance, default);
        Assert.Equal(free.Text[..(word.Index + word.Length)] + " [done]", r.Text);
        Assert.Equal(LlmStopReason.EndOfText, r.StopReason);
        // A trigger that never comes leaves the text as it was.
        var never = CompletionEngine.Complete(lease, "Once upon a time", options with { Grammar = LazyGrammar.Make("root ::= \"x\"", ["\u00a7never\u00a7"]) },
            context, NullEngineEvents.Instance, default);
        Assert.Equal(free.Text, never.Text);
    }

    [Fact]
    public void EveryFamilysGrammarPassesTheCheckerAndPrefixesItsRules()
    {
        foreach (var family in Enum.GetValues<ToolCallFamily>())
            foreach (var required in new[] { false, true })
            {
                var g = ToolCallFormat.Of(family).Grammar([Weather, Clock], required);
                GbnfGrammar.Parse(g);
                Assert.Equal(!required, LazyGrammar.Triggers(g).Count == 1);
            }
        Assert.Equal("t0-root ::= \"a-b\" [x-z]{1,2} t0-r_1 # c-d\n", ToolCallFormat.Prefixed("root ::= \"a-b\" [x-z]{1,2} r_1 # c-d\n", "t0-"));
    }

    public static TheoryData<ToolCallFamily, string, string> Replies() => new()
    {
        // What the shared templates render for an assistant message with one tool call (render.py, jinja2).
        { ToolCallFamily.Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>", "" },
        { ToolCallFamily.Hermes, "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>", "Let me look." },
        { ToolCallFamily.Llama3Json, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 2}}", "" },
        { ToolCallFamily.Llama3Json, "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 2}}", "" },
        { ToolCallFamily.MistralArgs, "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\", \"days\": 2}", "" },
        // [TOOL_CALLS] is a control token there: the reply's text may not show it.
        { ToolCallFamily.MistralArgs, "get_weather[ARGS]{\"city\": \"Paris\", \"days\": 2}", "" },
        { ToolCallFamily.MistralJson, "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}, \"id\": \"abcDEF123\"}]", "" },
        { ToolCallFamily.Apriel, "<tool_calls>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}, \"id\": \"call_1\"}]</tool_calls>", "" },
        { ToolCallFamily.QwenXml, "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>", "" },
        { ToolCallFamily.Glm, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>days</arg_key><arg_value>2</arg_value></tool_call>", "" },
        { ToolCallFamily.Functionary, "<function=get_weather>{\"city\": \"Paris\", \"days\": 2}</function>", "" },
        { ToolCallFamily.Kimi, "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\", \"days\": 2}<|tool_call_end|><|tool_calls_section_end|>", "" },
        { ToolCallFamily.Pythonic, "<|tool_call_start|>[get_weather(city='Paris', days=2)]<|tool_call_end|>", "" },
        { ToolCallFamily.Pythonic, "[get_weather(city='Paris', days=2)]", "" },
        // Kimi's markers are control tokens: the reply's text may show only what is between them.
        { ToolCallFamily.Kimi, "Sure.functions.get_weather:0{\"city\": \"Paris\", \"days\": 2}", "Sure." },
    };

    [Theory]
    [MemberData(nameof(Replies))]
    public void EachFamilysCallIsParsed(ToolCallFamily family, string text, string content)
    {
        var parsed = ToolCallFormat.Of(family).Parse(text, [Weather, Clock]);
        var call = Assert.Single(parsed.Calls);
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Paris", call.Arguments["city"]);
        Assert.Equal(2L, call.Arguments["days"]);
        Assert.Equal(content, parsed.Content);
    }

    [Fact]
    public void PythonCallsReadTheirLiterals()
    {
        var parsed = ToolCallFormat.Of(ToolCallFamily.Pythonic).Parse(
            "<|tool_call_start|>[get_weather(city='it's Paris', days=2), get_time(), f(a=[1, 'x', True], b={\"k\": null}, c=-1.5, d=None)]<|tool_call_end|>", [Weather, Clock]);
        Assert.Equal(["get_weather", "get_time", "f"], parsed.Calls.Select(c => c.Name));
        Assert.Equal("it's Paris", parsed.Calls[0].Arguments["city"]);
        Assert.Equal("""{"a":[1,"x",true],"b":{"k":null},"c":-1.5,"d":null}""", parsed.Calls[2].ArgumentsJson);
        // Optional arguments: ", " only between those written.
        var g = ToolCallFormat.Of(ToolCallFamily.Pythonic).Grammar([ToolDefinition.Create("o", null,
            """{"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"integer"},"c":{"type":"string"}},"required":["b"]}""")], true);
        GbnfGrammar.Parse(g);
        Assert.Contains("t0-args0-f ::= ( \"a=\" ( \"True\" | \"False\" ) t0-args1-n ) | ( t0-args1-f )", g);
        Assert.Contains("t0-args1-n ::= \", \" \"b=\"", g);
        Assert.Contains("t0-args2-n ::= ( \", \" \"c=\" \"'\" [^'\\n]* \"'\" )?", g);
    }

    [Fact]
    public void TextThatIsNoCallStaysText()
    {
        foreach (var family in Enum.GetValues<ToolCallFamily>())
        {
            var f = ToolCallFormat.Of(family);
            Assert.Empty(f.Parse("The weather is fine.", [Weather]).Calls);
            // A call cut short (MaxTokens) is not a call.
            Assert.Empty(f.Parse(f.Trigger + "{\"name\": \"get_weather\", \"argu", [Weather]).Calls);
        }
    }

    private static string? TemplatesFolder =>
        TestFiles.SharedModels is { } models && Directory.Exists(Path.Combine(models, "..", "templates"))
            ? Path.GetFullPath(Path.Combine(models, "..", "templates")) : null;

    /// <summary>
    /// The real templates: each is recognised as its family, and the call it renders in an assistant message (through
    /// this project's renderer) parses back to the same call. This is the round trip of a conversation with tools.
    /// </summary>
    [SkippableTheory]
    [InlineData("Qwen-Qwen2.5-7B-Instruct", ToolCallFamily.Hermes)]
    [InlineData("Qwen-QwQ-32B", ToolCallFamily.Hermes)]
    [InlineData("ibm-granite-granite-4.1", ToolCallFamily.Hermes)]
    [InlineData("meta-llama-Llama-3.2-3B-Instruct", ToolCallFamily.Llama3Json)]
    [InlineData("unsloth-mistral-Devstral-Small-2507", ToolCallFamily.MistralArgs)]
    [InlineData("mistralai-Ministral-3-14B-Reasoning-2512", ToolCallFamily.MistralArgs)]
    [InlineData("Apriel-1.6-15b-Thinker-fixed", ToolCallFamily.Apriel)]
    [InlineData("Qwen3.5-4B", ToolCallFamily.QwenXml)]
    [InlineData("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", ToolCallFamily.QwenXml)]
    [InlineData("GLM-4.7-Flash", ToolCallFamily.Glm)]
    [InlineData("meetkai-functionary-medium-v3.1", ToolCallFamily.Functionary)]
    [InlineData("moonshotai-Kimi-K2", ToolCallFamily.Kimi)]
    [InlineData("LFM2.5-8B-A1B", ToolCallFamily.Pythonic)]
    public void TheSharedTemplatesCallsRoundTrip(string template, ToolCallFamily family)
    {
        Skip.If(TemplatesFolder is null, "../shared/templates is absent (a fresh clone)");
        var source = File.ReadAllText(Path.Combine(TemplatesFolder!, template + ".jinja"));
        var format = ToolCallFormat.For(source);
        Assert.Equal(family, format.Family);
        var chat = ChatFormat.FromTemplate(source, "<s>", "</s>");
        var call = new LlmToolCall("abcDEF123", "get_weather", "{\"city\": \"Paris\", \"days\": 2}");
        var messages = new List<LlmChatMessage>
        {
            new("user", "Weather in Paris?"),
            new("assistant", "") { ToolCalls = [call] },
            new("tool", "{\"temp\": 21}") { ToolCallId = call.Id, Name = call.Name },
        };
        var tools = new[] { Weather.ToTemplateValue() };
        var before = chat.Render(messages[..1], addGenerationPrompt: true, tools);
        var after = chat.Render(messages[..2], addGenerationPrompt: false, tools);
        var full = chat.Render(messages, addGenerationPrompt: true, tools);
        Assert.Contains("21", full); // the tool result is shown
        // The assistant's part: what follows the user's message.
        Assert.StartsWith(before[..before.LastIndexOf("Weather in Paris?", StringComparison.Ordinal)], after);
        var reply = after[(after.LastIndexOf("Weather in Paris?", StringComparison.Ordinal) + "Weather in Paris?".Length)..];
        var parsed = format.Parse(reply, [Weather]);
        var back = Assert.Single(parsed.Calls);
        Assert.Equal("get_weather", back.Name);
        Assert.Equal("Paris", back.Arguments["city"]);
        Assert.Equal(2L, back.Arguments["days"]);
    }
}
