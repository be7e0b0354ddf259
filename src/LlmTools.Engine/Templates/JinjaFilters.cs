using System.Globalization;
using System.Text;

namespace LlmTools.Templates;

/// <summary>jinja2's built-in filters that chat templates use, plus transformers' tojson.</summary>
internal static class Filters
{
    public static readonly HashSet<string> Names =
    [
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "forceescape",
        "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
        "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title",
        "tojson", "trim", "unique", "upper", "wordcount", "batch", "center", "striptags", "truncate",
    ];

    private static object? Arg(List<object?> a, Dictionary<string, object?> k, int i, string name, object? dflt = null) =>
        i < a.Count ? a[i] : k.TryGetValue(name, out var v) ? v : dflt;

    private static List<object?> AsList(object? v) => Sandbox.ToList(Py.Iterate(v));

    public static object? Apply(RenderContext ctx, string name, object? v, List<object?> a, Dictionary<string, object?> k)
    {
        if (name is "safe" or "forceescape" or "e" or "escape")
            return name is "safe" ? v as MarkupValue ?? new MarkupValue(Py.Str(v))
                : v as MarkupValue ?? new MarkupValue(MarkupValue.Escape(Py.Str(v)));
        v = Py.Plain(v);
        // Every filter but default/d refuses an undefined value as jinja2 does.
        if (v is Undefined u && name is not ("default" or "d" or "length" or "count" or "list" or "string" or "tojson" or "trim" or "join" or "first" or "last"))
            throw u.Error();
        switch (name)
        {
            case "default":
            case "d":
            {
                bool boolean = Py.Truthy(Arg(a, k, 1, "boolean", false));
                return v is Undefined || (boolean && !Py.Truthy(v)) ? Arg(a, k, 0, "default_value", "") : v;
            }
            case "length":
            case "count":
                return Py.Length(v);
            case "string": return Py.Str(v);
            case "trim":
            {
                if (v is Undefined) return "";
                var chars = Arg(a, k, 0, "chars");
                var s = Py.Str(v);
                return chars is string c ? s.Trim(c.ToCharArray()) : s.Trim();
            }
            case "upper": return Py.Str(v).ToUpperInvariant();
            case "lower": return Py.Str(v).ToLowerInvariant();
            case "title": return Runtime.Title(Py.Str(v));
            case "capitalize": { var s = Py.Str(v); return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); }
            case "replace":
                return Runtime.Replace(Py.Str(v), Py.Str(Arg(a, k, 0, "old")), Py.Str(Arg(a, k, 1, "new")), Arg(a, k, 2, "count") is long rc ? rc : -1);
            case "list": return v is Undefined ? new List<object?>() : AsList(v);
            case "items":
                if (v is Undefined) return new List<object?>();
                if (v is not OrderedDictionary<string, object?> map) throw new TemplateException($"items filter needs a mapping, not {Py.TypeName(v)}");
                return map.Select(kv => (object?)new PyTuple { Py.KeyValue(kv.Key), kv.Value }).ToList();
            case "join":
            {
                if (v is Undefined) return "";
                var attribute = Arg(a, k, 1, "attribute");
                var items = AsList(v).Select(x => attribute is null ? x : Runtime.GetItem(x, attribute));
                return Runtime.Join(Py.Str(Arg(a, k, 0, "d", "")), items.Select(Py.Str));
            }
            case "first": { var l = v is Undefined ? [] : AsList(v); return l.Count > 0 ? l[0] : new Undefined("first"); }
            case "last": { var l = v is Undefined ? [] : AsList(v); return l.Count > 0 ? l[^1] : new Undefined("last"); }
            case "reverse": return v is string rs ? new string(rs.Reverse().ToArray()) : Enumerable.Reverse(AsList(v)).ToList();
            case "int":
            {
                var dflt = Arg(a, k, 0, "default", 0L);
                return v switch
                {
                    long l => l,
                    bool b => b ? 1L : 0L,
                    double d => (long)Math.Truncate(d),
                    string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) => l,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => (long)Math.Truncate(d),
                    _ => dflt,
                };
            }
            case "float":
                return v switch
                {
                    long l => (double)l,
                    double d => d,
                    bool b => b ? 1.0 : 0.0,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
                    _ => Arg(a, k, 0, "default", 0.0),
                };
            case "abs": return v is long l2 ? (object)Math.Abs(l2) : Math.Abs(Py.ToDouble(v));
            case "round":
            {
                int precision = (int)Py.ToDouble(Arg(a, k, 0, "precision", 0L));
                var method = Py.Str(Arg(a, k, 1, "method", "common"));
                double x = Py.ToDouble(v), f = Math.Pow(10, precision);
                return method switch
                {
                    "ceil" => Math.Ceiling(x * f) / f,
                    "floor" => Math.Floor(x * f) / f,
                    _ => Math.Round(x * f, MidpointRounding.AwayFromZero) / f,
                };
            }
            case "tojson":
            {
                var indentArg = Arg(a, k, 0, "indent");
                int? indent = indentArg is long n ? (int)n : null;
                string? itemSep = null, keySep = null;
                if (k.TryGetValue("separators", out var seps) && seps is List<object?> { Count: 2 } sp)
                {
                    itemSep = Py.Str(sp[0]);
                    keySep = Py.Str(sp[1]);
                }
                return Py.ToJson(v, indent, itemSep, keySep, Py.Truthy(k.GetValueOrDefault("sort_keys")), Py.Truthy(k.GetValueOrDefault("ensure_ascii")));
            }
            case "indent":
            {
                var width = Arg(a, k, 0, "width", 4L);
                string pad = width is string ws ? ws : new string(' ', Math.Max(0, Sandbox.Size(width, "indent width")));
                bool first = Py.Truthy(Arg(a, k, 1, "first", false)), blank = Py.Truthy(Arg(a, k, 2, "blank", false));
                var s = Py.Str(v);
                var lines = s.Split('\n');
                var sb = new StringBuilder();
                for (int i = 0; i < lines.Length; i++)
                {
                    Sandbox.CheckLength((long)sb.Length + pad.Length);
                    if (i > 0) sb.Append('\n');
                    bool indentThis = i == 0 ? first : blank || lines[i].Trim().Length > 0;
                    if (indentThis && (i > 0 || lines[i].Length > 0 || blank || first)) sb.Append(pad);
                    sb.Append(lines[i]);
                }
                return sb.ToString();
            }
            case "dictsort":
            {
                if (v is not OrderedDictionary<string, object?> d) throw new TemplateException("dictsort needs a mapping");
                bool caseSensitive = Py.Truthy(Arg(a, k, 0, "case_sensitive", false));
                bool byValue = Py.Str(Arg(a, k, 1, "by", "key")) == "value";
                bool reverse = Py.Truthy(Arg(a, k, 2, "reverse", false));
                var pairs = d.Select(kv => (Key: Py.KeyValue(kv.Key), kv.Value)).ToList();
                object? Key((object? Key, object? Value) p) => SortKey(byValue ? p.Value : p.Key, caseSensitive);
                pairs.Sort((x, y) => Py.Compare(Key(x), Key(y)));
                if (reverse) pairs.Reverse();
                return pairs.Select(p => (object?)new PyTuple { p.Key, p.Value }).ToList();
            }
            case "sort":
            {
                bool reverse = Py.Truthy(Arg(a, k, 0, "reverse", false));
                bool caseSensitive = Py.Truthy(Arg(a, k, 1, "case_sensitive", false));
                var attribute = Arg(a, k, 2, "attribute");
                var items = AsList(v);
                var keyed = items.Select(x => (Item: x, Key: SortKey(attribute is null ? x : Runtime.GetItem(x, attribute), caseSensitive))).ToList();
                var sorted = keyed.OrderBy(x => x.Key, Comparer<object?>.Create(Py.Compare)).Select(x => x.Item).ToList();
                if (reverse) sorted.Reverse();
                return sorted;
            }
            case "unique":
            {
                bool caseSensitive = Py.Truthy(Arg(a, k, 0, "case_sensitive", false));
                var attribute = Arg(a, k, 1, "attribute");
                var seen = new List<object?>();
                var result = new List<object?>();
                foreach (var x in AsList(v))
                {
                    var key = SortKey(attribute is null ? x : Runtime.GetItem(x, attribute), caseSensitive);
                    Runtime.Scan(seen.Count); // quadratic: charged as it goes
                    if (seen.Any(s => Py.Equal(s, key))) continue;
                    seen.Add(key);
                    result.Add(x);
                }
                return result;
            }
            case "min":
            case "max":
            {
                bool caseSensitive = Py.Truthy(Arg(a, k, 0, "case_sensitive", false));
                var attribute = Arg(a, k, 1, "attribute");
                var items = AsList(v);
                if (items.Count == 0) return new Undefined(name);
                var best = items[0];
                foreach (var x in items.Skip(1))
                {
                    int c = Py.Compare(SortKey(attribute is null ? x : Runtime.GetItem(x, attribute), caseSensitive),
                        SortKey(attribute is null ? best : Runtime.GetItem(best, attribute), caseSensitive));
                    if (name == "min" ? c < 0 : c > 0) best = x;
                }
                return best;
            }
            case "sum":
            {
                var attribute = Arg(a, k, 0, "attribute");
                object? total = Arg(a, k, 1, "start", 0L);
                foreach (var x in AsList(v)) total = Runtime.Binary("+", total, attribute is null ? x : Runtime.GetItem(x, attribute));
                return total;
            }
            case "map":
            {
                var items = Py.Truthy(v) ? AsList(v) : [];
                if (k.TryGetValue("attribute", out var attribute))
                {
                    var dflt = k.GetValueOrDefault("default");
                    return new GeneratorValue(items.Select(x =>
                    {
                        var r = Runtime.GetItem(x, attribute);
                        return r is Undefined && k.ContainsKey("default") ? dflt : r;
                    }).ToList());
                }
                if (a.Count == 0) throw new TemplateException("map requires a filter argument");
                var filter = Py.Str(a[0]);
                if (!Names.Contains(filter)) throw new TemplateException($"No filter named '{filter}'.");
                return new GeneratorValue(items.Select(x => Apply(ctx, filter, x, a.Skip(1).ToList(), k)).ToList());
            }
            case "select":
            case "reject":
            {
                bool keep = name == "select";
                var items = Py.Truthy(v) ? AsList(v) : [];
                if (a.Count == 0) return new GeneratorValue(items.Where(x => Py.Truthy(x) == keep).ToList());
                var test = Py.Str(a[0]);
                return new GeneratorValue(items.Where(x => Tests.Apply(test, x, a.Skip(1).ToList()) == keep).ToList());
            }
            case "selectattr":
            case "rejectattr":
            {
                bool keep = name == "selectattr";
                var items = Py.Truthy(v) ? AsList(v) : [];
                var attribute = Arg(a, k, 0, "attribute");
                return new GeneratorValue(items.Where(x =>
                {
                    var value = Runtime.GetItem(x, attribute);
                    bool passes = a.Count > 1 ? Tests.Apply(Py.Str(a[1]), value, a.Skip(2).ToList()) : Py.Truthy(value);
                    return passes == keep;
                }).ToList());
            }
            case "attr": return Runtime.GetAttribute(v, Py.Str(Arg(a, k, 0, "name")));
            case "wordcount": return (long)Py.Str(v).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            case "format": return Runtime.Binary("%", Py.Str(v), a.Count == 1 ? a[0] : a);
            case "center":
            {
                var s = Py.Str(v);
                int width = Sandbox.Size(Arg(a, k, 0, "width", 80L), "center width");
                if (s.Length >= width) return s;
                int left = (width - s.Length) / 2;
                return new string(' ', left) + s + new string(' ', width - s.Length - left);
            }
            case "striptags": return System.Text.RegularExpressions.Regex.Replace(System.Text.RegularExpressions.Regex.Replace(Py.Str(v), "<[^>]*>", ""), @"\s+", " ").Trim();
            case "truncate":
            {
                var s = Py.Str(v);
                long length = (long)Py.ToDouble(Arg(a, k, 0, "length", 255L));
                if (length < 3) throw new TemplateException("expected length >= 3");
                return s.Length <= length + 5 ? s : s[..(int)(length - 3)] + "...";
            }
            case "batch":
            {
                long size = (long)Py.ToDouble(Arg(a, k, 0, "linecount"));
                if (size <= 0) throw new TemplateException("batch needs a positive line count");
                size = Math.Min(size, TemplateLimits.MaxListLength);
                return AsList(v).Chunk((int)size).Select(c => (object?)c.ToList()).ToList();
            }
            default: throw new TemplateException($"No filter named '{name}'.");
        }
    }

    private static object? SortKey(object? v, bool caseSensitive) => !caseSensitive && v is string s ? s.ToLowerInvariant() : v;
}

