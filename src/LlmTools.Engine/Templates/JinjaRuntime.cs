using System.Globalization;
using System.Text;

namespace LlmTools.Templates;

/// <summary>Attribute and item access, operators and the Python methods templates call on strings, dicts and lists.</summary>
internal static class Runtime
{
    private static readonly HashSet<string> MutatingListMethods = ["append", "pop", "clear", "extend", "insert", "remove", "sort", "reverse"];
    private static readonly HashSet<string> MutatingDictMethods = ["pop", "popitem", "clear", "update", "setdefault"];

    public static object? GetAttribute(object? target, string name)
    {
        // jinja2's sandbox: no attribute starting with '_' (__class__, __globals__, __init__...) is reachable
        if (name.StartsWith('_') && Py.Plain(target) is not (Undefined or Namespace or OrderedDictionary<string, object?>))
            return Undefined.Unsafe(target, name);
        switch (Py.Plain(target))
        {
            case Undefined u: throw u.Error();
            case LoopInfo loop: return loop.Get(name);
            case Namespace ns: return ns.Values.TryGetValue(name, out var nv) ? nv : new Undefined(name);
            case OrderedDictionary<string, object?> d:
                if (DictMethod(d, name) is { } dm) return dm;
                if (d.TryGetValue(Py.DictKey(name), out var v)) return v;
                return name.StartsWith('_') ? Undefined.Unsafe(target, name) : new Undefined(name);
            case string s:
                ScanChars(s.Length); // every string method reads the string
                return (object?)StringMethod(s, name) ?? new Undefined(name);
            case List<object?> l: return (object?)ListMethod(l, name) ?? new Undefined(name);
            default: return new Undefined(name);
        }
    }

    public static object? GetItem(object? target, object? key)
    {
        target = Py.Plain(target);
        key = Py.Plain(key);
        switch (target)
        {
            case Undefined u: throw u.Error();
            case OrderedDictionary<string, object?> d when key is not string && Py.TryDictKey(key, out var stored):
                return d.TryGetValue(stored, out var iv) ? iv : new Undefined(Py.Str(key));
            case OrderedDictionary<string, object?> d when key is string k:
                return d.TryGetValue(Py.DictKey(k), out var v) ? v : k.StartsWith('_') ? Undefined.Unsafe(target, k) : new Undefined(k);
            case Namespace ns when key is string k:
                return ns.Values.TryGetValue(k, out var nv) ? nv : new Undefined(k);
            case List<object?> l when key is long or bool:
            {
                long i = (long)Py.ToDouble(key);
                if (i < 0) i += l.Count;
                return i >= 0 && i < l.Count ? l[(int)i] : new Undefined($"list index {key}");
            }
            case string s when key is long or bool:
            {
                long i = (long)Py.ToDouble(key);
                if (i < 0) i += s.Length;
                return i >= 0 && i < s.Length ? s[(int)i].ToString() : new Undefined($"string index {key}");
            }
            default:
                return key is string name ? GetAttribute(target, name) : new Undefined(Py.Str(key));
        }
    }

    public static object? Slice(object? target, object? start, object? stop, object? step)
    {
        target = Py.Plain(target);
        long? S(object? v) => v is null or Undefined ? null : (long)Py.ToDouble(v);
        long n = target switch
        {
            List<object?> l => l.Count,
            string s => s.Length,
            Undefined u => throw u.Error(),
            _ => throw new TemplateException($"'{Py.TypeName(target)}' object is not subscriptable"),
        };
        long st = S(step) ?? 1;
        if (st == 0) throw new TemplateException("slice step cannot be zero");
        long a, b;
        if (st > 0)
        {
            a = Clamp(S(start) ?? 0, n, 0, n);
            b = Clamp(S(stop) ?? n, n, 0, n);
        }
        else
        {
            a = Clamp(S(start) ?? n - 1, n, -1, n - 1);
            b = S(stop) is { } e ? Clamp(e, n, -1, n - 1) : -1;
        }
        if (target is string str)
        {
            var sb = new StringBuilder();
            for (long i = a; st > 0 ? i < b : i > b; i += st) sb.Append(str[(int)i]);
            return sb.ToString();
        }
        var items = (List<object?>)target!;
        var result = new List<object?>();
        for (long i = a; st > 0 ? i < b : i > b; i += st) result.Add(items[(int)i]);
        Sandbox.CheckList(result.Count);
        return target is PyTuple ? new PyTuple(result) : result;

        static long Clamp(long v, long n, long lo, long hi)
        {
            if (v < 0) v += n;
            return Math.Min(Math.Max(v, lo), hi);
        }
    }

