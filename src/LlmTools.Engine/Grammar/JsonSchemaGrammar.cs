using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Schema;
using System.Text.Json.Serialization;

namespace LlmTools.Engine.Grammar;

/// <summary>
/// Converts a JSON schema into a GBNF grammar whose sentences are JSON texts valid against the schema. The semantics
/// follow llama.cpp's common/json-schema-to-grammar.cpp, with these differences: <c>prefixItems</c> works with
/// <c>"items": false</c> (and with an item schema after the tuple); <c>properties</c> beside <c>anyOf</c>/<c>oneOf</c> are
/// merged into each alternative; <c>$ref</c> inside <c>$defs</c> (and recursive refs) resolve; dates are real calendar
/// dates; whitespace is one bounded run after <c>{ [ , :</c> and before <c>} ]</c> only, and numbers have at most 16
/// integer and 16 fraction digits, so a model cannot ramble inside a value. A keyword this converter cannot enforce is
/// an <see cref="LlmException"/> <c>JsonSchemaUnsupported</c> naming it; annotations are ignored.
/// </summary>
public static class JsonSchemaGrammar
{
    /// <summary>Converts a JSON schema text (an object, or true) into GBNF with a <c>root</c> rule.</summary>
    public static string Convert(string schemaJson)
    {
        ArgumentNullException.ThrowIfNull(schemaJson);
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(schemaJson, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new LlmException("JsonSchemaInvalid", LlmErrorKind.InvalidArgument, $"The JSON schema is not valid JSON: {e.Message}", schemaJson, e);
        }
        return Convert(node);
    }

    /// <summary>Converts a parsed JSON schema into GBNF with a <c>root</c> rule.</summary>
    public static string Convert(JsonNode? schema)
    {
        try
        {
            return new Converter(schema).Run();
        }
        catch (Exception e) when (e is InvalidCastException or InvalidOperationException or FormatException or OverflowException)
        {
            // A keyword with a value of the wrong JSON type ("required": 5, "type": [5], "$ref": 1) that a cast met
            // before a check did: the schema's fault, never the caller's crash (the server answered 500 for it).
            throw new LlmException("JsonSchemaInvalid", LlmErrorKind.InvalidArgument,
                $"The JSON schema is invalid: a keyword has a value of the wrong JSON type ({e.Message}).", null, e);
        }
    }

    /// <summary>
    /// Most values in one enum and most alternatives in one anyOf/oneOf (OpenAI's structured outputs allow 1,000 enum
    /// values in a whole schema): llama.cpp's grammar keeps a stack per alternative still matching, so an enum of 40,000
    /// values cost 9 s for 5 tokens of a 512-token vocabulary, and 200,000 (a 2 MB request) minutes.
    /// </summary>
    public const int MaxAlternatives = 1000;

    /// <summary>Most alternatives allOf over anyOf/oneOf may multiply out to.</summary>
    private const int MaxDistributed = 64;

