using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LlmTools.Engine.Grammar;
using LlmTools.Engine.Tools;

namespace LlmTools.Server;

/// <summary>A request the server refuses, written as OpenAI's error object with this HTTP status.</summary>
internal sealed class OpenAiError(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    /// <summary>Seconds a client should wait before retrying (Retry-After), for 429/503.</summary>
    public int? RetryAfter { get; init; }

    public static OpenAiError BadRequest(string message, string? param = null, string? code = null) => new(400, message, param: param, code: code);

    /// <summary>{"error":{"message","type","param","code"}}, as OpenAI sends it.</summary>
    public byte[] ToJson() => OpenAiJson.Write(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", Message);
        w.WriteString("type", Type);
        if (Param is null) w.WriteNull("param"); else w.WriteString("param", Param);
        if (Code is null) w.WriteNull("code"); else w.WriteString("code", Code);
        w.WriteEndObject();
        w.WriteEndObject();
    });
}

internal static class OpenAiJson
{
    private static readonly JsonWriterOptions Options = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static byte[] Write(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, Options)) write(w);
        return buffer.WrittenSpan.ToArray();
    }

    public static void WriteUsage(Utf8JsonWriter w, LlmCompletionResult r)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", r.PromptTokens);
        w.WriteNumber("completion_tokens", r.CompletionTokens);
        w.WriteNumber("total_tokens", r.PromptTokens + r.CompletionTokens);
        w.WriteStartObject("prompt_tokens_details");
        w.WriteNumber("cached_tokens", r.CachedPromptTokens);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>OpenAI's finish_reason: "stop" (end of text or a stop sequence), "length" (max_tokens or a full context).</summary>
    public static string? FinishReason(LlmStopReason reason) => reason switch
    {
        LlmStopReason.EndOfText or LlmStopReason.StopString => "stop",
        LlmStopReason.MaxTokens or LlmStopReason.ContextFull => "length",
        _ => null,
    };
}

/// <summary>What a completion or chat request asks for, read and checked field by field (unknown fields are ignored).</summary>
internal sealed class OpenAiRequest
{
    public string? Model { get; private init; }
    public bool Stream { get; private init; }
    public bool IncludeUsage { get; private init; }
    public bool Echo { get; private init; }
    /// <summary>max_tokens / max_completion_tokens; null when not given.</summary>
    public int? MaxTokens { get; private init; }
    public string? Prompt { get; private init; }
    public List<LlmChatMessage>? Messages { get; private init; }
    /// <summary>The tools the model may call (chat only); empty when none were sent.</summary>
    public IReadOnlyList<ToolDefinition> Tools { get; private init; } = [];
    public ToolChoice ToolChoice { get; private init; } = ToolChoice.Auto;
    public required CompletionOptions Options { get; init; }

    /// <summary>OpenAI's limit on tools per request.</summary>
    public const int MaxTools = 128;

    public static OpenAiRequest Parse(JsonElement root, bool chat)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw OpenAiError.BadRequest("The request body must be a JSON object.");
        var r = new Reader(root);

        int n = r.Int("n") ?? 1;
        if (n != 1) throw OpenAiError.BadRequest($"n {n} is not supported: this server returns one choice per request (send n requests).", "n");
        if (root.TryGetProperty("logprobs", out var lp) &&
            (lp.ValueKind == JsonValueKind.True || (lp.ValueKind == JsonValueKind.Number && lp.GetDouble() != 0)))
            throw OpenAiError.BadRequest("logprobs are not supported by this server.", "logprobs");
        if (!chat && r.Has("tools")) throw OpenAiError.BadRequest("tools are only for /v1/chat/completions.", "tools");
        if (r.Has("functions")) throw OpenAiError.BadRequest("functions are not supported by this server.", "functions");
        string? grammar = ParseGrammar(root, r);
        if (r.Has("logit_bias") && root.GetProperty("logit_bias") is { ValueKind: JsonValueKind.Object } bias && bias.EnumerateObject().Any())
            throw OpenAiError.BadRequest("logit_bias is not supported by this server.", "logit_bias");
        if (r.String("suffix") is { Length: > 0 }) throw OpenAiError.BadRequest("suffix (insertion) is not supported by this server.", "suffix");
        // OpenAI's meaning and range; applied as llama.cpp's penalties sampler does, over the last repeat_last_n tokens.
        double frequencyPenalty = r.Number("frequency_penalty") ?? 0;
        if (frequencyPenalty is < -2 or > 2) throw OpenAiError.BadRequest($"frequency_penalty {frequencyPenalty} is out of range: use -2 to 2 (0 is off).", "frequency_penalty");
        double presencePenalty = r.Number("presence_penalty") ?? 0;
        if (presencePenalty is < -2 or > 2) throw OpenAiError.BadRequest($"presence_penalty {presencePenalty} is out of range: use -2 to 2 (0 is off).", "presence_penalty");