    public static object? Binary(string op, object? a, object? b)
    {
        if (op == "+" && (a is MarkupValue || b is MarkupValue) && a is string or MarkupValue && b is string or MarkupValue)
            return new MarkupValue(MarkupText(a) + MarkupText(b));
        a = Py.Plain(a);
        b = Py.Plain(b);
        if (a is Undefined ua && op != "~") throw ua.Error();
        if (b is Undefined ub && op != "~") throw ub.Error();
        switch (op)
        {
            case "~":
            {
                string x = Py.Str(a), y = Py.Str(b);
                Sandbox.CheckString((long)x.Length + y.Length);
                return x + y;
            }
            case "+":
                if (a is string sa && b is string sb)
                {
                    Sandbox.CheckString((long)sa.Length + sb.Length);
                    return sa + sb;
                }
                if (a is List<object?> la && b is List<object?> lb)
                {
                    Sandbox.CheckList((long)la.Count + lb.Count);
                    return la.Concat(lb).ToList();
                }
                return Arithmetic(op, a, b);
            case "*":
                // Python repeats a sequence by an int on either side; the sandbox caps the result's size first
                if (a is long or bool && b is string or List<object?>) (a, b) = (b, a);
                if (a is string rs && b is long or bool)
                {
                    long n = Math.Max(0, (long)Py.ToDouble(b));
                    Sandbox.CheckString(rs.Length == 0 ? 0 : n > TemplateLimits.MaxStringLength ? n : rs.Length * n);
                    return rs.Length == 0 ? "" : new StringBuilder(rs.Length * (int)n).Insert(0, rs, (int)n).ToString();
                }
                if (a is List<object?> rl && b is long or bool)
                {
                    long n = Math.Max(0, (long)Py.ToDouble(b));
                    Sandbox.CheckList(rl.Count == 0 ? 0 : n > TemplateLimits.MaxListLength ? n : rl.Count * n);
                    var r = new List<object?>();
                    for (long i = 0; i < n; i++) r.AddRange(rl);
                    return r;
                }
                return Arithmetic(op, a, b);
            case "%" when a is string fmt: return PercentFormat(fmt, b);
            default: return Arithmetic(op, a, b);
        }
    }

    private static string MarkupText(object? v) => v is MarkupValue m ? m.Text : MarkupValue.Escape((string)v!);

    private static object Arithmetic(string op, object? a, object? b)
    {
        if (!Py.IsNumber(a) || !Py.IsNumber(b))
            throw new TemplateException($"unsupported operand type(s) for {op}: '{Py.TypeName(a)}' and '{Py.TypeName(b)}'");
        bool integral = a is long or bool && b is long or bool;
        if (integral)
        {
            long x = (long)Py.ToDouble(a), y = (long)Py.ToDouble(b);
            // Python's ints have no limit; ours are 64-bit, and an overflow is an error rather than a wrong number
            try
            {
                switch (op)
                {
                    case "+": return checked(x + y);
                    case "-": return checked(x - y);
                    case "*": return checked(x * y);
                    case "//": if (y == 0) throw new TemplateException("integer division or modulo by zero"); return (long)Math.Floor((double)x / y);
                    case "%": if (y == 0) throw new TemplateException("integer division or modulo by zero"); return y == -1 ? 0L : ((x % y) + y) % y;
                    case "**": return y >= 0 ? (object)IntPower(x, y) : Math.Pow(x, y);
                }
            }
            catch (OverflowException)
            {
                throw new TemplateException($"integer overflow: {x} {op} {y} does not fit in 64 bits");
            }
        }
        double p = Py.ToDouble(a), q = Py.ToDouble(b);
        return op switch
        {
            "+" => p + q,
            "-" => p - q,
            "*" => p * q,
            "/" => q == 0 ? throw new TemplateException("division by zero") : p / q,
            "//" => q == 0 ? throw new TemplateException("float floor division by zero") : Math.Floor(p / q),
            "%" => q == 0 ? throw new TemplateException("float modulo") : p - q * Math.Floor(p / q),
            "**" => Math.Pow(p, q),
            _ => throw new TemplateException($"unknown operator {op}"),
        };
    }

    private static long IntPower(long x, long y)
    {
        long result = 1;
        while (y > 0)
        {
            if ((y & 1) != 0) result = checked(result * x);
            y >>= 1;
            if (y > 0) x = checked(x * x);
        }
        return result;
    }