    /// <summary>
    /// The JSON schema of a .NET type's public properties, for output that deserializes into it: System.Text.Json's
    /// exporter (strings, numbers, bool, enums as names, arrays and lists, dictionaries, nested classes, Nullable&lt;T&gt;
    /// as "or null"), then every property of every object made required, since a model asked for an object should fill
    /// it in. Formats the converter does not enforce (uri, ...) are dropped: any string is then accepted.
    /// </summary>
    public static string SchemaFromType(Type type)
    {
        ArgumentNullException.ThrowIfNull(type);
        var options = new JsonSerializerOptions(JsonSerializerOptions.Default)
        {
            RespectNullableAnnotations = true,
            Converters = { new JsonStringEnumConverter() },
        };
        options.MakeReadOnly(populateMissingResolver: true);
        var node = options.GetJsonSchemaAsNode(type, new JsonSchemaExporterOptions
        {
            TreatNullObliviousAsNonNullable = true,
            // The exporter writes "integer" for every integral type; the range keeps a value the type can hold.
            TransformSchemaNode = (context, schema) =>
            {
                var t = Nullable.GetUnderlyingType(context.TypeInfo.Type) ?? context.TypeInfo.Type;
                if (schema is JsonObject o && !t.IsEnum && IntegerRanges.TryGetValue(t, out var range))
                {
                    o["minimum"] = range.Min;
                    o["maximum"] = range.Max;
                }
                return schema;
            },
        });
        Tighten(node);
        return node.ToJsonString();

        static void Tighten(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o:
                    if (o["properties"] is JsonObject props && o["required"] is null && props.Count > 0)
                        o["required"] = new JsonArray(props.Select(p => (JsonNode?)JsonValue.Create(p.Key)).ToArray());
                    if (o["format"] is JsonValue f && f.TryGetValue<string>(out var fs) && !Formats.ContainsKey(fs) && !fs.StartsWith("uuid", StringComparison.Ordinal))
                        o.Remove("format");
                    foreach (var (_, v) in o.ToList()) Tighten(v);
                    break;
                case JsonArray a:
                    foreach (var v in a) Tighten(v);
                    break;
            }
        }
    }

    private static readonly Dictionary<Type, (long Min, long Max)> IntegerRanges = new()
    {
        [typeof(byte)] = (byte.MinValue, byte.MaxValue),
        [typeof(sbyte)] = (sbyte.MinValue, sbyte.MaxValue),
        [typeof(short)] = (short.MinValue, short.MaxValue),
        [typeof(ushort)] = (ushort.MinValue, ushort.MaxValue),
        [typeof(int)] = (int.MinValue, int.MaxValue),
        [typeof(uint)] = (uint.MinValue, uint.MaxValue),
        [typeof(long)] = (-9_999_999_999_999_999L, 9_999_999_999_999_999L), // the converter's 16-digit bound
        [typeof(ulong)] = (0, 9_999_999_999_999_999L),
    };

    /// <summary>The JSON schema a dictionary (a hashtable of schema keywords, possibly nested) spells: serialized as is.</summary>
    public static string SchemaFromDictionary(IDictionary schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        try
        {
            return JsonSerializer.Serialize(Plain(schema));
        }
        catch (Exception e) when (e is NotSupportedException or JsonException or InvalidOperationException)
        {
            throw new LlmException("JsonSchemaInvalid", LlmErrorKind.InvalidArgument, $"The schema dictionary cannot be written as JSON: {e.Message}", schema, e);
        }

        static object? Plain(object? v) => v switch
        {
            null or string or bool => v,
            IDictionary d => d.Keys.Cast<object>().ToDictionary(k => k.ToString()!, k => Plain(d[k])),
            IEnumerable e => e.Cast<object?>().Select(Plain).ToList(),
            Enum x => x.ToString(),
            _ => v,
        };
    }

    // ---- fixed rules ----

    private const string Ws = "ws";
    // One bounded run: a space, or a newline and some indentation.
    private const string WsBody = "( \" \" | \"\\n\" [ \\t]{0,20} )?";
    private const string CharBody = "[^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" hex-nonsurrogate )";

    private static readonly Dictionary<string, (string Body, string[] Deps)> Builtins = new()
    {
        [Ws] = (WsBody, []),
        // \u escapes stop short of surrogates: a lone one is not valid text, and a pair can be written directly.
        ["hex-nonsurrogate"] = ("[0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}", []),
        ["json-char"] = (CharBody, ["hex-nonsurrogate"]),
        ["json-string"] = ("\"\\\"\" json-char* \"\\\"\"", ["json-char"]),
        ["json-int-part"] = ("\"0\" | [1-9] [0-9]{0,15}", []),
        ["json-integer"] = ("\"-\"? json-int-part", ["json-int-part"]),
        ["json-number"] = ("\"-\"? json-int-part ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?", ["json-int-part"]),
        ["json-boolean"] = ("\"true\" | \"false\"", []),
        ["json-null"] = ("\"null\"", []),
        ["json-value"] = ("json-object | json-array | json-string | json-number | json-boolean | json-null",
            ["json-object", "json-array", "json-string", "json-number", "json-boolean", "json-null"]),
        ["json-object"] = ("\"{\" ws ( json-string \":\" ws json-value ( \",\" ws json-string \":\" ws json-value )* ws )? \"}\"", [Ws, "json-string", "json-value"]),
        ["json-array"] = ("\"[\" ws ( json-value ( \",\" ws json-value )* ws )? \"]\"", [Ws, "json-value"]),
        ["date"] = ("[0-9]{4} \"-\" ( ( \"0\" [13578] | \"1\" [02] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] ) | ( \"0\" [469] | \"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" ) | \"02-\" ( \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8] ) )", []),
        ["time"] = ("( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,6} )? ( [zZ] | [-+] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )", []),
        ["date-time"] = ("date [tT] time", ["date", "time"]),
        ["uuid"] = ("[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12}", []),
        // A regex '.': any string character except a line break (escapes limited to \" \\ \/ and \t).
        ["pattern-dot"] = ("[^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" [\"\\\\/t]", []),
    };

    private static readonly Dictionary<string, string> Formats = new()
    {
        ["date"] = "date",
        ["time"] = "time",
        ["date-time"] = "date-time",
    };

    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "description", "title", "examples", "$schema", "default", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
        "$defs", "definitions", "contentMediaType", "contentEncoding",
    };

    private static readonly HashSet<string> Handled = new(StringComparer.Ordinal)
    {
        "type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "properties", "required", "additionalProperties",
        "items", "prefixItems", "additionalItems", "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "pattern", "format", "nullable", "uniqueItems",
    };

    private static readonly string[] AllTypes = ["object", "array", "string", "integer", "number", "boolean", "null"];

    internal static LlmException Unsupported(string what, string path) =>
        new("JsonSchemaUnsupported", LlmErrorKind.NotImplemented, $"The JSON schema uses {what} at '{path}', which constrained output cannot enforce.", path);

    internal static LlmException Bad(string what, string path) =>
        new("JsonSchemaInvalid", LlmErrorKind.InvalidArgument, $"The JSON schema is invalid at '{path}': {what}.", path);

    internal static string Literal(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20) sb.Append("\\x").Append(((int)c).ToString("X2", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }

    /// <summary>A character inside a GBNF class: the ones with a meaning there (and quotes, controls) as \x escapes.</summary>
    internal static string ClassChar(char c) =>
        c is ']' or '-' or '\\' or '^' or '[' or '"' or < ' ' or '\x7F' ? "\\x" + ((int)c).ToString("X2", CultureInfo.InvariantCulture) : c.ToString();

    /// <summary>The JSON text of a value, as the grammar makes the model write it (compact, minimal escapes).</summary>
    internal static string JsonText(JsonNode? v) => v?.ToJsonString(CompactJson) ?? "null";

    private static readonly JsonSerializerOptions CompactJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private sealed class Converter(JsonNode? root)
    {
        private readonly List<(string Name, string Body)> _rules = [];
        private readonly HashSet<string> _names = new(Builtins.Keys, StringComparer.Ordinal) { "root" };
        private readonly HashSet<string> _builtinsAdded = [];
        private readonly Dictionary<string, string> _refRules = new(StringComparer.Ordinal);
        private int _depth;
        /// <summary>Deeper than this is a reference that merging would expand forever (or an absurd schema).</summary>
        private const int MaxDepth = 100;

        private void Enter(string path)
        {
            if (++_depth > MaxDepth)
                throw Unsupported($"nesting deeper than {MaxDepth} (a '$ref' beside other keywords or in allOf that refers back to itself)", path);
        }

        public string Run()
        {
            _rules.Add(("root", ""));
            var body = Expr(root, "root", "root", "#");
            _rules[0] = ("root", body);
            var sb = new StringBuilder();
            foreach (var (name, b) in _rules) sb.Append(name).Append(" ::= ").Append(b).Append('\n');
            return sb.ToString();
        }

        private string Builtin(string name)
        {
            if (_builtinsAdded.Add(name))
            {
                var (body, deps) = Builtins[name];
                _rules.Add((name, body));
                foreach (var d in deps) Builtin(d);
            }
            return name;
        }

        private string NewName(string hint)
        {
            var sb = new StringBuilder();
            foreach (var c in hint) sb.Append(char.IsAsciiLetterOrDigit(c) || c == '-' ? c : '-');
            var b = sb.Length == 0 ? "r" : sb.ToString();
            if (b.Length > 60) b = b[..60];
            var n = b;
            for (int i = 1; !_names.Add(n); i++) n = b + i.ToString(CultureInfo.InvariantCulture);
            return n;
        }

        private string AddRule(string hint, string body)
        {
            var n = NewName(hint);
            _rules.Add((n, body));
            return n;
        }

        /// <summary>A rule (or simple expression) matching JSON text valid against <paramref name="schema"/>.</summary>
        private string Visit(JsonNode? schema, string hint, string path)
        {
            var e = Expr(schema, hint, NewNameLater, path);
            return e;
        }

        private const string NewNameLater = "\0";

        /// <summary>The GBNF expression for a schema; when it is compound, wraps it in a rule named from the hint.</summary>
        private string Expr(JsonNode? schema, string hint, string ruleName, string path)
        {
            var body = Body(schema, hint, path);
            if (ruleName == "root") return body;
            if (IsSimple(body)) return body;
            return AddRule(hint, body);
        }

        private static bool IsSimple(string body) =>
            !body.Contains(' ') || (body.StartsWith('"') && body.EndsWith('"') && body.IndexOf('"', 1) == body.Length - 1);

        private string Body(JsonNode? schema, string hint, string path)
        {
            Enter(path);
            try
            {
                return BodyCore(schema, hint, path);
            }
            finally
            {
                _depth--;
            }
        }

        private string BodyCore(JsonNode? schema, string hint, string path)
        {
            switch (schema)
            {
                case null:
                    throw Bad("a schema is null", path);
                case JsonValue v when v.TryGetValue<bool>(out var b):
                    if (!b) throw Bad("the schema 'false' allows no value", path);
                    return Builtin("json-value");
                case JsonObject:
                    break;
                default:
                    throw Bad("a schema must be an object or a boolean", path);
            }
            var s = (JsonObject)schema;
            foreach (var (key, _) in s)
                if (!Handled.Contains(key) && !Annotations.Contains(key))
                    throw Unsupported($"the keyword '{key}'", path);

            if (s["uniqueItems"] is JsonValue u && u.TryGetValue<bool>(out var uq) && uq)
                throw Unsupported("the keyword 'uniqueItems'", path);

            // $ref alone is a rule reference (recursion allowed); beside other constraints it is merged with them.
            if (s["$ref"] is { } r)
            {
                var refText = r.GetValue<string>();
                if (Constraints(s).Count() == 1) return RefRule(refText, path);
                var rest = Without(s, "$ref");
                return Body(Merge([Resolve(refText, path), rest], path), hint, path);
            }

            if (s["allOf"] is { } all)
            {
                var parts = Array(all, "allOf", path).Select(p => p is JsonObject po && po["$ref"] is { } pr ? Resolve(pr.GetValue<string>(), path) : p).ToList();
                parts.Add(Without(s, "allOf"));
                return Body(Merge(parts, path), hint, path);
            }

            var union = s["anyOf"] ?? s["oneOf"];
            if (union is not null)
            {
                if (s["anyOf"] is not null && s["oneOf"] is not null) throw Unsupported("both 'anyOf' and 'oneOf'", path);
                string kw = s["anyOf"] is not null ? "anyOf" : "oneOf";
                var alts = Array(union, kw, path);
                var rest = Without(s, kw);
                bool alone = !Constraints(rest).Any();
                var bodies = new List<string>();
                for (int i = 0; i < alts.Count; i++)
                {
                    // Properties (or any constraint) beside anyOf hold in every alternative: merge them in.
                    var alt = alone ? alts[i] : Merge([rest, alts[i] is JsonObject ao && ao["$ref"] is { } ar ? Resolve(ar.GetValue<string>(), path) : alts[i]], $"{path}/{kw}/{i}");
                    bodies.Add(Visit(alt, $"{hint}-{i}", $"{path}/{kw}/{i}"));
                }
                return Alt(bodies);
            }

            var types = Types(s, path);
            if (s.ContainsKey("const"))
                return Literal(JsonText(s["const"]));
            if (s["enum"] is { } en)
            {
                var values = Array(en, "enum", path).Where(x => types is null || types.Contains(TypeOf(x)) || (TypeOf(x) == "integer" && types.Contains("number"))).ToList();
                if (values.Count == 0) throw Bad("'enum' has no value of the schema's type", path);
                return Alt(values.Select(x => Literal(JsonText(x))).ToList());
            }

            types ??= InferTypes(s);
            var alternatives = types.Select(t => TypeBody(s, t, hint, path)).ToList();
            return alternatives.Count == 1 ? alternatives[0] : Alt(alternatives.Select(b => IsSimple(b) ? b : AddRule($"{hint}-{TypeName(b)}", b)).ToList());
        }

        private static string TypeName(string _) => "alt";

        private static string Alt(List<string> parts) =>
            parts.Count == 1 ? parts[0] : string.Join(" | ", parts.Distinct().Select(p => p.Contains(" | ") ? $"( {p} )" : p));

        private static IEnumerable<string> Constraints(JsonObject s) => s.Select(kv => kv.Key).Where(k => !Annotations.Contains(k));

        private static JsonObject Without(JsonObject s, string key)
        {
            var copy = new JsonObject();
            foreach (var (k, v) in s)
                if (k != key) copy[k] = v?.DeepClone();
            return copy;
        }

        private static List<JsonNode?> Array(JsonNode n, string kw, string path)
        {
            if (n is not JsonArray a) throw Bad($"'{kw}' must be an array", path);
            if (a.Count > MaxAlternatives && kw is "enum" or "anyOf" or "oneOf")
                throw Unsupported($"'{kw}' with {a.Count} values (at most {MaxAlternatives})", path);
            return a.ToList();
        }

        private static string TypeOf(JsonNode? v) => v switch
        {
            null => "null",
            JsonObject => "object",
            JsonArray => "array",
            JsonValue x when x.GetValueKind() == JsonValueKind.String => "string",
            JsonValue x when x.GetValueKind() is JsonValueKind.True or JsonValueKind.False => "boolean",
            JsonValue x => x.TryGetValue<long>(out _) || (x.TryGetValue<double>(out var d) && d == Math.Floor(d)) ? "integer" : "number",
            _ => "unknown",
        };

        private static List<string>? Types(JsonObject s, string path)
        {
            List<string>? types = null;
            if (s["type"] is JsonValue tv && tv.TryGetValue<string>(out var t)) types = [t];
            else if (s["type"] is JsonArray ta) types = ta.Select(x => x?.GetValue<string>() ?? "null").ToList();
            else if (s["type"] is not null) throw Bad("'type' must be a string or an array of strings", path);
            if (types is not null)
                foreach (var x in types)
                    if (!AllTypes.Contains(x)) throw Bad($"unknown type '{x}'", path);
            if (s["nullable"] is JsonValue nv && nv.TryGetValue<bool>(out var nb) && nb && types is not null && !types.Contains("null"))
                types.Add("null");
            return types;
        }

        private static List<string> InferTypes(JsonObject s)
        {
            bool Has(params string[] keys) => keys.Any(s.ContainsKey);
            var types = new List<string>();
            if (Has("properties", "required", "additionalProperties")) types.Add("object");
            if (Has("items", "prefixItems", "minItems", "maxItems", "additionalItems")) types.Add("array");
            if (Has("minLength", "maxLength", "pattern", "format")) types.Add("string");
            if (Has("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")) types.Add("number");
            return types.Count > 0 ? types : [.. AllTypes];
        }

        private string TypeBody(JsonObject s, string type, string hint, string path)
        {
            switch (type)
            {
                case "null": return Builtin("json-null");
                case "boolean": return Builtin("json-boolean");
                case "string": return StringBody(s, hint, path);
                case "integer": return IntegerBody(s, path);
                case "number":
                    if (s.ContainsKey("minimum") || s.ContainsKey("maximum") || s.ContainsKey("exclusiveMinimum") || s.ContainsKey("exclusiveMaximum"))
                    {
                        if (s["type"] is null || (s["type"] is JsonArray ta && ta.Any(x => x?.GetValue<string>() == "integer")))
                            return IntegerBody(s, path); // bounds on an untyped (or integer-or-number) schema: integers are valid numbers
                        throw Unsupported("'minimum'/'maximum' on type 'number' (only integer ranges are supported; use type 'integer')", path);
                    }
                    return Builtin("json-number");
                case "array": return ArrayBody(s, hint, path);
                case "object": return ObjectBody(s, hint, path);
                default: throw Bad($"unknown type '{type}'", path);
            }
        }

        // ---- strings ----

        private string StringBody(JsonObject s, string hint, string path)
        {
            bool lengths = s.ContainsKey("minLength") || s.ContainsKey("maxLength");
            if (s["format"] is { } f)
            {
                var fs = f.GetValue<string>();
                if (lengths || s.ContainsKey("pattern")) throw Unsupported($"'format' together with 'pattern' or a length", path);
                string rule = fs.StartsWith("uuid", StringComparison.Ordinal) && fs.Length <= 5 ? "uuid"
                    : Formats.TryGetValue(fs, out var r) ? r : throw Unsupported($"the format '{fs}' (supported: date, time, date-time, uuid)", path);
                return $"\"\\\"\" {Builtin(rule)} \"\\\"\"";
            }
            if (s["pattern"] is { } p)
            {
                if (lengths) throw Unsupported("'pattern' together with 'minLength'/'maxLength'", path);
                return "\"\\\"\" " + PatternConverter.Convert(p.GetValue<string>(), path, this, hint) + " \"\\\"\"";
            }
            if (!lengths) return Builtin("json-string");
            int min = Int(s, "minLength", path) ?? 0;
            int? max = Int(s, "maxLength", path);
            if (max < min) throw Bad("'maxLength' is below 'minLength'", path);
            if (max > GbnfGrammar.MaxRepetition || min > GbnfGrammar.MaxRepetition)
                throw Unsupported($"a string length above {GbnfGrammar.MaxRepetition}", path);
            return $"\"\\\"\" {Repeat(Builtin("json-char"), min, max)} \"\\\"\"";
        }

        internal string BuiltinRule(string name) => Builtin(name);
        internal string NewRule(string hint, string body) => AddRule(hint, body);

        private static string Repeat(string item, int min, int? max)
        {
            if (max == 0) return "\"\"";
            if (min == 0 && max is null) return item + "*";
            if (min == 1 && max is null) return item + "+";
            if (min == 0 && max == 1) return item + "?";
            if (min == max) return $"{item}{{{min}}}";
            return $"{item}{{{min},{(max is null ? "" : max.Value.ToString(CultureInfo.InvariantCulture))}}}";
        }

        private static int? Int(JsonObject s, string key, string path)
        {
            if (s[key] is not JsonValue v) return null;
            if (v.TryGetValue<int>(out var i) && i >= 0) return i;
            if (v.TryGetValue<double>(out var d) && d >= 0 && d == Math.Floor(d)) return d > int.MaxValue ? int.MaxValue : (int)d;
            throw Bad($"'{key}' must be a non-negative integer", path);
        }

        // ---- integers: every range is finite (16 digits at most), built from digit-by-digit ranges ----

        private const long MaxInt = 9_999_999_999_999_999L;

        private static string IntegerBody(JsonObject s, string path)
        {
            decimal? D(string key)
            {
                if (s[key] is not JsonValue v) return null;
                if (v.TryGetValue<bool>(out _)) throw Unsupported($"a boolean '{key}' (draft 4)", path);
                if (v.TryGetValue<decimal>(out var d)) return d;
                // Beyond decimal's range (-1e300): as good as unbounded, since integers are at most 16 digits here.
                if (v.TryGetValue<double>(out var big) && double.IsFinite(big)) return big < 0 ? -MaxInt - 1 : MaxInt + 1;
                throw Bad($"'{key}' must be a number", path);
            }
            decimal lo = -MaxInt, hi = MaxInt;
            if (D("minimum") is { } mn) lo = Math.Max(lo, Math.Ceiling(mn));
            if (D("exclusiveMinimum") is { } xmn) lo = Math.Max(lo, Math.Floor(xmn) + 1);
            if (D("maximum") is { } mx) hi = Math.Min(hi, Math.Floor(mx));
            if (D("exclusiveMaximum") is { } xmx) hi = Math.Min(hi, Math.Ceiling(xmx) - 1);
            if (lo > hi) throw Bad($"the integer range is empty ({lo} > {hi})", path);
            if (lo == -MaxInt && hi == MaxInt) return "\"-\"? json-int-part".Replace("json-int-part", "( \"0\" | [1-9] [0-9]{0,15} )");
            return IntRange((long)lo, (long)hi);
        }

        internal static string IntRange(long lo, long hi)
        {
            var alts = new List<string>();
            if (lo < 0)
            {
                long nlo = Math.Max(1, hi < 0 ? -hi : 1), nhi = -lo;
                alts.Add($"\"-\" ( {NonNegRange(nlo, nhi)} )");
            }
            if (hi >= 0) alts.Add(NonNegRange(Math.Max(0, lo), hi));
            return string.Join(" | ", alts);
        }

        private static string NonNegRange(long lo, long hi)
        {
            var alts = new List<string>();
            var a = lo.ToString(CultureInfo.InvariantCulture);
            var b = hi.ToString(CultureInfo.InvariantCulture);
            for (int len = a.Length; len <= b.Length; len++)
            {
                string from = len == a.Length ? a : "1" + new string('0', len - 1);
                string to = len == b.Length ? b : new string('9', len);
                alts.Add(SameLength(from, to));
            }
            return string.Join(" | ", alts);
        }

        /// <summary>Numbers from <paramref name="a"/> to <paramref name="b"/>, both of the same number of digits.</summary>
        private static string SameLength(string a, string b)
        {
            int p = 0;
            while (p < a.Length && a[p] == b[p]) p++;
            var prefix = p > 0 ? Literal(a[..p]) : "";
            if (p == a.Length) return prefix;
            string ra = a[(p + 1)..], rb = b[(p + 1)..];
            char x = a[p], y = b[p];
            int n = ra.Length;
            string Any(int k) => k == 0 ? "" : k == 1 ? " [0-9]" : $" [0-9]{{{k}}}";
            string Cls(char f, char t) => f == t ? $"[{f}]" : $"[{f}-{t}]";
            var alts = new List<string>();
            bool lowFull = ra.All(c => c == '0'), highFull = rb.All(c => c == '9');
            char midLo = lowFull ? x : (char)(x + 1), midHi = highFull ? y : (char)(y - 1);
            if (!lowFull) alts.Add($"[{x}] ( {SameLength(ra, new string('9', n))} )");
            if (midLo <= midHi) alts.Add(Cls(midLo, midHi) + Any(n));
            if (!highFull) alts.Add($"[{y}] ( {SameLength(new string('0', n), rb)} )");
            var rest = string.Join(" | ", alts);
            return prefix.Length == 0 ? rest : $"{prefix} ( {rest} )";
        }

        // ---- arrays ----

        private string ArrayBody(JsonObject s, string hint, string path)
        {
            int min = Int(s, "minItems", path) ?? 0;
            int? max = Int(s, "maxItems", path);
            if (max < min) throw Bad("'maxItems' is below 'minItems'", path);
            if (min > GbnfGrammar.MaxRepetition) throw Unsupported($"'minItems' above {GbnfGrammar.MaxRepetition}", path);
            if (max > GbnfGrammar.MaxRepetition) max = null;

            List<JsonNode?> prefix = [];
            JsonNode? extra;
            if (s["prefixItems"] is { } pi)
            {
                prefix = Array(pi, "prefixItems", path);
                extra = s.ContainsKey("items") ? s["items"] : JsonValue.Create(false); // no extra items unless asked for
                if (s.ContainsKey("additionalItems")) throw Unsupported("'additionalItems' beside 'prefixItems' (use 'items')", path);
            }
            else if (s["items"] is JsonArray tupleItems)
            {
                prefix = tupleItems.ToList();
                extra = s.ContainsKey("additionalItems") ? s["additionalItems"] : JsonValue.Create(false);
            }
            else extra = s.ContainsKey("items") ? s["items"] : JsonValue.Create(true);

            bool noExtra = extra is JsonValue ev && ev.TryGetValue<bool>(out var eb) && !eb;
            var items = new List<string>();
            for (int i = 0; i < prefix.Count; i++)
                items.Add(Visit(prefix[i], $"{hint}-{i}", $"{path}/prefixItems/{i}"));
            string? extraRule = noExtra ? null : Visit(extra, $"{hint}-item", $"{path}/items");

            // Every tuple item is written (minItems may allow fewer; writing them all is valid), unless maxItems cuts the
            // tuple; more items only with an item schema, as many as minItems/maxItems ask.
            int tuple = max is { } mx2 ? Math.Min(prefix.Count, mx2) : prefix.Count;
            int extraMin = Math.Max(0, min - prefix.Count);
            int? extraMax = max is null ? null : Math.Max(0, max.Value - prefix.Count);
            if (extraRule is null)
            {
                if (extraMin > 0) throw Bad($"'minItems' {min} exceeds the {prefix.Count} tuple items with no more allowed", path);
                extraMax = 0;
            }
            string ws = Builtin(Ws);
            if (tuple > 0)
            {
                var seq = string.Join(" \",\" ws ", items.Take(tuple));
                if (tuple == prefix.Count && extraMax != 0) seq += " " + Repeat($"( \",\" ws {extraRule} )", extraMin, extraMax);
                return $"\"[\" {ws} {seq} ws \"]\"";
            }
            if (extraMax == 0) return $"\"[\" {ws} \"]\"";
            // No tuple: the first item has no comma before it.
            string list = extraMax == 1 ? extraRule! : $"{extraRule} {Repeat($"( \",\" ws {extraRule} )", Math.Max(0, extraMin - 1), extraMax - 1)}";
            return extraMin == 0 ? $"\"[\" {ws} ( {list} ws )? \"]\"" : $"\"[\" {ws} {list} ws \"]\"";
        }

        // ---- objects: declared order, optional properties skippable, extra properties (when allowed) at the end ----

        private string ObjectBody(JsonObject s, string hint, string path)
        {
            Builtin(Ws);
            var props = new List<(string Name, JsonNode? Schema)>();
            if (s["properties"] is JsonObject po)
                foreach (var (k, v) in po) props.Add((k, v));
            else if (s["properties"] is not null) throw Bad("'properties' must be an object", path);
            var required = new HashSet<string>(StringComparer.Ordinal);
            if (s["required"] is JsonArray ra)
                foreach (var x in ra) required.Add(x?.GetValue<string>() ?? throw Bad("'required' holds a non-string", path));
            foreach (var name in required)
                if (!props.Any(p => p.Name == name)) props.Add((name, JsonValue.Create(true)));

            // additionalProperties: absent with declared properties means none (what a model should produce); absent
            // without them means any object, as the reference does.
            JsonNode? additional = s.ContainsKey("additionalProperties") ? s["additionalProperties"] : JsonValue.Create(props.Count == 0);
            bool extras = !(additional is JsonValue av && av.TryGetValue<bool>(out var ab) && !ab);

            var kvs = props.Select((p, i) =>
            {
                var value = Visit(p.Schema, $"{hint}-{p.Name}", $"{path}/properties/{p.Name}");
                return $"{Literal(JsonText(JsonValue.Create(p.Name)))} \":\" ws {value}";
            }).ToList();
            string? extraKv = null;
            if (extras)
            {
                var value = Visit(additional, $"{hint}-additional", $"{path}/additionalProperties");
                string key = props.Count == 0 ? Builtin("json-string") : AddRule($"{hint}-other-key", NotStrings(props.Select(p => p.Name).ToList(), path));
                extraKv = AddRule($"{hint}-other", $"{key} \":\" ws {value}");
            }

            // after[i]: the members from i on, something already written (so each starts with a comma).
            // first[i]: the members from i on, nothing written yet, at least one member. Null when impossible.
            int n = props.Count;
            var after = new string[n + 1];
            var first = new string?[n + 1];
            after[n] = extraKv is null ? "" : $"( \",\" ws {extraKv} )*";
            first[n] = extraKv is null ? null : $"{extraKv} {after[n]}".Trim();
            for (int i = n - 1; i >= 0; i--)
            {
                string afterNext = RuleFor($"{hint}-after-{i + 1}", after[i + 1]);
                bool req = required.Contains(props[i].Name);
                after[i] = req ? $"\",\" ws {kvs[i]} {afterNext}".Trim() : $"( \",\" ws {kvs[i]} )? {afterNext}".Trim();
                string withThis = $"{kvs[i]} {afterNext}".Trim();
                first[i] = req || first[i + 1] is null ? withThis : $"{withThis} | {RuleFor($"{hint}-from-{i + 1}", first[i + 1]!)}";
            }
            bool anyRequired = props.Any(p => required.Contains(p.Name));
            if (first[0] is null) return "\"{\" ws \"}\"";
            var members = RuleFor($"{hint}-members", first[0]!);
            return anyRequired ? $"\"{{\" ws {members} ws \"}}\"" : $"\"{{\" ws ( {members} ws )? \"}}\"";
        }

        private string RuleFor(string hint, string body) =>
            body.Length == 0 ? "" : IsSimple(body) ? body : AddRule(hint, body);

        /// <summary>A JSON string (quotes included) that is none of <paramref name="names"/>: a trie over their characters.</summary>
        private string NotStrings(List<string> names, string path)
        {
            foreach (var name in names)
                if (name.Length == 0 || name.Any(c => c is '"' or '\\' or < ' ' or '\x7F'))
                    throw Unsupported($"extra properties beside a property named {JsonText(JsonValue.Create(name))} (empty, or with a quote, backslash or control character)", path);
            var ch = Builtin("json-char");
            var trie = new Trie();
            foreach (var name in names) trie.Add(name);
            return $"\"\\\"\" ( {Node(trie)} ) \"\\\"\"";

            string Node(Trie t)
            {
                var alts = new List<string>();
                foreach (var (c, child) in t.Children)
                {
                    string lit = Literal(c.ToString());
                    if (child.Children.Count == 0) alts.Add($"{lit} {ch}+"); // the name itself must go on
                    else if (child.End) alts.Add($"{lit} ( {Node(child)} )");
                    else alts.Add($"{lit} ( {Node(child)} )?"); // a proper prefix of a name is another name
                }
                var rejects = string.Concat(t.Children.Keys.Select(ClassChar));
                alts.Add($"[^\"\\\\\\x7F\\x00-\\x1F{rejects}] {ch}*");
                alts.Add($"\"\\\\\" ( [\"\\\\/bfnrt] | \"u\" hex-nonsurrogate ) {ch}*");
                return string.Join(" | ", alts);
            }
        }

        private sealed class Trie
        {
            public SortedDictionary<char, Trie> Children { get; } = new();
            public bool End { get; private set; }

            public void Add(string s)
            {
                var t = this;
                foreach (var c in s)
                {
                    if (!t.Children.TryGetValue(c, out var next)) t.Children[c] = next = new Trie();
                    t = next;
                }
                t.End = true;
            }
        }

        // ---- $ref and allOf ----

        private string RefRule(string reference, string path)
        {
            if (_refRules.TryGetValue(reference, out var existing)) return existing;
            var target = Resolve(reference, path);
            var name = NewName(reference == "#" ? "root-ref" : reference[(reference.LastIndexOf('/') + 1)..]);
            _refRules[reference] = name;
            int slot = _rules.Count;
            _rules.Add((name, ""));
            _rules[slot] = (name, Body(target, name, reference));
            return name;
        }

        private JsonNode? Resolve(string reference, string path)
        {
            if (!reference.StartsWith('#'))
                throw Unsupported($"the reference '{reference}' (only local references '#/...' are supported)", path);
            JsonNode? t = root;
            if (reference.Length > 1)
            {
                if (reference[1] != '/') throw Unsupported($"the reference '{reference}' (anchors are not supported)", path);
                foreach (var raw in reference[2..].Split('/'))
                {
                    var seg = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
                    t = t switch
                    {
                        JsonObject o when o.ContainsKey(seg) => o[seg],
                        JsonArray a when int.TryParse(seg, out var i) && i >= 0 && i < a.Count => a[i],
                        _ => throw Bad($"the reference '{reference}' points nowhere ('{seg}' is missing)", path),
                    };
                }
            }
            return t;
        }

        /// <summary>
        /// One schema equivalent to all of <paramref name="parts"/> (allOf), as far as generation needs: properties
        /// united (one declared in several parts gets allOf of them), required united, types, enums and ranges
        /// intersected. A part with anyOf/oneOf distributes over the merge, giving an anyOf of merged schemas.
        /// </summary>
        private JsonNode Merge(List<JsonNode?> parts, string path)
        {
            Enter(path);
            try
            {
                return MergeCore(parts, path);
            }
            finally
            {
                _depth--;
            }
        }

        /// <summary>How many alternatives a merged schema stands for: the leaves of its nested anyOfs.</summary>
        private static int Leaves(JsonNode? n) => n is JsonObject o && o["anyOf"] is JsonArray a ? a.Sum(Leaves) : 1;

        private JsonNode MergeCore(List<JsonNode?> parts, string path)
        {
            var expanded = new List<JsonObject>();
            foreach (var p in parts)
            {
                switch (p)
                {
                    case JsonValue v when v.TryGetValue<bool>(out var b):
                        if (!b) throw Bad("allOf holds 'false'", path);
                        continue;
                    case JsonObject o:
                        if (o["$ref"] is { } r)
                        {
                            var inner = Without(o, "$ref");
                            var target = Resolve(r.GetValue<string>(), path);
                            if (ReferenceEquals(target, p)) throw Unsupported("a schema that merges itself through '$ref'", path);
                            var m = Merge([target, inner], path);
                            expanded.Add((JsonObject)m);
                        }
                        else if (o["allOf"] is { } nested)
                        {
                            var m = Merge([.. Array(nested, "allOf", path), Without(o, "allOf")], path);
                            expanded.Add((JsonObject)m);
                        }
                        else expanded.Add(o);
                        break;
                    default:
                        throw Bad("allOf holds something that is not a schema", path);
                }
            }
            // Distribute unions: allOf(A, anyOf(B, C)) = anyOf(allOf(A, B), allOf(A, C)).
            int u = expanded.FindIndex(o => o.ContainsKey("anyOf") || o.ContainsKey("oneOf"));
            if (u >= 0)
            {
                var o = expanded[u];
                string kw = o.ContainsKey("anyOf") ? "anyOf" : "oneOf";
                var rest = Without(o, kw);
                var alts = new JsonArray();
                int count = 0;
                foreach (var alt in Array(o[kw]!, kw, path))
                {
                    var list = expanded.Where((_, i) => i != u).Select(x => (JsonNode?)x.DeepClone()).ToList();
                    list.Add(rest.DeepClone());
                    list.Add(alt?.DeepClone());
                    var merged = Merge(list, path);
                    // Counted as they are made (a merged part may be a union itself): 16 two-way unions in one allOf
                    // would otherwise make 65,536 merges (minutes of CPU from a 2 KB request) before any check.
                    count += Leaves(merged);
                    if (count > MaxDistributed) throw Unsupported($"unions that multiply out to more than {MaxDistributed} alternatives", path);
                    alts.Add(merged);
                }
                return new JsonObject { ["anyOf"] = alts };
            }

            var result = new JsonObject();
            foreach (var o in expanded)
            {
                foreach (var (k, v) in o)
                {
                    if (Annotations.Contains(k)) continue;
                    if (!Handled.Contains(k)) throw Unsupported($"the keyword '{k}'", path);
                    if (!result.ContainsKey(k)) { result[k] = v?.DeepClone(); continue; }
                    var cur = result[k];
                    switch (k)
                    {
                        case "properties":
                            var cp = (JsonObject)cur!;
                            foreach (var (pk, pv) in (JsonObject)v!)
                                cp[pk] = cp.ContainsKey(pk) ? Merge([cp[pk]!.DeepClone(), pv?.DeepClone()], $"{path}/properties/{pk}") : pv?.DeepClone();
                            break;
                        case "required":
                            var cr = (JsonArray)cur!;
                            foreach (var x in (JsonArray)v!)
                                if (!cr.Any(y => y?.GetValue<string>() == x?.GetValue<string>())) cr.Add(x?.DeepClone());
                            break;
                        case "type":
                            var a = TypeSet(cur); var b = TypeSet(v);
                            var both = a.Where(t => b.Contains(t) || (t == "integer" && b.Contains("number"))).Concat(b.Where(t => t == "integer" && a.Contains("number"))).Distinct().ToList();
                            if (both.Count == 0) throw Bad("allOf parts have no type in common", path);
                            result[k] = new JsonArray(both.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray());
                            break;
                        case "enum":
                            // Both arrays and bounded before the n*m intersection.
                            var ce = Array(cur!, "enum", path);
                            var ve = Array(v!, "enum", path);
                            var keep = ce.Where(x => ve.Any(y => JsonNode.DeepEquals(x, y))).Select(x => x?.DeepClone()).ToArray();
                            if (keep.Length == 0) throw Bad("allOf parts have no enum value in common", path);
                            result[k] = new JsonArray(keep);
                            break;
                        case "minimum" or "exclusiveMinimum" or "minLength" or "minItems":
                            result[k] = JsonValue.Create(Math.Max(Num(cur), Num(v)));
                            break;
                        case "maximum" or "exclusiveMaximum" or "maxLength" or "maxItems":
                            result[k] = JsonValue.Create(Math.Min(Num(cur), Num(v)));
                            break;
                        case "items" or "additionalProperties":
                            result[k] = Merge([cur?.DeepClone(), v?.DeepClone()], $"{path}/{k}");
                            break;
                        default:
                            if (!JsonNode.DeepEquals(cur, v)) throw Unsupported($"allOf parts with different '{k}'", path);
                            break;
                    }
                }
            }
            // A part that forbids extra properties forbids the others' properties too.
            foreach (var o in expanded)
            {
                if (o["additionalProperties"] is JsonValue av && av.TryGetValue<bool>(out var ab) && !ab && result["properties"] is JsonObject rp)
                {
                    var allowed = o["properties"] as JsonObject;
                    foreach (var name in rp.Select(x => x.Key).ToList())
                    {
                        if (allowed?.ContainsKey(name) == true) continue;
                        if (result["required"] is JsonArray rr && rr.Any(x => x?.GetValue<string>() == name))
                            throw Bad($"allOf requires '{name}', which a part with additionalProperties false forbids", path);
                        rp.Remove(name);
                    }
                }
            }
            return result;

            decimal Num(JsonNode? n) => n is JsonValue nv && nv.TryGetValue<decimal>(out var d) ? d
                : n is JsonValue nv2 && nv2.TryGetValue<double>(out var dd) ? (decimal)dd
                : n is JsonValue nv3 && nv3.TryGetValue<long>(out var l) ? l
                : n is JsonValue nv4 && nv4.TryGetValue<int>(out var i) ? i : throw Bad("a bound is not a number", path);
            static List<string> TypeSet(JsonNode? t) => t is JsonArray a ? a.Select(x => x!.GetValue<string>()).ToList() : [t!.GetValue<string>()];
        }
    }

    /// <summary>ECMAScript regex (the common subset) to GBNF over JSON string content.</summary>
    private sealed class PatternConverter(string pattern, string whole, string path, Converter c)
    {
        private int _pos;
        private readonly Converter _c = c;

        private LlmException Unsup(string what) => Unsupported($"{what} in the pattern '{whole}'", path);

        public static string Convert(string p, string path, Converter c, string hint)
        {
            bool start = p.StartsWith('^'), end = p.EndsWith('$') && !p.EndsWith("\\$");
            string inner = p[(start ? 1 : 0)..Math.Max(start ? 1 : 0, end ? p.Length - 1 : p.Length)];
            var parser = new PatternConverter(inner, p, path, c);
            var body = parser.Alternation();
            if (parser._pos < inner.Length) throw parser.Unsup("an unmatched ')'");
            var ch = c.BuiltinRule("json-char");
            // JSON Schema patterns are unanchored: without ^ or $ anything may come before or after.
            var sb = new StringBuilder();
            if (!start) sb.Append(ch).Append("* ");
            sb.Append("( ").Append(body).Append(" )");
            if (!end) sb.Append(' ').Append(ch).Append('*');
            return c.NewRule(hint + "-pattern", sb.ToString());
        }

        private char Cur => _pos < pattern.Length ? pattern[_pos] : '\0';
        private bool AtEnd => _pos >= pattern.Length;

        private string Alternation()
        {
            var alts = new List<string> { Sequence() };
            while (!AtEnd && Cur == '|')
            {
                _pos++;
                alts.Add(Sequence());
            }
            return string.Join(" | ", alts.Select(a => a.Length == 0 ? "\"\"" : a));
        }

        private string Sequence()
        {
            var items = new List<string>();
            while (!AtEnd && Cur is not '|' and not ')')
            {
                var atom = Atom();
                if (!AtEnd && Cur is '*' or '+' or '?' or '{')
                {
                    int min, max;
                    char q = Cur;
                    if (q == '{')
                    {
                        int close = pattern.IndexOf('}', _pos);
                        if (close < 0) throw Unsup("an unclosed '{'");
                        var spec = pattern[(_pos + 1)..close].Split(',');
                        if (!int.TryParse(spec[0], out min) || spec.Length > 2) throw Unsup($"the quantifier '{pattern[_pos..(close + 1)]}'");
                        max = spec.Length == 1 ? min : spec[1].Length == 0 ? -1 : int.TryParse(spec[1], out var m2) ? m2 : throw Unsup("a bad quantifier");
                        _pos = close + 1;
                    }
                    else
                    {
                        _pos++;
                        (min, max) = q == '*' ? (0, -1) : q == '+' ? (1, -1) : (0, 1);
                    }
                    if (!AtEnd && Cur == '?') _pos++; // lazy: the same set of strings
                    if (!AtEnd && Cur is '*' or '+' or '{') throw Unsup("a possessive or double quantifier");
                    if (min > GbnfGrammar.MaxRepetition || max > GbnfGrammar.MaxRepetition) throw Unsup("a repetition count above 2000");
                    atom = $"( {atom} )" + (max == -1 ? min == 0 ? "*" : min == 1 ? "+" : $"{{{min},}}" : min == 0 && max == 1 ? "?" : min == max ? $"{{{min}}}" : $"{{{min},{max}}}");
                }
                items.Add(atom);
            }
            return string.Join(" ", items);
        }

        private string Atom()
        {
            char c = Cur;
            switch (c)
            {
                case '(':
                    _pos++;
                    if (Cur == '?')
                    {
                        if (_pos + 1 < pattern.Length && pattern[_pos + 1] == ':') _pos += 2;
                        else throw Unsup("a lookaround or named group '(?'");
                    }
                    var inner = Alternation();
                    if (Cur != ')') throw Unsup("an unclosed '('");
                    _pos++;
                    return $"( {inner} )";
                case '[':
                    return Class();
                case '.':
                    _pos++;
                    return _c.BuiltinRule("pattern-dot");
                case '^' or '$':
                    throw Unsup($"an anchor '{c}' inside the pattern");
                case '\\':
                    _pos++;
                    return Escape(inClass: false).Expr;
                default:
                    _pos++;
                    if (char.IsHighSurrogate(c) && !AtEnd && char.IsLowSurrogate(Cur)) return Literal(c.ToString() + pattern[_pos++]);
                    return JsonChar(c);
            }
        }

        /// <summary>A character as the JSON text writes it inside a string.</summary>
        private static string JsonChar(char c) => c switch
        {
            '"' => "\"\\\\\\\"\"",
            '\\' => "\"\\\\\\\\\"",
            '\n' => "\"\\\\n\"",
            '\r' => "\"\\\\r\"",
            '\t' => "\"\\\\t\"",
            '\b' => "\"\\\\b\"",
            '\f' => "\"\\\\f\"",
            < ' ' or '\x7F' => "\"\\\\u00" + ((int)c).ToString("x2", CultureInfo.InvariantCulture) + "\"",
            _ => Literal(c.ToString()),
        };

        /// <summary>An escape after '\': a single character, or a class (\d \w \s and negations) as an expression.</summary>
        private (char? Char, string Expr) Escape(bool inClass)
        {
            if (AtEnd) throw Unsup("a trailing '\\'");
            char e = pattern[_pos++];
            switch (e)
            {
                case 'd': return (null, "[0-9]");
                case 'w': return (null, "[a-zA-Z0-9_]");
                case 's': return (null, "( \" \" | \"\\\\\" [tnrfv] )");
                case 'D': return (null, "[^0-9\"\\\\\\x7F\\x00-\\x1F]");
                case 'W': return (null, "[^a-zA-Z0-9_\"\\\\\\x7F\\x00-\\x1F]");
                case 'S': return (null, "[^ \"\\\\\\x7F\\x00-\\x1F]");
                case 'n': return ('\n', JsonChar('\n'));
                case 'r': return ('\r', JsonChar('\r'));
                case 't': return ('\t', JsonChar('\t'));
                case 'f': return ('\f', JsonChar('\f'));
                case 'v': return ('\v', JsonChar('\v'));
                case 'x' or 'u':
                    int len = e == 'x' ? 2 : 4;
                    if (_pos + len > pattern.Length || !int.TryParse(pattern.AsSpan(_pos, len), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code))
                        throw Unsup($"a bad '\\{e}' escape");
                    _pos += len;
                    return ((char)code, JsonChar((char)code));
                case 'b' or 'B' when !inClass:
                    throw Unsup("a word boundary '\\b'");
                default:
                    if (char.IsAsciiDigit(e)) throw Unsup("a back reference");
                    if (char.IsAsciiLetter(e)) throw Unsup($"the escape '\\{e}'");
                    return (e, JsonChar(e));
            }
        }

        private string Class()
        {
            _pos++; // [
            bool negated = false;
            if (Cur == '^') { negated = true; _pos++; }
            var ranges = new List<(char From, char To)>();
            var extras = new List<string>();
            while (!AtEnd && Cur != ']')
            {
                char? from;
                if (Cur == '\\')
                {
                    _pos++;
                    var (ch, expr) = Escape(inClass: true);
                    if (ch is null)
                    {
                        if (negated) throw Unsup("a class escape (\\d \\w \\s) inside a negated class");
                        extras.Add(expr);
                        continue;
                    }
                    from = ch;
                }
                else from = pattern[_pos++];
                char to = from.Value;
                if (Cur == '-' && _pos + 1 < pattern.Length && pattern[_pos + 1] != ']')
                {
                    _pos++;
                    if (Cur == '\\')
                    {
                        _pos++;
                        var (ch2, _) = Escape(inClass: true);
                        to = ch2 ?? throw Unsup("a class escape as a range end");
                    }
                    else to = pattern[_pos++];
                    if (to < from) throw Unsup("a character range out of order");
                }
                ranges.Add((from.Value, to));
            }
            if (AtEnd) throw Unsup("an unclosed '['");
            _pos++; // ]

            static string Esc(char c) => ClassChar(c);
            if (negated)
            {
                // The complement, less the characters JSON writes as escapes (a subset: still valid).
                var body = string.Concat(ranges.Select(r => r.From == r.To ? Esc(r.From) : $"{Esc(r.From)}-{Esc(r.To)}"));
                return $"[^{body}\"\\\\\\x7F\\x00-\\x1F]";
            }
            // Plain characters in one GBNF class; those JSON must escape as their escape sequences.
            var plain = new StringBuilder();
            foreach (var (f, t) in ranges)
            {
                for (int special = 0; special < 0x20; special++)
                    if (special >= f && special <= t) extras.Add(JsonChar((char)special));
                foreach (var s in new[] { '"', '\\', '\x7F' })
                    if (s >= f && s <= t) extras.Add(JsonChar(s));
                // Split the range around the characters handled above.
                int lo = Math.Max(f, (char)0x20);
                for (int x = lo; x <= t; )
                {
                    if (x is '"' or '\\' or 0x7F) { x++; continue; }
                    int y = x;
                    while (y + 1 <= t && y + 1 is not '"' and not '\\' and not 0x7F) y++;
                    plain.Append(x == y ? Esc((char)x) : $"{Esc((char)x)}-{Esc((char)y)}");
                    x = y + 1;
                }
            }
            var alts = new List<string>();
            if (plain.Length > 0) alts.Add($"[{plain}]");
            alts.AddRange(extras.Distinct());
            if (alts.Count == 0) throw Unsup("an empty character class");
            return alts.Count == 1 ? alts[0] : $"( {string.Join(" | ", alts)} )";
        }
    }
}