        bool stream = r.Bool("stream") ?? false;
        bool includeUsage = false;
        if (r.Has("stream_options") && root.GetProperty("stream_options") is { ValueKind: JsonValueKind.Object } so)
        {
            if (!stream) throw OpenAiError.BadRequest("stream_options is only allowed when stream is true.", "stream_options");
            includeUsage = new Reader(so, "stream_options.").Bool("include_usage") ?? false;
        }

        string maxName = chat && r.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        int? maxTokens = r.Int(maxName);
        if (maxTokens is < 1) throw OpenAiError.BadRequest($"{maxName} {maxTokens} is out of range: use 1 or more.", maxName);

        double temperature = r.Number("temperature") ?? 1;
        if (temperature < 0) throw OpenAiError.BadRequest($"temperature {temperature} is out of range: use 0 (greedy) or more.", "temperature");
        double topP = r.Number("top_p") ?? 1;
        if (topP is <= 0 or > 1) throw OpenAiError.BadRequest($"top_p {topP} is out of range: use more than 0 up to 1.", "top_p");
        int topK = r.Int("top_k") ?? 0;
        if (topK < 0) throw OpenAiError.BadRequest($"top_k {topK} is out of range: use 0 (off) or more.", "top_k");
        double minP = r.Number("min_p") ?? 0;
        if (minP is < 0 or >= 1) throw OpenAiError.BadRequest($"min_p {minP} is out of range: use 0 (off) up to less than 1.", "min_p");
        double repeatPenalty = r.Number("repeat_penalty") ?? 1;
        if (repeatPenalty <= 0) throw OpenAiError.BadRequest($"repeat_penalty {repeatPenalty} is out of range: use more than 0 (1 is off).", "repeat_penalty");
        int repeatLastN = r.Int("repeat_last_n") ?? 64;
        if (repeatLastN < 0) throw OpenAiError.BadRequest($"repeat_last_n {repeatLastN} is out of range: use 0 or more.", "repeat_last_n");
        uint? seed = null;
        if (r.Long("seed") is { } s)
        {
            // -1 means "pick one", as in llama-server; any other value must fit the sampler's 32-bit seed.
            if (s != -1 && s is < 0 or > uint.MaxValue)
                throw OpenAiError.BadRequest($"seed {s} is out of range: use 0 to {uint.MaxValue}.", "seed");
            seed = s == -1 ? null : (uint)s;
        }

        var stop = new List<string>();
        if (r.Has("stop"))
        {
            var st = root.GetProperty("stop");
            if (st.ValueKind == JsonValueKind.String) stop.Add(st.GetString()!);
            else if (st.ValueKind == JsonValueKind.Array)
            {
                foreach (var e in st.EnumerateArray())
                {
                    if (e.ValueKind != JsonValueKind.String) throw OpenAiError.BadRequest("stop must be a string or an array of strings.", "stop");
                    stop.Add(e.GetString()!);
                }
            }
            else if (st.ValueKind != JsonValueKind.Null) throw OpenAiError.BadRequest("stop must be a string or an array of strings.", "stop");
            if (stop.Count > 16) throw OpenAiError.BadRequest($"stop has {stop.Count} sequences; use at most 16.", "stop");
            if (stop.Any(x => x.Length == 0)) throw OpenAiError.BadRequest("A stop sequence is empty.", "stop");
        }

        string? prompt = null;
        List<LlmChatMessage>? messages = null;
        IReadOnlyList<ToolDefinition> toolList = [];
        var toolChoice = ToolChoice.Auto;
        if (chat)
        {
            messages = ParseMessages(root);
            toolList = ParseTools(root);
            toolChoice = ParseToolChoice(root, toolList);
        }
        else prompt = ParsePrompt(root);