    private static string PercentFormat(string format, object? args)
    {
        var values = args is List<object?> l ? l : [args];
        int i = 0;
        var sb = new StringBuilder();
        for (int k = 0; k < format.Length; k++)
        {
            if (format[k] != '%' || k + 1 >= format.Length) { sb.Append(format[k]); continue; }
            char c = format[++k];
            if (c == '%') { sb.Append('%'); continue; }
            var v = i < values.Count ? values[i++] : throw new TemplateException("not enough arguments for format string");
            sb.Append(c switch { 'd' or 'i' => ((long)Py.ToDouble(v)).ToString(CultureInfo.InvariantCulture), 'r' => Py.Repr(v), _ => Py.Str(v) });
            Sandbox.CheckLength(sb.Length);
        }
        return sb.ToString();
    }

    public static bool Compare(string op, object? a, object? b) => op switch
    {
        "==" => Py.Equal(a, b),
        "!=" => !Py.Equal(a, b),
        "<" => Py.Compare(a, b) < 0,
        ">" => Py.Compare(a, b) > 0,
        "<=" => Py.Compare(a, b) <= 0,
        ">=" => Py.Compare(a, b) >= 0,
        "in" => Contains(b, a),
        "not in" => !Contains(b, a),
        _ => throw new TemplateException($"unknown comparison {op}"),
    };

    /// <summary>Charges the work of a scan over n items (a lookup in a loop over a big list is quadratic): one step per 2 items.</summary>
    public static void Scan(long n) => RenderContext.Current?.Charge(n / 2);

    /// <summary>Charges the work of reading n chars: one step per 16.</summary>
    public static void ScanChars(long n) => RenderContext.Current?.Charge(n / 16);

    public static bool Contains(object? container, object? item)
    {
        if (Py.Plain(container) is string cs) ScanChars(cs.Length);
        else if (Py.Plain(container) is List<object?> cl) Scan(cl.Count);
        return ContainsCore(container, item);
    }

    private static bool ContainsCore(object? container, object? item) => Py.Plain(container) switch
    {
        string s => Py.Plain(item) is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw new TemplateException($"'in <string>' requires string as left operand, not {Py.TypeName(item)}"),
        List<object?> l => l.Any(x => Py.Equal(x, item)),
        OrderedDictionary<string, object?> d => Py.TryDictKey(item, out var k) && d.ContainsKey(k),
        Namespace ns => item is string k && ns.Values.ContainsKey(k),
        Undefined => false,
        _ => throw new TemplateException($"argument of type '{Py.TypeName(container)}' is not iterable"),
    };

    private static CallableValue Method(string name, Callable call) => new(name, call);

    private static CallableValue Unsafe(string type, string name) =>
        new(name, (_, _) => throw new TemplateException($"access to attribute '{name}' of '{type}' object is unsafe."));

    private static object? Arg(List<object?> args, Dictionary<string, object?> kwargs, int i, string name, object? dflt = null) =>
        i < args.Count ? args[i] : kwargs.TryGetValue(name, out var v) ? v : dflt;

    private static CallableValue? DictMethod(OrderedDictionary<string, object?> d, string name) => name switch
    {
        "get" => Method(name, (a, k) =>
        {
            var key = Arg(a, k, 0, "key");
            return Py.TryDictKey(key, out var s) && d.TryGetValue(s, out var v) ? v : Arg(a, k, 1, "default");
        }),
        "items" => Method(name, (_, _) => d.Select(kv => (object?)new PyTuple { Py.KeyValue(kv.Key), kv.Value }).ToList()),
        "keys" => Method(name, (_, _) => d.Keys.Select(Py.KeyValue).ToList()),
        "values" => Method(name, (_, _) => d.Values.ToList()),
        "copy" => Method(name, (_, _) => new OrderedDictionary<string, object?>(d, StringComparer.Ordinal)),
        _ when MutatingDictMethods.Contains(name) => Unsafe("dict", name),
        _ => null,
    };

    private static CallableValue? ListMethod(List<object?> l, string name) => name switch
    {
        "index" => Method(name, (a, _) =>
        {
            Scan(l.Count);
            int i = l.FindIndex(x => Py.Equal(x, a.FirstOrDefault()));
            return i >= 0 ? (long)i : throw new TemplateException($"{Py.Repr(a.FirstOrDefault())} is not in list");
        }),
        "count" => Method(name, (a, _) => { Scan(l.Count); return (long)l.Count(x => Py.Equal(x, a.FirstOrDefault())); }),
        "copy" => Method(name, (_, _) => l.ToList()),
        _ when MutatingListMethods.Contains(name) => Unsafe("list", name),
        _ => null,
    };