/// <summary>jinja2's built-in tests.</summary>
internal static class Tests
{
    public static readonly HashSet<string> Names =
    [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "escaped", "even", "false", "filter",
        "float", "ge", ">=", "gt", ">", "greaterthan", "in", "integer", "iterable", "le", "<=", "lower", "lt", "<",
        "lessthan", "mapping", "ne", "!=", "none", "number", "odd", "sameas", "sequence", "string", "test", "true",
        "undefined", "upper",
    ];

    public static bool Apply(string name, object? v, List<object?> a)
    {
        v = Py.Plain(v);
        object? A0() => a.Count > 0 ? a[0] : throw new TemplateException($"test '{name}' needs an argument");
        return name switch
        {
            "defined" => v is not Undefined,
            "undefined" => v is Undefined,
            "none" => v is null,
            "boolean" => v is bool,
            "true" => v is true,
            "false" => v is false,
            "string" => v is string,
            "mapping" => Py.IsMapping(v),
            "number" => v is long or double or bool,
            "integer" => v is long,
            "float" => v is double,
            "iterable" => v is string or List<object?> or OrderedDictionary<string, object?> or GeneratorValue,
            "sequence" => v is string or List<object?> or OrderedDictionary<string, object?>,
            "callable" => v is CallableValue,
            "lower" => v is string s && s == s.ToLowerInvariant(),
            "upper" => v is string s2 && s2 == s2.ToUpperInvariant(),
            "odd" => (long)Py.ToDouble(v) % 2 != 0,
            "even" => (long)Py.ToDouble(v) % 2 == 0,
            "divisibleby" => (long)Py.ToDouble(v) % (long)Py.ToDouble(A0()) == 0,
            "eq" or "equalto" or "==" => Py.Equal(v, A0()),
            "ne" or "!=" => !Py.Equal(v, A0()),
            "gt" or ">" or "greaterthan" => Py.Compare(v, A0()) > 0,
            "ge" or ">=" => Py.Compare(v, A0()) >= 0,
            "lt" or "<" or "lessthan" => Py.Compare(v, A0()) < 0,
            "le" or "<=" => Py.Compare(v, A0()) <= 0,
            "in" => Runtime.Contains(A0(), v),
            "sameas" => ReferenceEquals(v, A0()) || (v is null && A0() is null) || (v is bool b && A0() is bool c && b == c),
            "escaped" => false,
            "filter" => v is string f && Filters.Names.Contains(f),
            "test" => v is string t && Names.Contains(t),
            _ => throw new TemplateException($"No test named '{name}'."),
        };
    }
}