        return new OpenAiRequest
        {
            Model = r.String("model"),
            Stream = stream,
            IncludeUsage = includeUsage,
            Echo = !chat && (r.Bool("echo") ?? false),
            MaxTokens = maxTokens,
            Prompt = prompt,
            Messages = messages,
            Tools = toolList,
            ToolChoice = toolChoice,
            Options = new CompletionOptions
            {
                // OpenAI's meaning: temperature 1 and top_p 1 by default, no other truncation, no penalty.
                Temperature = (float)temperature,
                TopP = (float)topP,
                TopK = topK,
                MinP = (float)minP,
                RepeatPenalty = (float)repeatPenalty,
                RepeatLastN = repeatLastN,
                FrequencyPenalty = (float)frequencyPenalty,
                PresencePenalty = (float)presencePenalty,
                Seed = seed,
                Stop = stop,
                MaxTokens = maxTokens ?? CompletionOptions.DefaultMaxTokens,
                Grammar = grammar,
            },
        };
    }

    /// <summary>Any JSON object: what response_format json_object asks for (llama-server uses the same schema).</summary>
    private static readonly Lazy<string> AnyObject = new(() => JsonSchemaGrammar.Convert("""{"type":"object"}"""));

    /// <summary>
    /// The GBNF grammar the output must follow, from response_format (json_object, or json_schema through the module's
    /// JSON-schema converter), or llama.cpp's extensions json_schema and grammar; null for free text. A schema keyword the
    /// converter cannot enforce, or a bad grammar, is a 400 naming it: checked here, never in native code.
    /// </summary>
    private static string? ParseGrammar(JsonElement root, Reader r)
    {
        var sources = new List<string>();
        string? gbnf = null;
        if (r.Has("response_format"))
        {
            var format = root.GetProperty("response_format");
            if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var ft) || ft.ValueKind != JsonValueKind.String)
                throw OpenAiError.BadRequest("response_format must be an object with a type: text, json_object or json_schema.", "response_format");
            switch (ft.GetString())
            {
                case "text":
                    break;
                case "json_object":
                    gbnf = AnyObject.Value;
                    sources.Add("response_format");
                    break;
                case "json_schema":
                    if (!format.TryGetProperty("json_schema", out var js) || js.ValueKind != JsonValueKind.Object)
                        throw OpenAiError.BadRequest("response_format.json_schema is required: {\"name\": ..., \"schema\": {...}}.", "response_format.json_schema");
                    var jr = new Reader(js, "response_format.json_schema.");
                    jr.String("name");
                    jr.Bool("strict"); // the output always follows the schema: strict or not is the same here
                    gbnf = js.TryGetProperty("schema", out var schema) && schema.ValueKind != JsonValueKind.Null
                        ? SchemaGrammar(schema, "response_format.json_schema.schema")
                        : AnyObject.Value;
                    sources.Add("response_format");
                    break;
                case var other:
                    throw OpenAiError.BadRequest($"response_format type '{other}' is not supported: use text, json_object or json_schema.", "response_format.type");
            }
        }
        if (r.Has("json_schema"))
        {
            gbnf = SchemaGrammar(root.GetProperty("json_schema"), "json_schema");
            sources.Add("json_schema");
        }
        if (r.String("grammar") is { } g)
        {
            try
            {
                GbnfGrammar.Parse(g);
            }
            catch (LlmException e)
            {
                throw OpenAiError.BadRequest($"grammar: {e.Message}", "grammar", e.ErrorId);
            }
            gbnf = g;
            sources.Add("grammar");
        }
        if (sources.Count > 1)
            throw OpenAiError.BadRequest($"{string.Join(" and ", sources)} both constrain the output: give one of them.", sources[1]);
        return gbnf;
    }

    private static string SchemaGrammar(JsonElement schema, string param)
    {
        if (schema.ValueKind is not (JsonValueKind.Object or JsonValueKind.True))
            throw OpenAiError.BadRequest($"{param} must be a JSON schema object.", param);
        try
        {
            var gbnf = JsonSchemaGrammar.Convert(JsonNode.Parse(schema.GetRawText()));
            GbnfGrammar.Parse(gbnf);
            return gbnf;
        }
        catch (LlmException e)
        {
            // e.g. "The JSON schema uses the keyword 'if' at '#', which constrained output cannot enforce."
            throw OpenAiError.BadRequest($"{param}: {e.Message}", param, e.ErrorId);
        }
    }

    private static string ParsePrompt(JsonElement root)
    {
        if (!root.TryGetProperty("prompt", out var p) || p.ValueKind == JsonValueKind.Null)
            throw OpenAiError.BadRequest("prompt is required.", "prompt");
        if (p.ValueKind == JsonValueKind.String) return p.GetString()!;
        if (p.ValueKind == JsonValueKind.Array && p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String) return p[0].GetString()!;
        throw OpenAiError.BadRequest("prompt must be a string (or an array of one string); token arrays and several prompts per request are not supported.", "prompt");
    }

    private static List<LlmChatMessage> ParseMessages(JsonElement root)
    {
        if (!root.TryGetProperty("messages", out var arr) || arr.ValueKind != JsonValueKind.Array || arr.GetArrayLength() == 0)
            throw OpenAiError.BadRequest("messages is required: a non-empty array of {role, content} objects.", "messages");
        var list = new List<LlmChatMessage>();
        var calls = new Dictionary<string, string>(StringComparer.Ordinal); // tool call id -> tool name, as the messages make them
        int i = 0;
        foreach (var m in arr.EnumerateArray())
        {
            string param = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw OpenAiError.BadRequest($"{param} must be an object with role and content.", param);
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw OpenAiError.BadRequest($"{param}.role is required.", param + ".role");
            string r = role.GetString()!;
            r = r switch
            {
                "developer" => "system", // OpenAI's newer name for the system message
                "system" or "user" or "assistant" or "tool" => r,
                _ => throw OpenAiError.BadRequest($"{param}.role '{r}' is not supported: use system, developer, user, assistant or tool.", param + ".role"),
            };
            string content = "";
            if (m.TryGetProperty("content", out var c))
            {
                if (c.ValueKind == JsonValueKind.String) content = c.GetString()!;
                else if (c.ValueKind == JsonValueKind.Array)
                {
                    var sb = new StringBuilder();
                    foreach (var part in c.EnumerateArray())
                    {
                        if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var t) || t.GetString() != "text" ||
                            !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                            throw OpenAiError.BadRequest($"{param}.content: only text parts are supported.", param + ".content");
                        sb.Append(text.GetString());
                    }
                    content = sb.ToString();
                }
                else if (c.ValueKind != JsonValueKind.Null)
                    throw OpenAiError.BadRequest($"{param}.content must be a string or an array of text parts.", param + ".content");
            }
            var message = new LlmChatMessage(r, content);
            if (r == "assistant" && m.TryGetProperty("tool_calls", out var tc) && tc.ValueKind != JsonValueKind.Null)
            {
                message.ToolCalls = ParseToolCalls(tc, param + ".tool_calls");
                if (message.ToolCalls.Count == 0) message.ToolCalls = null;
                else foreach (var call in message.ToolCalls) calls[call.Id] = call.Name;
            }
            if (r == "tool")
            {
                // A result must answer a call the conversation made, or the template shows the model an orphan.
                if (!m.TryGetProperty("tool_call_id", out var id) || id.ValueKind != JsonValueKind.String || id.GetString()!.Length == 0)
                    throw OpenAiError.BadRequest($"{param}.tool_call_id is required in a tool message.", param + ".tool_call_id");
                if (!calls.TryGetValue(id.GetString()!, out var name))
                    throw OpenAiError.BadRequest($"{param}.tool_call_id '{id.GetString()}' answers no tool call of an earlier assistant message.",
                        param + ".tool_call_id");
                message.ToolCallId = id.GetString();
                message.Name = name;
            }
            list.Add(message);
        }
        return list;
    }

    /// <summary>An assistant message's tool_calls: [{"id", "type": "function", "function": {"name", "arguments": "&lt;JSON&gt;"}}].</summary>
    private static List<LlmToolCall> ParseToolCalls(JsonElement arr, string param)
    {
        if (arr.ValueKind != JsonValueKind.Array) throw OpenAiError.BadRequest($"{param} must be an array of tool calls.", param);
        var result = new List<LlmToolCall>();
        int i = 0;
        foreach (var c in arr.EnumerateArray())
        {
            string p = $"{param}[{i++}]";
            if (c.ValueKind != JsonValueKind.Object) throw OpenAiError.BadRequest($"{p} must be an object.", p);
            if (!c.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String || id.GetString()!.Length == 0)
                throw OpenAiError.BadRequest($"{p}.id is required.", p + ".id");
            if (c.TryGetProperty("type", out var type) && type.ValueKind != JsonValueKind.Null && type.GetString() != "function")
                throw OpenAiError.BadRequest($"{p}.type must be 'function'.", p + ".type");
            if (!c.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object ||
                !f.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0)
                throw OpenAiError.BadRequest($"{p}.function.name is required.", p + ".function.name");
            // OpenAI sends the arguments as a JSON string; an object is taken too.
            string args = "{}";
            if (f.TryGetProperty("arguments", out var a) && a.ValueKind != JsonValueKind.Null)
            {
                string text = a.ValueKind == JsonValueKind.String ? a.GetString()! : a.GetRawText();
                try
                {
                    using var doc = JsonDocument.Parse(text.Length == 0 ? "{}" : text);
                    if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new JsonException("not an object");
                    args = doc.RootElement.GetRawText();
                }
                catch (JsonException)
                {
                    throw OpenAiError.BadRequest($"{p}.function.arguments must be a JSON object (as a string).", p + ".function.arguments");
                }
            }
            result.Add(new LlmToolCall(id.GetString()!, name.GetString()!, args));
        }
        return result;
    }

    /// <summary>tools: [{"type": "function", "function": {"name", "description", "parameters"}}], each checked as the engine's ToolDefinition.</summary>
    private static IReadOnlyList<ToolDefinition> ParseTools(JsonElement root)
    {
        if (!root.TryGetProperty("tools", out var arr) || arr.ValueKind == JsonValueKind.Null) return [];
        if (arr.ValueKind != JsonValueKind.Array)
            throw OpenAiError.BadRequest("tools must be an array of {\"type\": \"function\", \"function\": {name, description, parameters}}.", "tools");
        if (arr.GetArrayLength() > MaxTools) throw OpenAiError.BadRequest($"tools has {arr.GetArrayLength()} tools; use at most {MaxTools}.", "tools");
        var tools = new List<ToolDefinition>();
        int i = 0;
        foreach (var t in arr.EnumerateArray())
        {
            string p = $"tools[{i++}]";
            if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String ||
                type.GetString() != "function" || !t.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object)
                throw OpenAiError.BadRequest($"{p} must be {{\"type\": \"function\", \"function\": {{name, description, parameters}}}}.", p);
            ToolDefinition tool;
            try
            {
                tool = ToolDefinition.FromJson(t.GetRawText());
            }
            catch (LlmException e)
            {
                // The name or the parameters schema (a keyword the grammar cannot enforce): say which.
                bool name = !f.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String || e.Message.Contains("tool name", StringComparison.Ordinal);
                throw OpenAiError.BadRequest($"{p}: {e.Message}", p + (name ? ".function.name" : ".function.parameters"));
            }
            if (tools.Any(x => x.Name == tool.Name))
                throw OpenAiError.BadRequest($"{p}: two tools are named '{tool.Name}'; tool names must differ.", p + ".function.name");
            tools.Add(tool);
        }
        return tools;
    }

    /// <summary>tool_choice: "auto", "none", "required", or {"type": "function", "function": {"name"}} naming one of the tools.</summary>
    private static ToolChoice ParseToolChoice(JsonElement root, IReadOnlyList<ToolDefinition> tools)
    {
        if (!root.TryGetProperty("tool_choice", out var c) || c.ValueKind == JsonValueKind.Null) return ToolChoice.Auto;
        ToolChoice choice;
        if (c.ValueKind == JsonValueKind.String)
        {
            choice = c.GetString() switch
            {
                "auto" => ToolChoice.Auto,
                "none" => new ToolChoice(ToolChoiceMode.None),
                "required" => new ToolChoice(ToolChoiceMode.Required),
                var other => throw OpenAiError.BadRequest($"tool_choice '{other}' is not one of 'auto', 'none', 'required' or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}.", "tool_choice"),
            };
        }
        else if (c.ValueKind == JsonValueKind.Object && c.TryGetProperty("function", out var f) && f.ValueKind == JsonValueKind.Object &&
                 f.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String &&
                 (!c.TryGetProperty("type", out var type) || type.ValueKind == JsonValueKind.Null || type.GetString() == "function"))
        {
            choice = new ToolChoice(ToolChoiceMode.Named, n.GetString());
            if (!tools.Any(t => t.Name == choice.Name))
                throw OpenAiError.BadRequest(tools.Count == 0 ? $"tool_choice names the tool '{choice.Name}' but no tools were given."
                    : $"tool_choice names the tool '{choice.Name}', which is none of the tools ({string.Join(", ", tools.Select(t => t.Name))}).", "tool_choice");
        }
        else throw OpenAiError.BadRequest("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice");
        if (choice.Mode == ToolChoiceMode.Required && tools.Count == 0)
            throw OpenAiError.BadRequest("tool_choice 'required' needs tools: none were given.", "tool_choice");
        return choice;
    }

    /// <summary>Typed access to optional fields; a field of the wrong type is a 400 naming it. null counts as absent.</summary>
    internal readonly struct Reader(JsonElement obj, string prefix = "")
    {
        public bool Has(string name) => obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

        private JsonElement? Get(string name, JsonValueKind kind, string what)
        {
            if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind != kind && !(kind == JsonValueKind.True && v.ValueKind == JsonValueKind.False))
                throw OpenAiError.BadRequest($"{prefix}{name} must be {what}.", prefix + name);
            return v;
        }

        public string? String(string name) => Get(name, JsonValueKind.String, "a string")?.GetString();
        public bool? Bool(string name) => Get(name, JsonValueKind.True, "true or false")?.GetBoolean();

        public double? Number(string name)
        {
            var v = Get(name, JsonValueKind.Number, "a number");
            if (v is null) return null;
            double d = v.Value.GetDouble();
            if (!double.IsFinite(d)) throw OpenAiError.BadRequest($"{prefix}{name} must be a finite number.", prefix + name);
            return d;
        }

        public long? Long(string name)
        {
            var v = Get(name, JsonValueKind.Number, "an integer");
            if (v is null) return null;
            if (!v.Value.TryGetInt64(out long l)) throw OpenAiError.BadRequest($"{prefix}{name} must be an integer.", prefix + name);
            return l;
        }

        public int? Int(string name)
        {
            var l = Long(name);
            if (l is null) return null;
            if (l is < int.MinValue or > int.MaxValue) throw OpenAiError.BadRequest($"{prefix}{name} {l} is out of range.", prefix + name);
            return (int)l;
        }
    }
}