    private static string Chars(object? v) => v is string s ? s : " \t\n\r\v\f";

    private static CallableValue? StringMethod(string s, string name) => name switch
    {
        "strip" => Method(name, (a, k) => Arg(a, k, 0, "chars") is string c ? s.Trim(c.ToCharArray()) : s.Trim(Chars(null).ToCharArray())),
        "lstrip" => Method(name, (a, k) => Arg(a, k, 0, "chars") is string c ? s.TrimStart(c.ToCharArray()) : s.TrimStart(Chars(null).ToCharArray())),
        "rstrip" => Method(name, (a, k) => Arg(a, k, 0, "chars") is string c ? s.TrimEnd(c.ToCharArray()) : s.TrimEnd(Chars(null).ToCharArray())),
        "upper" => Method(name, (_, _) => s.ToUpperInvariant()),
        "lower" => Method(name, (_, _) => s.ToLowerInvariant()),
        "title" => Method(name, (_, _) => Title(s)),
        "capitalize" => Method(name, (_, _) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant()),
        "startswith" => Method(name, (a, k) => Prefixes(Arg(a, k, 0, "prefix")).Any(p => s.StartsWith(p, StringComparison.Ordinal))),
        "endswith" => Method(name, (a, k) => Prefixes(Arg(a, k, 0, "suffix")).Any(p => s.EndsWith(p, StringComparison.Ordinal))),
        "split" => Method(name, (a, k) => Split(s, Arg(a, k, 0, "sep"), Arg(a, k, 1, "maxsplit", -1L), fromRight: false)),
        "rsplit" => Method(name, (a, k) => Split(s, Arg(a, k, 0, "sep"), Arg(a, k, 1, "maxsplit", -1L), fromRight: true)),
        "splitlines" => Method(name, (_, _) => s.Split('\n').Select(x => (object?)x.TrimEnd('\r')).Take(s.EndsWith('\n') ? s.Count(c => c == '\n') : int.MaxValue).ToList()),
        "replace" => Method(name, (a, k) =>
        {
            var old = Py.Str(Arg(a, k, 0, "old"));
            var repl = Py.Str(Arg(a, k, 1, "new"));
            long count = Arg(a, k, 2, "count", -1L) is long c ? c : -1;
            return Replace(s, old, repl, count);
        }),
        "find" => Method(name, (a, k) => (long)s.IndexOf(Py.Str(Arg(a, k, 0, "sub")), StringComparison.Ordinal)),
        "rfind" => Method(name, (a, k) => (long)s.LastIndexOf(Py.Str(Arg(a, k, 0, "sub")), StringComparison.Ordinal)),
        "count" => Method(name, (a, k) => (long)CountOf(s, Py.Str(Arg(a, k, 0, "sub")))),
        "join" => Method(name, (a, _) => Join(s, Py.Iterate(a.FirstOrDefault()).Select(Py.Str))),
        "isdigit" => Method(name, (_, _) => s.Length > 0 && s.All(char.IsDigit)),
        "isalpha" => Method(name, (_, _) => s.Length > 0 && s.All(char.IsLetter)),
        "isspace" => Method(name, (_, _) => s.Length > 0 && s.All(char.IsWhiteSpace)),
        "isupper" => Method(name, (_, _) => s.Any(char.IsLetter) && !s.Any(char.IsLower)),
        "islower" => Method(name, (_, _) => s.Any(char.IsLetter) && !s.Any(char.IsUpper)),
        "format" => Method(name, (a, k) => Format(s, a, k)),
        _ => null,
    };

    private static IEnumerable<string> Prefixes(object? v) => v switch
    {
        string s => [s],
        List<object?> l => l.Select(Py.Str),
        _ => throw new TemplateException($"startswith first arg must be str or a tuple of str, not {Py.TypeName(v)}"),
    };

