using System.Globalization;
using System.Text;

namespace LlmTools.Templates;

/// <summary>
/// A model's chat template (Jinja), rendered as Hugging Face transformers renders it with jinja2: trim_blocks,
/// lstrip_blocks, loop controls, {% generation %}, raise_exception, strftime_now, tojson without HTML escaping, and
/// tools/documents always defined. Parsed once; rendering is thread-safe.
/// </summary>
public sealed class ChatTemplate
{
    private readonly List<Node> _nodes;

    private ChatTemplate(string source, List<Node> nodes)
    {
        Source = source;
        _nodes = nodes;
    }

    public string Source { get; }

    /// <summary>Parses a template. Throws <see cref="TemplateException"/> for a syntax error or an unknown filter or test.</summary>
    public static ChatTemplate Parse(string source)
    {
        try
        {
            return new(source, JinjaParser.Parse(source));
        }
        catch (TemplateException)
        {
            throw;
        }
        catch (InsufficientExecutionStackException e)
        {
            throw new TemplateException("the template nests too deeply for the stack", e);
        }
        catch (Exception e)
        {
            // a malformed literal (\x escape, an int beyond 64 bits...): still only a template error
            throw new TemplateException($"the template cannot be read: {e.Message}", e);
        }
    }

    /// <summary>
    /// Renders a conversation. Messages are dictionaries (role, content, ...) or anything <see cref="Py.FromClr"/>
    /// converts; <paramref name="variables"/> adds bos_token, eos_token and any other template variable.
    /// The template runs in a sandbox (<see cref="TemplateLimits"/>): every failure, a limit reached or anything
    /// unexpected, is a <see cref="TemplateException"/> with the line; cancellation is an OperationCanceledException.
    /// </summary>
    public string Render(IEnumerable<object?> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? variables = null,
        object? tools = null, object? documents = null, DateTime? now = null, CancellationToken cancellationToken = default)
    {
        var ctx = new RenderContext(new Scope(null), now ?? DateTime.Now, cancellationToken);
        return RenderWith(ctx, messages, addGenerationPrompt, variables, tools, documents);
    }

    /// <summary>Renders and tells how much of the sandbox's limits it used (tests compare real templates with the limits).</summary>
    internal (string Text, long Steps, int Nesting) RenderMeasured(IEnumerable<object?> messages, bool addGenerationPrompt,
        IReadOnlyDictionary<string, object?>? variables, object? tools, DateTime now)
    {
        var ctx = new RenderContext(new Scope(null), now);
        var text = RenderWith(ctx, messages, addGenerationPrompt, variables, tools, null);
        return (text, ctx.Steps, ctx.Deepest);
    }

    private string RenderWith(RenderContext ctx, IEnumerable<object?> messages, bool addGenerationPrompt,
        IReadOnlyDictionary<string, object?>? variables, object? tools, object? documents)
    {
        var root = ctx.Root;
        using var active = ctx.Activate();
        try
        {
            return RenderIn(ctx, root, messages, addGenerationPrompt, variables, tools, documents);
        }
        catch (TemplateException e)
        {
            e.Line ??= ctx.Line;
            throw;
        }
        catch (OperationCanceledException)
        {
            throw;
        }
        catch (BreakSignal)
        {
            throw new TemplateException("'break' or 'continue' outside a loop") { Line = ctx.Line };
        }
        catch (ContinueSignal)
        {
            throw new TemplateException("'break' or 'continue' outside a loop") { Line = ctx.Line };
        }
        catch (InsufficientExecutionStackException e)
        {
            throw new TemplateException(Sandbox.TooDeep().Message, e) { Line = ctx.Line };
        }
        catch (Exception e)
        {
            // LINQ and List.Sort wrap what a comparer throws: the template's own error is the one to report
            for (var inner = e.InnerException; inner is not null; inner = inner.InnerException)
            {
                if (inner is TemplateException te) { te.Line ??= ctx.Line; throw te; }
                if (inner is OperationCanceledException oce) throw oce;
            }
            throw new TemplateException($"the template failed unexpectedly ({e.GetType().Name}: {e.Message})", e) { Line = ctx.Line };
        }
    }

