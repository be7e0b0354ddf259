using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LlmTools.Engine.Grammar;

namespace LlmTools.Engine.Tools;

/// <summary>
/// A tool the model may call: a name, what it does, and the JSON schema of its arguments (an object schema). The
/// engine knows no PowerShell: the module turns commands and script blocks into these.
/// </summary>
public sealed partial class ToolDefinition
{
    private ToolDefinition(string name, string? description, JsonObject parameters)
    {
        Name = name;
        Description = description;
        Parameters = parameters;
    }

    public string Name { get; }
    public string? Description { get; }
    /// <summary>The arguments' JSON schema, as JSON text.</summary>
    public string ParametersSchema => Parameters.ToJsonString();
    internal JsonObject Parameters { get; }

    [GeneratedRegex("^[A-Za-z0-9_.-]{1,64}$")]
    private static partial Regex NamePattern();

    /// <summary>
    /// A tool from its parts. The name is 1-64 letters, digits, '_', '.' or '-' (what OpenAI accepts); the schema must be a
    /// JSON object schema that the grammar converter supports (its arguments are enforced by grammar). Throws
    /// ToolDefinitionInvalid, or JsonSchemaUnsupported naming a keyword it cannot enforce.
    /// </summary>
    public static ToolDefinition Create(string name, string? description, string? parametersSchemaJson)
    {
        if (string.IsNullOrEmpty(name) || !NamePattern().IsMatch(name))
            throw Invalid($"The tool name '{name}' is not 1-64 letters, digits, '_', '.' or '-'.", name);
        JsonNode? node;
        try
        {
            node = string.IsNullOrWhiteSpace(parametersSchemaJson) ? new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() }
                : JsonNode.Parse(parametersSchemaJson);
        }
        catch (JsonException e)
        {
            throw Invalid($"The parameters schema of tool '{name}' is not valid JSON: {e.Message}", name, e);
        }
        if (node is not JsonObject schema)
            throw Invalid($"The parameters schema of tool '{name}' must be a JSON object schema.", name);
        if (schema["type"] is JsonValue t && t.GetValueKind() == JsonValueKind.String && t.GetValue<string>() != "object")
            throw Invalid($"The parameters schema of tool '{name}' must describe an object (\"type\": \"object\"), not '{t}'.", name);
        JsonSchemaGrammar.Convert(schema.DeepClone()); // every keyword enforceable, or an error naming it now
        return new ToolDefinition(name, string.IsNullOrEmpty(description) ? null : description, schema);
    }

    /// <summary>
    /// A tool from JSON: OpenAI's {"type": "function", "function": {"name", "description", "parameters"}}, or the inner
    /// {"name", "description", "parameters"} alone.
    /// </summary>
    public static ToolDefinition FromJson(string json)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw Invalid($"The tool definition is not valid JSON: {e.Message}", json, e);
        }
        if (node is not JsonObject o)
            throw Invalid("A tool definition is a JSON object: {\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}.", json);
        if (o["type"] is JsonValue type && type.GetValueKind() == JsonValueKind.String && type.GetValue<string>() != "function")
            throw Invalid($"Only function tools are supported, not '{type}'.", json);
        var f = o["function"] as JsonObject ?? o;
        if (f["name"] is not JsonValue n || n.GetValueKind() != JsonValueKind.String)
            throw Invalid("A tool definition needs a function name (\"function\": {\"name\": ...}).", json);
        string? description = f["description"] is JsonValue d && d.GetValueKind() == JsonValueKind.String ? d.GetValue<string>() : null;
        return Create(n.GetValue<string>(), description, f["parameters"]?.ToJsonString());
    }

    /// <summary>The definition as the chat templates take it (transformers' shape): {"type": "function", "function": {...}}.</summary>
    public JsonElement ToTemplateValue()
    {
        var f = new JsonObject { ["name"] = Name };
        if (Description is not null) f["description"] = Description;
        f["parameters"] = Parameters.DeepClone();
        return JsonSerializer.SerializeToElement(new JsonObject { ["type"] = "function", ["function"] = f });
    }

    /// <summary>The definition in OpenAI's JSON shape.</summary>
    public string ToJson() => ToTemplateValue().GetRawText();

    /// <summary>The JSON schema of one property of the arguments; null when the schema does not list it.</summary>
    internal JsonNode? Property(string name) => (Parameters["properties"] as JsonObject)?[name];

    private static LlmException Invalid(string message, object? target, Exception? inner = null) =>
        new("ToolDefinitionInvalid", LlmErrorKind.InvalidArgument, message, target, inner);

    public override string ToString() => Name;
}

/// <summary>Whether the model may, must, or must not call a tool (OpenAI's tool_choice).</summary>
public enum ToolChoiceMode
{
    /// <summary>The model decides; a call it starts is held to the tools' schemas (a lazy grammar).</summary>
    Auto,
    /// <summary>The model must call a tool in its first reply to each message (the call is forced by grammar).</summary>
    Required,
    /// <summary>The tools are shown but never called: the reply is text.</summary>
    None,
    /// <summary>The model must call the one named tool.</summary>
    Named,
}

/// <summary>A tool choice: Auto, Required, None, or a tool's name.</summary>
public sealed record ToolChoice(ToolChoiceMode Mode, string? Name = null)
{
    public static readonly ToolChoice Auto = new(ToolChoiceMode.Auto);

    /// <summary>"Auto", "Required", "None" (any case), or else a tool's name.</summary>
    public static ToolChoice Parse(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => Auto,
        "required" or "any" => new(ToolChoiceMode.Required),
        "none" => new(ToolChoiceMode.None),
        _ => new(ToolChoiceMode.Named, text.Trim()),
    };

    public override string ToString() => Mode == ToolChoiceMode.Named ? Name! : Mode.ToString();
}