    /// <summary>string.Join within the sandbox's string limit.</summary>
    public static string Join(string separator, IEnumerable<string> items)
    {
        var list = new List<string>();
        long total = 0;
        foreach (var x in items)
        {
            total += x.Length + (list.Count > 0 ? separator.Length : 0);
            Sandbox.CheckLength(total);
            list.Add(x);
        }
        Sandbox.CheckString(total);
        return string.Join(separator, list);
    }

    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            sb.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsLetter(c);
        }
        return sb.ToString();
    }

    private static int CountOf(string s, string sub)
    {
        if (sub.Length == 0) return s.Length + 1;
        int n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    public static string Replace(string s, string old, string repl, long count)
    {
        if (repl.Length > old.Length)
        {
            long n = CountOf(s, old);
            if (count >= 0) n = Math.Min(n, count);
            Sandbox.CheckString(s.Length + n * (repl.Length - old.Length));
        }
        if (count < 0) return old.Length == 0 ? string.Join(repl, s.Select(c => c.ToString()).Prepend("").Append("")) : s.Replace(old, repl, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int pos = 0;
        for (long n = 0; n < count; n++)
        {
            int i = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (i < 0 || old.Length == 0) break;
            sb.Append(s, pos, i - pos).Append(repl);
            pos = i + old.Length;
        }
        return sb.Append(s, pos, s.Length - pos).ToString();
    }

    private static List<object?> Split(string s, object? sep, object? maxsplit, bool fromRight)
    {
        long max = maxsplit is long m ? m : -1;
        if (sep is null or Undefined)
        {
            var words = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (max < 0 || words.Length <= max + 1) return words.Cast<object?>().ToList();
            // Python keeps the rest of the string (leading whitespace stripped) as the last piece
            var result = new List<object?>();
            int pos = 0;
            for (int n = 0; n < max; n++)
            {
                while (pos < s.Length && char.IsWhiteSpace(s[pos])) pos++;
                int end = pos;
                while (end < s.Length && !char.IsWhiteSpace(s[end])) end++;
                result.Add(s[pos..end]);
                pos = end;
            }
            while (pos < s.Length && char.IsWhiteSpace(s[pos])) pos++;
            result.Add(s[pos..]);
            return result;
        }
        var separator = Py.Str(sep);
        if (separator.Length == 0) throw new TemplateException("empty separator");
        var parts = s.Split(separator);
        if (max < 0 || parts.Length <= max + 1) return parts.Cast<object?>().ToList();
        if (!fromRight)
        {
            var head = parts.Take((int)max).Cast<object?>().ToList();
            head.Add(string.Join(separator, parts.Skip((int)max)));
            return head;
        }
        var tail = parts.Skip(parts.Length - (int)max).Cast<object?>().ToList();
        tail.Insert(0, string.Join(separator, parts.Take(parts.Length - (int)max)));
        return tail;
    }

    /// <summary>str.format: fields by position, number or name, with .attribute and [key] lookups through the sandbox; format specs are ignored.</summary>
    private static string Format(string s, List<object?> args, Dictionary<string, object?> kwargs)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '{' && i + 1 < s.Length && s[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (s[i] == '}' && i + 1 < s.Length && s[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (s[i] == '}') throw new TemplateException("Single '}' encountered in format string");
            if (s[i] != '{') { sb.Append(s[i]); continue; }
            int end = s.IndexOf('}', i);
            if (end < 0) throw new TemplateException("expected '}' before end of string");
            var field = s[(i + 1)..end];
            int cut = field.IndexOfAny([':', '!']);
            if (cut >= 0) field = field[..cut];
            int path = field.IndexOfAny(['.', '[']);
            var head = path < 0 ? field : field[..path];
            object? v;
            if (head.Length == 0)
            {
                if (auto >= args.Count) throw new TemplateException("tuple index out of range");
                v = args[auto++];
            }
            else if (long.TryParse(head, NumberStyles.None, CultureInfo.InvariantCulture, out var idx))
                v = idx < args.Count ? args[(int)idx] : throw new TemplateException("tuple index out of range");
            else v = kwargs.TryGetValue(head, out var kv) ? kv : throw new TemplateException($"'{head}'");
            if (path >= 0) v = FormatLookup(v, field[path..]);
            sb.Append(Py.Str(v));
            Sandbox.CheckLength(sb.Length);
            i = end;
        }
        return sb.ToString();
    }

    // "{0.name}" and "{0[key]}": attributes go through the sandbox, as jinja2's SandboxedFormatter does
    private static object? FormatLookup(object? v, string path)
    {
        int i = 0;
        while (i < path.Length)
        {
            if (path[i] == '.')
            {
                int j = path.IndexOfAny(['.', '['], i + 1);
                var name = j < 0 ? path[(i + 1)..] : path[(i + 1)..j];
                v = GetAttribute(v, name); // '_' names give the sandbox's unsafe undefined, as in jinja2
                i = j < 0 ? path.Length : j;
            }
            else
            {
                int j = path.IndexOf(']', i);
                if (j < 0) throw new TemplateException("Missing ']' in format string");
                var key = path[(i + 1)..j];
                v = GetItem(v, long.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : key);
                i = j + 1;
            }
        }
        return v;
    }
}
