using System.Collections;
using System.Collections.ObjectModel;
using System.Management.Automation;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using LlmTools.Engine.Tools;

namespace LlmTools;

/// <summary>
/// -Tool as PowerShell users give it — commands (Get-Command results), script blocks with a param block, or JSON tool
/// definitions (a string, or a hashtable in OpenAI's shape) — turned into the engine's <see cref="ToolDefinition"/>s,
/// with what runs each: a command's JSON schema comes from its parameter metadata.
/// </summary>
internal sealed class ToolSet
{
    /// <summary>Most characters of a tool's output given back to the model (a huge result would not fit the context).</summary>
    public const int MaxResultLength = 16_000;

    private readonly Dictionary<string, object> _runners = new(StringComparer.Ordinal);

    public List<ToolDefinition> Definitions { get; } = [];

    /// <summary>A tool that runs here (a command or script block); false for a JSON definition the script must answer.</summary>
    public bool CanRun(string name) => _runners.ContainsKey(name);

    public bool Knows(string name) => Definitions.Any(d => d.Name == name);

    // The tools of each chat session made with -Tool: the engine's session knows no PowerShell, so what runs them lives here.
    private static readonly ConditionalWeakTable<object, ToolSet> Sessions = new();

    public static void Attach(object session, ToolSet tools) => Sessions.AddOrUpdate(session, tools);

    public static ToolSet? Of(object session) => Sessions.TryGetValue(session, out var t) ? t : null;

    /// <summary>Reads -Tool's values; <paramref name="cmdlet"/> runs the PowerShell that reads a script block's parameters.</summary>
    public static ToolSet From(IEnumerable<object> values, PSCmdlet cmdlet)
    {
        var set = new ToolSet();
        int index = 0;
        foreach (var raw in values)
        {
            index++;
            var value = raw is PSObject ps ? ps.BaseObject : raw;
            switch (value)
            {
                case null:
                    throw Invalid("A -Tool value is null.", null);
                case string json:
                    set.Add(ToolDefinition.FromJson(json), null);
                    break;
                case AliasInfo alias when alias.ResolvedCommand is { } resolved:
                    set.Add(FromCommand(resolved, resolved.Name, cmdlet), resolved);
                    break;
                case CmdletInfo or FunctionInfo or ExternalScriptInfo:
                    set.Add(FromCommand((CommandInfo)value, ((CommandInfo)value).Name, cmdlet), value);
                    break;
                case ScriptBlock block:
                    set.Add(FromScriptBlock(block, $"tool{index}", null, cmdlet), block);
                    break;
                case IDictionary d when Get(d, "ScriptBlock") is { } sb:
                {
                    if ((sb is PSObject p ? p.BaseObject : sb) is not ScriptBlock block)
                        throw Invalid("A tool's ScriptBlock must be a script block: @{ Name = 'get_weather'; ScriptBlock = { param([string]$City) ... } }.", raw);
                    var name = Get(d, "Name") as string ?? $"tool{index}";
                    set.Add(FromScriptBlock(block, name, Get(d, "Description") as string, cmdlet), block);
                    break;
                }
                case IDictionary or PSCustomObject:
                    set.Add(ToolDefinition.FromJson(JsonSerializer.Serialize(Plain(raw, 0))), null);
                    break;
                case CommandInfo other:
                    throw Invalid($"'{other.Name}' is a {other.CommandType}; a tool is a cmdlet, a function, a script or a script block.", raw);
                default:
                    throw Invalid($"-Tool takes commands (Get-Command), script blocks with a param block, or JSON tool definitions, not {value.GetType().Name}.", raw);
            }
        }
        return set;
    }

    private void Add(ToolDefinition definition, object? runner)
    {
        if (Knows(definition.Name))
            throw new LlmException("ToolNameDuplicate", LlmErrorKind.InvalidArgument, $"Two tools are named '{definition.Name}'; tool names must differ.", definition.Name);
        Definitions.Add(definition);
        if (runner is not null) _runners[definition.Name] = runner;
    }

    private static object? Get(IDictionary d, string key)
    {
        foreach (DictionaryEntry e in d)
            if (string.Equals(e.Key?.ToString(), key, StringComparison.OrdinalIgnoreCase)) return e.Value;
        return null;
    }

    private static LlmException Invalid(string message, object? target) => new("ToolInvalid", LlmErrorKind.InvalidArgument, message, target);

