using System.Runtime.CompilerServices;

namespace LlmTools.Templates;

/// <summary>
/// The resource limits of the template sandbox. A chat template comes with a model file from the internet, so it is
/// untrusted code: jinja2's ImmutableSandboxedEnvironment keeps it away from Python's object model and from mutating
/// its inputs, and these limits keep it from taking the process down (stack overflow cannot be caught in .NET) or
/// running forever. Real templates stay far below every one of them (see HostileTemplateTests).
/// </summary>
public static class TemplateLimits
{
    /// <summary>
    /// Nesting of blocks and expressions at parse time, and of blocks, expressions and macro/caller/loop calls at render
    /// time, counted together. Real templates nest at most a few dozen levels; 400 levels need under 1 MiB of stack, so
    /// the error comes well before a default thread's stack runs out (EnsureSufficientExecutionStack backs it up).
    /// </summary>
    public const int MaxNesting = 400;

    /// <summary>
    /// Nesting of blocks, and of expressions in one tag, when a template is read. The recursive-descent parser spends
    /// about ten stack frames per level of expression, so its limit is lower; real templates nest under 15 levels.
    /// </summary>
    public const int MaxParseNesting = 100;

    /// <summary>Nesting of values (lists in dicts in lists...) that repr, tojson, comparisons and conversions walk.</summary>
    public const int MaxValueDepth = 200;

    /// <summary>jinja2's sandbox MAX_RANGE: range() refuses to make more items than this.</summary>
    public const int MaxRange = 100_000;

    /// <summary>The longest string a template may build (chars), and the longest output: 16 Mi chars, about 4 Mi tokens.</summary>
    public const int MaxStringLength = 16 * 1024 * 1024;

    /// <summary>The longest list a template may build or iterate.</summary>
    public const int MaxListLength = 1_000_000;

    /// <summary>
    /// Work units of one render: one per block, expression and loop iteration, plus one per 16 chars or 16 items of
    /// every string or list built and one per 2 items a lookup scans. This also bounds what a template can allocate
    /// (160 Mi chars in all). The heaviest real template takes about 650 per message (96,000 for 151 messages), so
    /// 10 million allows conversations of over ten thousand messages, and is a second or two of work: a hostile
    /// template ends quickly with an error instead of running for hours. (A step count, not a clock: the same
    /// template fails or renders the same way on every machine.)
    /// </summary>
    public const long MaxSteps = 10_000_000;
}

/// <summary>Thrown when a template breaks a limit of the sandbox (or refuses an unsafe access).</summary>
internal static class Sandbox
{
    public static TemplateException TooDeep() =>
        new($"the template nests too deeply (more than {TemplateLimits.MaxNesting} levels of blocks, expressions and calls)");

    /// <summary>Stops a walk over values that nest too deeply (or contain themselves).</summary>
    public static void EnterValue(int depth)
    {
        if (depth > TemplateLimits.MaxValueDepth)
            throw new TemplateException($"a value nests too deeply (more than {TemplateLimits.MaxValueDepth} levels) or contains itself");
        RuntimeHelpers.EnsureSufficientExecutionStack();
    }

    /// <summary>Refuses a string beyond the limit, and charges the work of building it.</summary>
    public static void CheckString(long length)
    {
        CheckLength(length);
        RenderContext.Current?.Charge(length / 16);
    }

    /// <summary>Refuses a string beyond the limit (a builder's length as it grows; charge the result once).</summary>
    public static void CheckLength(long length)
    {
        if (length > TemplateLimits.MaxStringLength)
            throw new TemplateException($"the template builds a string of {length} chars, more than the sandbox allows ({TemplateLimits.MaxStringLength})");
    }

    public static void CheckList(long count)
    {
        if (count > TemplateLimits.MaxListLength)
            throw new TemplateException($"the template builds a list of {count} items, more than the sandbox allows ({TemplateLimits.MaxListLength})");
        RenderContext.Current?.Charge(count / 16);
    }

    /// <summary>Materializes a sequence, refusing one longer than the list limit before it fills memory.</summary>
    public static List<object?> ToList(IEnumerable<object?> items)
    {
        if (items is List<object?> l) return l;
        var result = items is ICollection<object?> c ? new List<object?>(Math.Min(c.Count, TemplateLimits.MaxListLength + 1)) : [];
        foreach (var x in items)
        {
            if (result.Count >= TemplateLimits.MaxListLength) CheckList(result.Count + 1L);
            result.Add(x);
        }
        CheckList(result.Count);
        return result;
    }

    /// <summary>A width or count argument as an int, refusing values beyond the string limit.</summary>
    public static int Size(object? v, string what)
    {
        double d = Py.ToDouble(v);
        if (d > TemplateLimits.MaxStringLength)
            throw new TemplateException($"{what} {Py.Str(v)} is more than the sandbox allows ({TemplateLimits.MaxStringLength})");
        return d < int.MinValue ? int.MinValue : (int)d;
    }

    public static TemplateException Unsafe(object? target, string name) =>
        new($"access to attribute '{name}' of '{Py.TypeName(target)}' object is unsafe.");
}
