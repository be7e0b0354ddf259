using System.Collections;
using System.Globalization;
using System.Text;

namespace LlmTools.Templates;

/// <summary>jinja2's Undefined: prints as nothing, is false, iterates as empty; using it any further is an error.</summary>
internal sealed class Undefined(string name, string? hint = null)
{
    public string Name { get; } = name;
    public TemplateException Error() => new(hint ?? $"'{Name}' is undefined");
    public override string ToString() => "";

    /// <summary>
    /// What the sandbox gives for an attribute it refuses (names starting with '_': __class__, __globals__...), as
    /// jinja2's sandbox does: an undefined value that prints as nothing, and any further use is a security error.
    /// </summary>
    public static Undefined Unsafe(object? target, string name) => new(name, Sandbox.Unsafe(target, name).Message);
}

/// <summary>A Python tuple: a list that prints as (a, b). dict.items(), dictsort and (a, b) literals make them.</summary>
internal sealed class PyTuple : List<object?>
{
    public PyTuple() { }
    public PyTuple(IEnumerable<object?> items) : base(items) { }
}

/// <summary>The object namespace(...) makes: attributes that a loop body can set and the code after it can read.</summary>
internal sealed class Namespace
{
    public OrderedDictionary<string, object?> Values { get; } = new(StringComparer.Ordinal);
}

/// <summary>
/// What map/select/reject return in jinja2: a generator. It iterates like a list, but has no length, is not JSON
/// serializable and prints as a generator object, so templates that forget "| list" fail as they do in Python.
/// </summary>
internal sealed class GeneratorValue(List<object?> items)
{
    public List<object?> Items { get; } = items;
}

/// <summary>
/// markupsafe's Markup, which the safe and escape filters return: adding a plain string to it escapes that string
/// (a template that writes "..."|safe + value gets value HTML-escaped, as in Python). Everywhere else it is its text.
/// </summary>
internal sealed class MarkupValue(string text)
{
    public string Text { get; } = text;
    public override string ToString() => Text;

    public static string Escape(string s) =>
        s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;");
}

/// <summary>Something callable from a template: a macro, a global function, a bound method.</summary>
internal delegate object? Callable(List<object?> args, Dictionary<string, object?> kwargs);

internal sealed class CallableValue(string name, Callable call)
{
    public string Name { get; } = name;
    public Callable Call { get; } = call;
}

/// <summary>Python semantics for the values a chat template handles.</summary>
internal static class Py
{
    /// <summary>Markup as the string it is; anything else unchanged.</summary>
    public static object? Plain(object? v) => v is MarkupValue m ? m.Text : v;

    public static bool Truthy(object? v) => Plain(v) switch
    {
        null => false,
        Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        ICollection c => c.Count > 0,
        Namespace or GeneratorValue => true,
        _ => true,
    };

    public static bool IsMapping(object? v) => v is OrderedDictionary<string, object?> or Namespace;
    public static bool IsSequence(object? v) => v is string or List<object?>;