    private string RenderIn(RenderContext ctx, Scope root, IEnumerable<object?> messages, bool addGenerationPrompt,
        IReadOnlyDictionary<string, object?>? variables, object? tools, object? documents)
    {
        var clock = ctx.Now;
        root.Set("raise_exception", new CallableValue("raise_exception", (a, _) => throw new TemplateException(Py.Str(a.FirstOrDefault()))));
        root.Set("strftime_now", new CallableValue("strftime_now", (a, _) => Strftime(clock, Py.Str(a.FirstOrDefault()))));
        root.Set("namespace", new CallableValue("namespace", (a, k) =>
        {
            var ns = new Namespace();
            if (a.FirstOrDefault() is OrderedDictionary<string, object?> d) foreach (var (key, v) in d) ns.Values[key] = v;
            foreach (var (key, v) in k) ns.Values[key] = v;
            return ns;
        }));
        root.Set("range", new CallableValue("range", (a, _) =>
        {
            if (a.Count is 0 or > 3) throw new TemplateException($"range expected 1 to 3 arguments, got {a.Count}");
            long Int(object? v) => Py.Plain(v) is long or bool ? (long)Py.ToDouble(v)
                : throw new TemplateException($"'{Py.TypeName(v)}' object cannot be interpreted as an integer");
            long start = 0, stop, step = 1;
            if (a.Count == 1) stop = Int(a[0]);
            else { start = Int(a[0]); stop = Int(a[1]); if (a.Count > 2) step = Int(a[2]); }
            if (step == 0) throw new TemplateException("range() arg 3 must not be zero");
            // jinja2's sandbox: MAX_RANGE items at most (the length computed without overflow)
            var span = step > 0 ? (Int128)stop - start : (Int128)start - stop;
            var length = span <= 0 ? 0 : (span - 1) / (step > 0 ? step : -(Int128)step) + 1;
            if (length > TemplateLimits.MaxRange)
                throw new TemplateException($"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({TemplateLimits.MaxRange}).");
            var r = new List<object?>((int)length);
            for (long i = 0, v = start; i < (long)length; i++, v += step) r.Add(v);
            RenderContext.Current?.Charge(r.Count / 16);
            return r;
        }));
        root.Set("dict", new CallableValue("dict", (a, k) =>
        {
            var d = a.FirstOrDefault() is OrderedDictionary<string, object?> src
                ? new OrderedDictionary<string, object?>(src, StringComparer.Ordinal)
                : new OrderedDictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (key, v) in k) d[key] = v;
            return d;
        }));
        if (variables is not null)
            foreach (var (k, v) in variables) root.Set(k, Py.FromClr(v));
        messages ??= [];
        root.Set("messages", messages.Select(m => Py.FromClr(m) is OrderedDictionary<string, object?> d ? DropNullContent(d) : Py.FromClr(m)).ToList());
        root.Set("add_generation_prompt", addGenerationPrompt);
        root.Set("tools", Py.FromClr(tools));
        root.Set("documents", Py.FromClr(documents));
        var sb = new StringBuilder();
        Node.RenderAll(_nodes, ctx, root, sb);
        return sb.ToString();
    }

    // transformers leaves out a message's "content": null key.
    private static OrderedDictionary<string, object?> DropNullContent(OrderedDictionary<string, object?> message)
    {
        if (!message.TryGetValue("content", out var c) || c is not null) return message;
        var copy = new OrderedDictionary<string, object?>(message, StringComparer.Ordinal);
        copy.Remove("content");
        return copy;
    }

    /// <summary>Python's strftime for the directives templates use (C locale).</summary>
    internal static string Strftime(DateTime t, string format)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { sb.Append(format[i]); continue; }
            char d = format[++i];
            sb.Append(d switch
            {
                'Y' => t.Year.ToString("0000", c),
                'y' => (t.Year % 100).ToString("00", c),
                'm' => t.Month.ToString("00", c),
                'd' => t.Day.ToString("00", c),
                'e' => t.Day.ToString(c).PadLeft(2),
                'B' => c.DateTimeFormat.GetMonthName(t.Month),
                'b' or 'h' => c.DateTimeFormat.GetAbbreviatedMonthName(t.Month),
                'A' => c.DateTimeFormat.GetDayName(t.DayOfWeek),
                'a' => c.DateTimeFormat.GetAbbreviatedDayName(t.DayOfWeek),
                'H' => t.Hour.ToString("00", c),
                'I' => ((t.Hour + 11) % 12 + 1).ToString("00", c),
                'M' => t.Minute.ToString("00", c),
                'S' => t.Second.ToString("00", c),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'j' => t.DayOfYear.ToString("000", c),
                'w' => ((int)t.DayOfWeek).ToString(c),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", c),
                'Z' => "",
                'z' => "",
                '%' => "%",
                _ => "%" + d,
            });
        }
        return sb.ToString();
    }
}
