using System.Collections;
using System.Globalization;
using System.Text;

namespace LlmTools.Templates;

/// <summary>jinja2's Undefined: prints as nothing, is false, iterates as empty; using it any further is an error.</summary>
internal sealed class Undefined(string name)
{
    public string Name { get; } = name;
    public TemplateException Error() => new($"'{Name}' is undefined");
    public override string ToString() => "";
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

    public static string Repr(object? v)
    {
        switch (v)
        {
            case string s: return StringRepr(s);
            case PyTuple t: return t.Count == 1 ? "(" + Repr(t[0]) + ",)" : "(" + string.Join(", ", t.Select(Repr)) + ")";
            case List<object?> list: return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case OrderedDictionary<string, object?> d: return "{" + string.Join(", ", d.Select(kv => StringRepr(kv.Key) + ": " + Repr(kv.Value))) + "}";
            case Namespace: return "<Namespace>";
            case CallableValue c: return $"<function {c.Name}>";
            case GeneratorValue: return "<generator object sync_do_map at 0x7f0000000000>";
            default: return Str(v);
        }
    }

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
        _ => v.GetType().Name,
    };

    public static bool Equal(object? a, object? b)
    {
        a = Plain(a);
        b = Plain(b);
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a) == ToDouble(b);
        if (a is string sa && b is string sb) return sa == sb;
        if (a is List<object?> la && b is List<object?> lb) return la.Count == lb.Count && la.Zip(lb).All(p => Equal(p.First, p.Second));
        if (a is OrderedDictionary<string, object?> da && b is OrderedDictionary<string, object?> db)
            return da.Count == db.Count && da.All(kv => db.TryGetValue(kv.Key, out var o) && Equal(kv.Value, o));
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

    public static int Compare(object? a, object? b)
    {
        a = Plain(a);
        b = Plain(b);
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a).CompareTo(ToDouble(b));
        if (a is string sa && b is string sb) return string.CompareOrdinal(sa, sb);
        if (a is List<object?> la && b is List<object?> lb)
        {
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                int c = Compare(la[i], lb[i]);
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
        OrderedDictionary<string, object?> d => d.Keys.Cast<object?>(),
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

    /// <summary>Converts values from the caller (JSON, dictionaries, arrays) into the template's value types.</summary>
    public static object? FromClr(object? v) => v switch
    {
        null => null,
        string or bool or long or double or Undefined or Namespace or CallableValue => v,
        int i => (long)i,
        short s => (long)s,
        byte b => (long)b,
        uint u => (long)u,
        ulong ul => (long)ul,
        float f => (double)f,
        decimal m => (double)m,
        OrderedDictionary<string, object?> d => d,
        System.Text.Json.JsonElement e => FromJson(e),
        IDictionary d => ToDict(d),
        IEnumerable e => e.Cast<object?>().Select(FromClr).ToList(),
        _ => v.ToString(),
    };

    private static OrderedDictionary<string, object?> ToDict(IDictionary d)
    {
        var r = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (DictionaryEntry kv in d) r[kv.Key.ToString()!] = FromClr(kv.Value);
        return r;
    }

    public static object? FromJson(System.Text.Json.JsonElement e) => e.ValueKind switch
    {
        System.Text.Json.JsonValueKind.Null or System.Text.Json.JsonValueKind.Undefined => null,
        System.Text.Json.JsonValueKind.True => true,
        System.Text.Json.JsonValueKind.False => false,
        System.Text.Json.JsonValueKind.String => e.GetString(),
        System.Text.Json.JsonValueKind.Number => e.TryGetInt64(out var l) && !e.GetRawText().Contains('.') && !e.GetRawText().Contains('e') && !e.GetRawText().Contains('E') ? (object)l : e.GetDouble(),
        System.Text.Json.JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        _ => e.EnumerateObject().Aggregate(new OrderedDictionary<string, object?>(StringComparer.Ordinal), (d, p) => { d[p.Name] = FromJson(p.Value); return d; }),
    };

    /// <summary>json.dumps as transformers' tojson calls it: non-ASCII kept, no HTML escaping.</summary>
    public static string ToJson(object? v, int? indent, string? itemSep, string? keySep, bool sortKeys, bool ensureAscii = false)
    {
        var sb = new StringBuilder();
        itemSep ??= indent is null ? ", " : ",";
        keySep ??= ": ";
        Write(v, 0);
        return sb.ToString();

        void Write(object? x, int level)
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
                case OrderedDictionary<string, object?> or Namespace:
                    var dict = x as OrderedDictionary<string, object?> ?? ((Namespace)x!).Values;
                    if (dict.Count == 0) { sb.Append("{}"); break; }
                    sb.Append('{');
                    var keys = sortKeys ? dict.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList() : dict.Keys.ToList();
                    for (int i = 0; i < keys.Count; i++)
                    {
                        if (i > 0) sb.Append(itemSep);
                        Newline(level + 1);
                        JsonString(sb, keys[i], ensureAscii);
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