    /// <summary>str(v) as Python prints it: None, True, 1.0, ['a'], {'k': 1}.</summary>
    public static string Str(object? v) => Plain(v) switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        _ => Repr(v),
    };

    public static string Repr(object? v) => Repr(v, 0);

    private static string Repr(object? v, int depth)
    {
        switch (v)
        {
            case string s: return StringRepr(s);
            case List<object?> or OrderedDictionary<string, object?>:
            {
                Sandbox.EnterValue(depth);
                var sb = new StringBuilder();
                if (v is OrderedDictionary<string, object?> d)
                {
                    sb.Append('{');
                    foreach (var (key, value) in d)
                    {
                        if (sb.Length > 1) sb.Append(", ");
                        sb.Append(Repr(KeyValue(key), depth + 1)).Append(": ").Append(Repr(value, depth + 1));
                        Sandbox.CheckLength(sb.Length);
                    }
                    Sandbox.CheckString(sb.Length);
                return sb.Append('}').ToString();
                }
                var list = (List<object?>)v;
                sb.Append(v is PyTuple ? '(' : '[');
                foreach (var item in list)
                {
                    if (sb.Length > 1) sb.Append(", ");
                    sb.Append(Repr(item, depth + 1));
                    Sandbox.CheckLength(sb.Length);
                }
                if (v is PyTuple && list.Count == 1) sb.Append(',');
                Sandbox.CheckString(sb.Length);
                return sb.Append(v is PyTuple ? ')' : ']').ToString();
            }
            case Namespace: return "<Namespace>";
            case CallableValue c: return $"<function {c.Name}>";
            case GeneratorValue: return "<generator object sync_do_map at 0x7f0000000000>";
            default: return Str(v);
        }
    }

    /// <summary>
    /// Dictionary keys. Python's dicts take any hashable key; ours store strings, with a non-string key (an int from
    /// a literal like {0: 'a'}) encoded behind a NUL mark so it keeps its type: {0: 'a'} | dictsort gives the int 0.
    /// </summary>
    private const char KeyMark = '\0';

    public static string DictKey(object? key) =>
        TryDictKey(key, out var k) ? k : throw new TemplateException($"unhashable type: '{TypeName(key)}'");

    public static bool TryDictKey(object? key, out string stored)
    {
        switch (Plain(key))
        {
            case string s: stored = s.Length > 0 && s[0] == KeyMark ? KeyMark + "s" + s : s; return true;
            case bool b: stored = KeyMark + "i" + (b ? "1" : "0"); return true;
            case long l: stored = KeyMark + "i" + l.ToString(CultureInfo.InvariantCulture); return true;
            case double d when d == Math.Floor(d) && Math.Abs(d) < 9e18: stored = KeyMark + "i" + ((long)d).ToString(CultureInfo.InvariantCulture); return true;
            case double d: stored = KeyMark + "f" + d.ToString("R", CultureInfo.InvariantCulture); return true;
            case null: stored = KeyMark + "n"; return true;
            default: stored = ""; return false;
        }
    }

    /// <summary>A stored dictionary key as the value it was.</summary>
    public static object? KeyValue(string stored) => stored.Length == 0 || stored[0] != KeyMark ? stored : stored[1] switch
    {
        's' => stored[2..],
        'i' => long.Parse(stored.AsSpan(2), CultureInfo.InvariantCulture),
        'f' => double.Parse(stored.AsSpan(2), CultureInfo.InvariantCulture),
        _ => null,
    };

    private static string StringRepr(string s)
    {
        char q = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(q);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == q) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) sb.Append($"\\x{(int)c:x2}");
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append(q).ToString();
    }

    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        var r = d.ToString("R", CultureInfo.InvariantCulture);
        if (r.Contains('E'))
        {
            // Python: 1e+16, 1.5e-07
            var parts = r.Split('E');
            var exp = int.Parse(parts[1], CultureInfo.InvariantCulture);
            return parts[0] + "e" + (exp < 0 ? "-" : "+") + Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture);
        }
        double abs = Math.Abs(d);
        if (abs >= 1e16) return FloatRepr(d).Replace("E", "e"); // not reached: R switches to E first
        return r.Contains('.') ? r : r + ".0";
    }

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        PyTuple => "tuple",
        List<object?> => "list",
        OrderedDictionary<string, object?> => "dict",
        Namespace => "Namespace",
        GeneratorValue => "generator",
        CallableValue => "function",
        LoopInfo => "LoopContext",
        MarkupValue => "Markup",
        _ => v.GetType().Name,
    };

    public static bool Equal(object? a, object? b) => Equal(a, b, 0);

    private static bool Equal(object? a, object? b, int depth)
    {
        a = Plain(a);
        b = Plain(b);
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a) == ToDouble(b);
        if (a is string sa && b is string sb) return sa == sb;
        if (ReferenceEquals(a, b)) return true;
        if (a is List<object?> la && b is List<object?> lb)
        {
            Sandbox.EnterValue(depth);
            Runtime.Scan(la.Count);
            return la.Count == lb.Count && la.Zip(lb).All(p => Equal(p.First, p.Second, depth + 1));
        }
        if (a is OrderedDictionary<string, object?> da && b is OrderedDictionary<string, object?> db)
        {
            Sandbox.EnterValue(depth);
            return da.Count == db.Count && da.All(kv => db.TryGetValue(kv.Key, out var o) && Equal(kv.Value, o, depth + 1));
        }
        return ReferenceEquals(a, b) || a.Equals(b);
    }

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new TemplateException($"unsupported operand type '{TypeName(v)}' for a number"),
    };

    public static int Compare(object? a, object? b) => Compare(a, b, 0);

    private static int Compare(object? a, object? b, int depth)
    {
        a = Plain(a);
        b = Plain(b);
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a).CompareTo(ToDouble(b));
        if (a is string sa && b is string sb) return string.CompareOrdinal(sa, sb);
        if (a is List<object?> la && b is List<object?> lb)
        {
            Sandbox.EnterValue(depth);
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                int c = Compare(la[i], lb[i], depth + 1);
                if (c != 0) return c;
            }
            return la.Count.CompareTo(lb.Count);
        }
        throw new TemplateException($"'<' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    /// <summary>Iterates as Python does: a dict gives its keys, a string its characters.</summary>
    public static IEnumerable<object?> Iterate(object? v) => Plain(v) switch
    {
        null => throw new TemplateException("'NoneType' object is not iterable"),
        Undefined => [],
        List<object?> l => l,
        GeneratorValue g => g.Items,
        OrderedDictionary<string, object?> d => d.Keys.Select(KeyValue),
        string s => s.Select(c => (object?)c.ToString()),
        _ => throw new TemplateException($"'{TypeName(v)}' object is not iterable"),
    };

    public static long Length(object? v) => Plain(v) switch
    {
        string s => new StringInfo(s).LengthInTextElements == s.Length ? s.Length : CountCodePoints(s),
        ICollection c => c.Count,
        Undefined => 0,
        _ => throw new TemplateException($"object of type '{TypeName(v)}' has no len()"),
    };

    private static long CountCodePoints(string s)
    {
        long n = 0;
        for (int i = 0; i < s.Length; i++) { n++; if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++; }
        return n;
    }

    /// <summary>
    /// Converts values from the caller (JSON, dictionaries, arrays) into the template's value types. A value that
    /// contains itself or nests deeper than the sandbox allows is an error, not a stack overflow.
    /// </summary>
    public static object? FromClr(object? v) => FromClr(v, 0, null);

    private static object? FromClr(object? v, int depth, HashSet<object>? path)
    {
        switch (v)
        {
            case null: return null;
            case string or bool or long or double or Undefined or Namespace or CallableValue: return v;
            case int i: return (long)i;
            case short s: return (long)s;
            case byte b: return (long)b;
            case uint u: return (long)u;
            case ulong ul: return ul > long.MaxValue ? (double)ul : (long)ul;
            case float f: return (double)f;
            case decimal m: return (double)m;
            case System.Text.Json.JsonElement e: return FromJson(e, depth);
            case OrderedDictionary<string, object?> or IDictionary or IEnumerable:
            {
                if (depth > TemplateLimits.MaxValueDepth)
                    throw new TemplateException($"a value given to the template nests more than {TemplateLimits.MaxValueDepth} levels deep");
                path ??= new HashSet<object>(ReferenceEqualityComparer.Instance);
                if (!path.Add(v)) throw new TemplateException("a value given to the template contains itself");
                try
                {
                    if (v is OrderedDictionary<string, object?> od)
                    {
                        // already template values at the top; their contents may still come from the caller
                        var copy = new OrderedDictionary<string, object?>(od.Count, StringComparer.Ordinal);
                        foreach (var (k, x) in od) copy[k] = FromClr(x, depth + 1, path);
                        return copy;
                    }
                    if (v is IDictionary d)
                    {
                        var r = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
                        foreach (DictionaryEntry kv in d) r[kv.Key.ToString() ?? ""] = FromClr(kv.Value, depth + 1, path);
                        return r;
                    }
                    var list = new List<object?>();
                    foreach (var x in (IEnumerable)v)
                    {
                        if (list.Count >= TemplateLimits.MaxListLength)
                            throw new TemplateException($"a list given to the template has more than {TemplateLimits.MaxListLength} items");
                        list.Add(FromClr(x, depth + 1, path));
                    }
                    return list;
                }
                finally
                {
                    path.Remove(v);
                }
            }
            default: return v.ToString();
        }
    }

    public static object? FromJson(System.Text.Json.JsonElement e) => FromJson(e, 0);

    private static object? FromJson(System.Text.Json.JsonElement e, int depth)
    {
        if (depth > TemplateLimits.MaxValueDepth)
            throw new TemplateException($"a value given to the template nests more than {TemplateLimits.MaxValueDepth} levels deep");
        return e.ValueKind switch
        {
            System.Text.Json.JsonValueKind.Null or System.Text.Json.JsonValueKind.Undefined => null,
            System.Text.Json.JsonValueKind.True => true,
            System.Text.Json.JsonValueKind.False => false,
            System.Text.Json.JsonValueKind.String => e.GetString(),
            System.Text.Json.JsonValueKind.Number => e.TryGetInt64(out var l) && !e.GetRawText().Contains('.') && !e.GetRawText().Contains('e') && !e.GetRawText().Contains('E') ? (object)l : e.GetDouble(),
            System.Text.Json.JsonValueKind.Array => e.EnumerateArray().Select(x => FromJson(x, depth + 1)).ToList(),
            _ => e.EnumerateObject().Aggregate(new OrderedDictionary<string, object?>(StringComparer.Ordinal), (d, p) => { d[p.Name] = FromJson(p.Value, depth + 1); return d; }),
        };
    }
    /// <summary>json.dumps as transformers' tojson calls it: non-ASCII kept, no HTML escaping.</summary>
    public static string ToJson(object? v, int? indent, string? itemSep, string? keySep, bool sortKeys, bool ensureAscii = false)
    {
        var sb = new StringBuilder();
        itemSep ??= indent is null ? ", " : ",";
        keySep ??= ": ";
        var path = new HashSet<object>(ReferenceEqualityComparer.Instance); // containers being written: json.dumps' check_circular
        Write(v, 0);
        Sandbox.CheckString(sb.Length);
        return sb.ToString();

        void Write(object? x, int level)
        {
            Sandbox.CheckLength(sb.Length);
            if (x is List<object?> or OrderedDictionary<string, object?>)
            {
                if (!path.Add(x)) throw new TemplateException("Circular reference detected");
                Sandbox.EnterValue(level);
                WriteValue(x, level);
                path.Remove(x);
            }
            else WriteValue(x, level);
        }

        void WriteValue(object? x, int level)
        {
            switch (Plain(x))
            {
                case null: sb.Append("null"); break;
                case Undefined u: throw new TemplateException($"Object of type Undefined is not JSON serializable ('{u.Name}')");
                case bool b: sb.Append(b ? "true" : "false"); break;
                case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d:
                    sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : FloatRepr(d));
                    break;
                case string s: JsonString(sb, s, ensureAscii); break;
                case List<object?> list:
                    if (list.Count == 0) { sb.Append("[]"); break; }
                    sb.Append('[');
                    for (int i = 0; i < list.Count; i++)
                    {
                        if (i > 0) sb.Append(itemSep);
                        Newline(level + 1);
                        Write(list[i], level + 1);
                    }
                    Newline(level);
                    sb.Append(']');
                    break;
                case OrderedDictionary<string, object?> dict:
                    if (dict.Count == 0) { sb.Append("{}"); break; }
                    sb.Append('{');
                    var keys = sortKeys ? dict.Keys.OrderBy(KeyValue, Comparer<object?>.Create(Compare)).ToList() : dict.Keys.ToList();
                    for (int i = 0; i < keys.Count; i++)
                    {
                        if (i > 0) sb.Append(itemSep);
                        Newline(level + 1);
                        JsonString(sb, JsonKey(KeyValue(keys[i])), ensureAscii);
                        sb.Append(keySep);
                        Write(dict[keys[i]], level + 1);
                    }
                    Newline(level);
                    sb.Append('}');
                    break;
                case GeneratorValue: throw new TemplateException("Object of type generator is not JSON serializable");
                default: throw new TemplateException($"Object of type {TypeName(x)} is not JSON serializable");
            }
        }

        void Newline(int level)
        {
            if (indent is null) return;
            sb.Append('\n').Append(' ', indent.Value * level);
        }
    }

    // json.dumps writes non-string keys as their JSON text: 0 -> "0", None -> "null", True -> "true"
    private static string JsonKey(object? key) => key switch
    {
        string s => s,
        null => "null",
        bool b => b ? "true" : "false",
        double d => FloatRepr(d),
        _ => Str(key),
    };

    private static void JsonString(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ensureAscii && c > 0x7e)) sb.Append($"\\u{(int)c:x4}");
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