/// <summary>What an embeddings request asks for: the texts (a string or an array of strings), the model, the encoding.</summary>
internal sealed class OpenAiEmbeddingRequest
{
    /// <summary>OpenAI's own limit on inputs per request.</summary>
    public const int MaxInputs = 2048;

    public string? Model { get; private init; }
    public required IReadOnlyList<string> Input { get; init; }
    /// <summary>input was one string (errors then name "input", not "input[0]").</summary>
    public bool Single { get; private init; }
    /// <summary>encoding_format "base64": each vector as the base64 of its little-endian float32s.</summary>
    public bool Base64 { get; private init; }
    /// <summary>dimensions as given: only the model's own length is accepted (no shortened vectors).</summary>
    public int? Dimensions { get; private init; }

    public static OpenAiEmbeddingRequest Parse(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw OpenAiError.BadRequest("The request body must be a JSON object.");
        var r = new OpenAiRequest.Reader(root);
        var format = r.String("encoding_format") ?? "float";
        if (format is not ("float" or "base64"))
            throw OpenAiError.BadRequest($"encoding_format '{format}' is not supported: use float or base64.", "encoding_format");
        int? dims = r.Int("dimensions");
        if (dims is < 1) throw OpenAiError.BadRequest($"dimensions {dims} is out of range: use 1 or more.", "dimensions");
        if (!root.TryGetProperty("input", out var input) || input.ValueKind == JsonValueKind.Null)
            throw OpenAiError.BadRequest("input is required: a string or an array of strings.", "input");
        var texts = new List<string>();
        bool single = false;
        if (input.ValueKind == JsonValueKind.String)
        {
            texts.Add(input.GetString()!);
            single = true;
        }
        else if (input.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var e in input.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.String)
                    throw OpenAiError.BadRequest($"input[{i}] must be a string; token arrays are not supported.", $"input[{i}]");
                texts.Add(e.GetString()!);
                i++;
            }
            if (texts.Count == 0) throw OpenAiError.BadRequest("input is an empty array: give at least one string.", "input");
            if (texts.Count > MaxInputs)
                throw OpenAiError.BadRequest($"input has {texts.Count} strings; send at most {MaxInputs} per request.", "input");
        }
        else throw OpenAiError.BadRequest("input must be a string or an array of strings.", "input");
        return new OpenAiEmbeddingRequest { Model = r.String("model"), Input = texts, Single = single, Base64 = format == "base64", Dimensions = dims };
    }
}