    /// <summary>A script block's parameters, read as a function's: it is defined as one in a scope of its own.</summary>
    private static ToolDefinition FromScriptBlock(ScriptBlock block, string name, string? description, PSCmdlet cmdlet)
    {
        if (block.Ast is not System.Management.Automation.Language.ScriptBlockAst { ParamBlock: not null } && block.Ast is not System.Management.Automation.Language.FunctionDefinitionAst)
            throw Invalid($"The script block of tool '{name}' has no param block: declare its arguments, e.g. {{ param([Parameter(Mandatory)][string]$City) ... }}.", block);
        var found = cmdlet.InvokeCommand.InvokeScript(
            "param($__block) Set-Item -Path function:local:__llmtools_tool -Value $__block; Get-Command -Name __llmtools_tool -CommandType Function; Get-Help -Name __llmtools_tool -ErrorAction Ignore",
            true, System.Management.Automation.Runspaces.PipelineResultTypes.None, null, block);
        var function = found.Select(o => o.BaseObject).OfType<FunctionInfo>().FirstOrDefault()
            ?? throw Invalid($"The script block of tool '{name}' could not be read as a function.", block);
        var help = found.FirstOrDefault(o => o.BaseObject is not FunctionInfo);
        return Build(function, name, description, help);
    }

    private static ToolDefinition FromCommand(CommandInfo command, string name, PSCmdlet cmdlet)
    {
        PSObject? help = null;
        try
        {
            help = cmdlet.InvokeCommand.InvokeScript("param($__name) Get-Help -Name $__name -ErrorAction Ignore", true,
                System.Management.Automation.Runspaces.PipelineResultTypes.None, null, command.Name).FirstOrDefault();
        }
        catch (RuntimeException)
        {
            // no help: the schema goes without descriptions
        }
        return Build(command, name, null, help);
    }

    /// <summary>The JSON schema of a command's parameters: one parameter set (the default, else the first), common parameters left out.</summary>
    private static ToolDefinition Build(CommandInfo command, string name, string? description, PSObject? help)
    {
        var sets = command.ParameterSets;
        var set = sets.FirstOrDefault(s => s.IsDefault) ?? sets.FirstOrDefault();
        var properties = new JsonObject();
        var required = new JsonArray();
        var helpTexts = ParameterHelp(help);
        foreach (var p in set?.Parameters ?? [])
        {
            if (Cmdlet.CommonParameters.Contains(p.Name) || Cmdlet.OptionalCommonParameters.Contains(p.Name)) continue;
            var schema = SchemaFor(p.ParameterType, p.Attributes);
            var text = !string.IsNullOrWhiteSpace(p.HelpMessage) ? p.HelpMessage : helpTexts.GetValueOrDefault(p.Name);
            if (!string.IsNullOrWhiteSpace(text)) schema["description"] = text.Trim();
            properties[p.Name] = schema;
            if (p.IsMandatory) required.Add(p.Name);
        }
        var parameters = new JsonObject { ["type"] = "object", ["properties"] = properties };
        if (required.Count > 0) parameters["required"] = required;
        description ??= Synopsis(help, command);
        return ToolDefinition.Create(name, description, parameters.ToJsonString());
    }

    /// <summary>JSON schema for a .NET parameter type and its validation attributes.</summary>
    internal static JsonObject SchemaFor(Type type, IEnumerable<Attribute> attributes)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        JsonObject schema;
        if (type == typeof(SwitchParameter) || type == typeof(bool)) schema = new() { ["type"] = "boolean" };
        else if (type == typeof(string) || type == typeof(char)) schema = new() { ["type"] = "string" };
        else if (type.IsEnum) schema = new() { ["type"] = "string", ["enum"] = new JsonArray([.. Enum.GetNames(type).Select(n => (JsonNode)n)]) };
        else if (type == typeof(int) || type == typeof(long) || type == typeof(short) || type == typeof(byte) || type == typeof(sbyte)
                 || type == typeof(uint) || type == typeof(ulong) || type == typeof(ushort) || type == typeof(System.Numerics.BigInteger))
            schema = new() { ["type"] = "integer" };
        else if (type == typeof(double) || type == typeof(float) || type == typeof(decimal)) schema = new() { ["type"] = "number" };
        else if (type == typeof(DateTime) || type == typeof(DateTimeOffset)) schema = new() { ["type"] = "string", ["format"] = "date-time" };
        else if (type == typeof(Guid)) schema = new() { ["type"] = "string", ["format"] = "uuid" };
        else if (type.IsArray) schema = new() { ["type"] = "array", ["items"] = SchemaFor(type.GetElementType()!, []) };
        else if (typeof(IDictionary).IsAssignableFrom(type)) schema = new() { ["type"] = "object" };
        else schema = new() { ["type"] = "string" }; // anything else: PowerShell converts a string to it, as on the command line
        var itemSchema = schema["items"] as JsonObject;
        foreach (var a in attributes)
        {
            switch (a)
            {
                case ValidateSetAttribute set:
                    var target = itemSchema ?? schema;
                    target["enum"] = new JsonArray([.. set.ValidValues.Select(v => (JsonNode)v)]);
                    target["type"] = "string";
                    break;
                case ValidateRangeAttribute range when range.MinRange is not null && range.MaxRange is not null:
                {
                    var t = itemSchema ?? schema;
                    if (t["type"]?.GetValue<string>() is "integer" or "number")
                    {
                        t["minimum"] = JsonValue.Create(Convert.ToDouble(range.MinRange, System.Globalization.CultureInfo.InvariantCulture));
                        t["maximum"] = JsonValue.Create(Convert.ToDouble(range.MaxRange, System.Globalization.CultureInfo.InvariantCulture));
                        if (t["type"]!.GetValue<string>() == "integer")
                        {
                            t["minimum"] = (long)Math.Ceiling(t["minimum"]!.GetValue<double>());
                            t["maximum"] = (long)Math.Floor(t["maximum"]!.GetValue<double>());
                        }
                    }
                    break;
                }
                case ValidateLengthAttribute length when (itemSchema ?? schema)["type"]?.GetValue<string>() == "string" && (itemSchema ?? schema)["enum"] is null:
                    (itemSchema ?? schema)["minLength"] = length.MinLength;
                    (itemSchema ?? schema)["maxLength"] = length.MaxLength;
                    break;
                case ValidateCountAttribute count when itemSchema is not null:
                    schema["minItems"] = count.MinLength;
                    schema["maxItems"] = count.MaxLength;
                    break;
            }
        }
        return schema;
    }

    private static Dictionary<string, string> ParameterHelp(PSObject? help)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        try
        {
            var parameters = (help?.Properties["parameters"]?.Value as PSObject)?.Properties["parameter"]?.Value;
            foreach (var p in LanguagePrimitives.GetEnumerable(parameters) ?? Array.Empty<object>())
            {
                var po = PSObject.AsPSObject(p);
                var name = po.Properties["name"]?.Value?.ToString();
                var text = HelpText(po.Properties["description"]?.Value);
                if (!string.IsNullOrEmpty(name) && !string.IsNullOrWhiteSpace(text)) result[name] = text;
            }
        }
        catch (RuntimeException)
        {
            // help in an unexpected shape: no descriptions
        }
        return result;
    }

    private static string? Synopsis(PSObject? help, CommandInfo command)
    {
        var synopsis = help?.Properties["Synopsis"]?.Value?.ToString()?.Trim();
        // Get-Help's stand-in for a command without help is its syntax line: no description then.
        if (string.IsNullOrEmpty(synopsis) || synopsis.StartsWith(command.Name, StringComparison.OrdinalIgnoreCase) || synopsis.StartsWith("__llmtools_tool", StringComparison.Ordinal))
            return null;
        return synopsis;
    }

    private static string? HelpText(object? description)
    {
        var texts = new List<string>();
        foreach (var d in LanguagePrimitives.GetEnumerable(description) ?? Array.Empty<object>())
            if (PSObject.AsPSObject(d).Properties["Text"]?.Value?.ToString() is { Length: > 0 } t) texts.Add(t.Trim());
        return texts.Count == 0 ? null : string.Join("\n", texts);
    }

    private static object? Plain(object? value, int depth)
    {
        if (depth > 64) throw Invalid("The tool definition is nested more than 64 deep.", null);
        if (value is PSObject ps)
        {
            if (ps.BaseObject is PSCustomObject)
            {
                var d = new Dictionary<string, object?>();
                foreach (var p in ps.Properties) d[p.Name] = Plain(p.Value, depth + 1);
                return d;
            }
            value = ps.BaseObject;
        }
        switch (value)
        {
            case null or string or bool: return value;
            case IDictionary dictionary:
                var copy = new Dictionary<string, object?>();
                foreach (DictionaryEntry e in dictionary) copy[e.Key.ToString()!] = Plain(e.Value, depth + 1);
                return copy;
            case IEnumerable list:
                var items = new List<object?>();
                foreach (var item in list) items.Add(Plain(item, depth + 1));
                return items;
            default: return value;
        }
    }

    /// <summary>True when every call names a tool that runs here (or none known: it gets an error text), so the round can run.</summary>
    public bool CanRunAll(IEnumerable<LlmToolCall> calls) => calls.All(c => CanRun(c.Name) || !Knows(c.Name));

    /// <summary>
    /// Runs one round of calls, each through ShouldProcess (the confirmation names the tool and its arguments): a call
    /// declined gets a "declined" text for the model. <paramref name="whatIf"/>: -WhatIf was given, so nothing ran and
    /// the round is not to be sent back.
    /// </summary>
    public List<LlmToolResult> RunCalls(IEnumerable<LlmToolCall> calls, PSCmdlet cmdlet, out bool whatIf)
    {
        whatIf = false;
        var round = new List<LlmToolResult>();
        foreach (var call in calls)
        {
            if (!cmdlet.ShouldProcess($"Running tool '{call.Name}' with arguments {call.ArgumentsJson}.", $"Run tool '{call.Name}' with arguments {call.ArgumentsJson}?",
                    "The model called a tool", out var reason))
            {
                whatIf |= reason == ShouldProcessReason.WhatIf;
                round.Add(new LlmToolResult { Call = call, Content = "The user declined to run this tool call.", Succeeded = false });
                continue;
            }
            var result = Run(call, cmdlet);
            if (!result.Succeeded) cmdlet.WriteVerbose($"Tool {call.Name} failed; the model is told: {result.Content}");
            round.Add(result);
        }
        return round;
    }

    /// <summary>
    /// Runs one call here (on the pipeline thread, in the caller's runspace): the command with the arguments splatted.
    /// What it writes becomes the result text (strings as they are, objects as JSON); an exception or an error record
    /// becomes an error text for the model, never an error of the chat.
    /// </summary>
    public LlmToolResult Run(LlmToolCall call, PSCmdlet cmdlet)
    {
        if (!_runners.TryGetValue(call.Name, out var runner))
            return new LlmToolResult { Call = call, Content = $"Error: there is no tool named '{call.Name}'.", Succeeded = false };
        Collection<PSObject> output;
        try
        {
            // The loop of one holds a 'break' or 'continue' the tool runs outside a loop of its own: unheld, it left
            // Invoke-LlmChat silently and went on to break (or continue) the caller's own loop, or end its script.
            output = cmdlet.InvokeCommand.InvokeScript("param($__tool, $__arguments) foreach ($__once in 1) { & $__tool @__arguments 2>&1 }", true,
                System.Management.Automation.Runspaces.PipelineResultTypes.None, null, runner, call.Arguments);
        }
        catch (ExitException e)
        {
            // 'exit' in a tool ends the tool: it used to end the caller's whole script, the chat with it.
            int code = e.Argument is null ? 0 : LanguagePrimitives.TryConvertTo(e.Argument, out int n) ? n : 1;
            return new LlmToolResult { Call = call, Content = $"The tool ended with exit code {code}.", Succeeded = code == 0 };
        }
        catch (Exception e) when (e is RuntimeException or ArgumentException or InvalidOperationException && e is not PipelineStoppedException)
        {
            // (Ctrl+C while a tool runs stops the command, as it would anywhere else.)
            var message = e is ActionPreferenceStopException { ErrorRecord: { } r } ? r.ToString() : e.Message;
            return new LlmToolResult { Call = call, Content = "Error: " + message, Succeeded = false };
        }
        var errors = output.Select(o => o?.BaseObject).OfType<ErrorRecord>().ToList();
        var values = output.Where(o => o?.BaseObject is not ErrorRecord).ToList();
        var text = Text(values, cmdlet);
        if (errors.Count > 0) text = (text.Length > 0 ? text + "\n" : "") + string.Join("\n", errors.Select(e => "Error: " + e));
        if (text.Length > MaxResultLength) text = text[..MaxResultLength] + $"\n(truncated: the output was {text.Length} characters)";
        return new LlmToolResult { Call = call, Content = text, Succeeded = errors.Count == 0, Output = [.. values.Select(v => (object?)v)] };
    }

    private static string Text(List<PSObject> values, PSCmdlet cmdlet)
    {
        if (values.Count == 0) return "";
        if (values.All(v => v?.BaseObject is string or char || v?.BaseObject?.GetType().IsPrimitive == true || v?.BaseObject is decimal))
            return string.Join("\n", values.Select(v => LanguagePrimitives.ConvertTo<string>(v)));
        object input = values.Count == 1 ? values[0] : values.ToArray();
        var json = cmdlet.InvokeCommand.InvokeScript("param($__o) ConvertTo-Json -InputObject $__o -Depth 4 -Compress -WarningAction Ignore", true,
            System.Management.Automation.Runspaces.PipelineResultTypes.None, null, input);
        return string.Concat(json.Select(j => j?.ToString()));
    }
}
