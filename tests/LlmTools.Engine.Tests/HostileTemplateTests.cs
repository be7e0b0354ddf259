using LlmTools.Templates;
using Xunit;
using Xunit.Abstractions;

namespace LlmTools.Engine.Tests;

/// <summary>
/// Chat templates come with model files from the internet: each of these hostile templates must end in a template
/// error (or, when parsing, a syntax error), quickly, never a crash of the process, a hang or a raw .NET exception.
/// </summary>
public class HostileTemplateTests(ITestOutputHelper output)
{
    private static string Deep(string open, string inner, string close, int n) =>
        string.Concat(Enumerable.Repeat(open, n)) + inner + string.Concat(Enumerable.Repeat(close, n));

    private static readonly string DeepData =
        "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}";

    // name -> (template, part of the error message)
    private static readonly Dictionary<string, (string Template, string Error)> RenderCases = new()
    {
        ["macro that calls itself"] = ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nests too deeply"),
        ["macros that call each other"] = ("{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}", "nests too deeply"),
        ["call block whose macro calls itself"] = ("{% macro m() %}{% call m() %}x{% endcall %}{% endmacro %}{{ m() }}", "nests too deeply"),
        ["recursive loop without end"] = ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "nests too deeply"),
        ["20,000 additions in a row"] = ("{{ 1" + string.Concat(Enumerable.Repeat(" + 1", 20_000)) + " }}", "nests too deeply"),
        ["20,000 filters in a row"] = ("{{ 'x'" + string.Concat(Enumerable.Repeat(" | string", 20_000)) + " }}", "nests too deeply"),
        ["20,000 attributes in a row"] = ("{{ x" + string.Concat(Enumerable.Repeat(".a", 20_000)) + " }}", "nests too deeply"),
        ["20,000 subscripts in a row"] = ("{{ x" + string.Concat(Enumerable.Repeat("[0]", 20_000)) + " }}", "nests too deeply"),
        ["range of a billion"] = ("{% for i in range(1000000000) %}{% endfor %}", "MAX_RANGE (100000)"),
        ["range with a step beyond the limit"] = ("{{ range(-9223372036854775807, 9223372036854775807, 3) | length }}", "MAX_RANGE"),
        ["nested loops writing 10^10 chars"] = ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "the sandbox allows"),
        ["nested loops writing long strings"] = ("{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}", "writes more than"),
        ["nested loops doing nothing 10^10 times"] = ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "more work than"),
        ["quadratic string building"] = ("{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ ('y' * 10000) %}{% endfor %}", "the sandbox allows"),
        ["string times three billion"] = ("{{ 'a' * 3000000000 }}", "string of"),
        ["three billion times a string"] = ("{{ 3000000000 * 'ab' }}", "string of"),
        ["list times three billion"] = ("{{ [1] * 3000000000 }}", "list of"),
        ["string doubled 64 times"] = ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "string of"),
        ["list doubled 64 times"] = ("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "list of"),
        ["replace that multiplies a string"] = ("{{ ('a' * 10000000).replace('a', 'aaaa') }}", "string of"),
        ["join of a huge repetition"] = ("{{ range(100000) | map('string') | join('x' * 1000) }}", "string of"),
        ["repr of a huge list"] = ("{{ range(100000) | map('string') | map('center', 1000) | list }}", "string of"),
        ["tojson of a huge list"] = ("{{ range(100000) | map('string') | map('center', 1000) | list | tojson }}", "string of"),
        ["format bomb"] = ("{% set s = 'x' * 4000000 %}{{ '{0}{0}{0}{0}{0}'.format(s) }}", "string of"),
        ["percent format bomb"] = ("{% set s = 'x' * 4000000 %}{{ '%s%s%s%s%s' % (s, s, s, s, s) }}", "string of"),
        ["center to three billion"] = ("{{ 'x' | center(3000000000) }}", "more than the sandbox allows"),
        ["indent by three billion"] = ("{{ 'a\nb' | indent(3000000000) }}", "more than the sandbox allows"),
        ["unclosed format field"] = ("{{ '{x'.format() }}", "expected '}' before end of string"),
        ["format of a missing name"] = ("{{ '{x}'.format() }}", "'x'"),
        ["format with a lone brace"] = ("{{ 'a}'.format() }}", "Single '}'"),
        ["object model through __class__"] = ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ["globals through a function"] = ("{{ namespace.__init__.__globals__ }}", "is unsafe"),
        ["loop internals"] = ("{% for i in [1] %}{{ loop.__class__.__name__ }}{% endfor %}", "is unsafe"),
        ["list mutation"] = ("{% set l = [1] %}{{ l.append(2) }}", "unsafe"),
        ["dict mutation"] = ("{% set d = {} %}{{ d.update({'a': 1}) }}", "unsafe"),
        ["a template that includes itself"] = ("{% include 'chat_template.jinja' %}", "no loader"),
        ["extends"] = ("{% extends 'base.jinja' %}", "no loader"),
        ["value nested 5000 deep printed"] = (DeepData + "{{ ns.x }}", "nests too deeply"),
        ["value nested 5000 deep as JSON"] = (DeepData + "{{ ns.x | tojson }}", "nests too deeply"),
        ["value nested 5000 deep compared"] = (DeepData + "{{ ns.x == [ns.x] }}", "nests too deeply"),
        ["value nested 5000 deep sorted"] = (DeepData + "{{ [ns.x, [ns.x]] | sort }}", "nests too deeply"),
        ["integer overflow"] = ("{{ 9223372036854775807 + 1 }}", "integer overflow"),
        ["power overflow"] = ("{{ 2 ** 64 }}", "integer overflow"),
        ["unhashable dict key"] = ("{{ {[1]: 2} }}", "unhashable type: 'list'"),
        ["sorting mixed types"] = ("{{ [1, 'a'] | sort }}", "not supported between"),
        ["batch of zero"] = ("{{ [1, 2] | batch(0) | list }}", "positive"),
        ["truncate to one char"] = ("{{ ('a' * 300) | truncate(1) }}", "length >= 3"),
        ["break outside a loop"] = ("{% break %}", "outside a loop"),
        ["calling a loop that is not recursive"] = ("{% for x in [1] %}{{ loop([1]) }}{% endfor %}", "recursive"),
        ["range of a float"] = ("{{ range(1.5) }}", "cannot be interpreted as an integer"),
        ["iterating over a huge string"] = ("{% for c in 'x' * 2000000 %}{% endfor %}", "list of"),
        ["membership tests over a big list in a big loop"] = ("{% set big = range(100000) | list %}{% for i in range(100000) %}{% if -1 in big %}{% endif %}{% endfor %}", "more work than"),
        ["unique of a big list"] = ("{{ range(100000) | unique | list | length }}", "more work than"),
        ["string methods over a big string in a big loop"] = ("{% set s = 'x' * 1000000 %}{% for i in range(100000) %}{{ s.find('y') }}{% endfor %}", "more work than"),
        ["raise_exception"] = ("{{ raise_exception('no') }}", "no"),
    };

    public static TheoryData<string> RenderCaseNames() => new(RenderCases.Keys);

    private static ChatTemplate ParseOk(string template) => ChatTemplate.Parse(template);

    [Theory]
    [MemberData(nameof(RenderCaseNames))]
    public void EndsInATemplateError(string name)
    {
        var (template, error) = RenderCases[name];
        var parsed = ParseOk(template);
        var e = Assert.Throws<TemplateException>(() => parsed.Render([], false, new Dictionary<string, object?> { ["x"] = new List<object?>() }));
        output.WriteLine($"line {e.Line}: {e.Message}");
        Assert.Contains(error, e.Message);
        Assert.Equal(1, e.Line);
    }

    // name -> (template, part of the error message): refused when read, before anything runs
    private static readonly Dictionary<string, (string Template, string Error)> ParseCases = new()
    {
        ["parentheses nested 20,000 deep"] = ("{{ " + Deep("(", "1", ")", 20_000) + " }}", "nests more than"),
        ["lists nested 20,000 deep"] = ("{{ " + Deep("[", "1", "]", 20_000) + " }}", "nests more than"),
        ["dicts nested 20,000 deep"] = ("{{ " + Deep("{'a': ", "1", "}", 20_000) + " }}", "nests more than"),
        ["20,000 unary minus"] = ("{{ " + new string('-', 20_000) + "1 }}", "nests more than"),
        ["20,000 nots"] = ("{{ " + string.Concat(Enumerable.Repeat("not ", 20_000)) + "1 }}", "nests more than"),
        ["call arguments nested 20,000 deep"] = ("{{ " + Deep("f(", "1", ")", 20_000) + " }}", "nests more than"),
        ["ifs nested 20,000 deep"] = (Deep("{% if true %}", "x", "{% endif %}", 20_000), "nest more than"),
        ["for loops nested 20,000 deep"] = (Deep("{% for i in [1] %}", "x", "{% endfor %}", 20_000), "nest more than"),
        ["macros nested 20,000 deep"] = (Deep("{% macro m() %}", "x", "{% endmacro %}", 20_000), "nest more than"),
        ["an int beyond 64 bits"] = ("{{ 99999999999999999999 }}", "cannot be read"),
        ["a bad \\x escape"] = ("{{ '\\xZZ' }}", "cannot be read"),
        ["a short \\u escape"] = ("{{ '\\u12' }}", "cannot be read"),
        ["a code point beyond Unicode"] = ("{{ '\\UFFFFFFFF' }}", "cannot be read"),
        ["a string ending in a backslash"] = ("{{ 'abc\\", "cannot be read"),
    };

    public static TheoryData<string> ParseCaseNames() => new(ParseCases.Keys);

    [Theory]
    [MemberData(nameof(ParseCaseNames))]
    public void IsRefusedWhenRead(string name)
    {
        var (template, error) = ParseCases[name];
        var e = Assert.Throws<TemplateException>(() => ChatTemplate.Parse(template));
        output.WriteLine(e.Message);
        Assert.Contains(error, e.Message);
    }

    /// <summary>
    /// The depth limits, not the stack, stop deep templates: on a thread with a 1 MiB stack (smaller than the
    /// default of any thread PowerShell or .NET uses) every deep case ends in the limit's own error; on a 256 KiB
    /// stack, EnsureSufficientExecutionStack is the backstop and the result is still a template error.
    /// </summary>
    [Theory]
    [InlineData(1024 * 1024, true)]
    [InlineData(256 * 1024, false)]
    public void DeepTemplatesFailCleanlyOnSmallStacks(int stackSize, bool limitFirst)
    {
        var deepRender = RenderCases.Where(c => c.Value.Error == "nests too deeply").ToList();
        var deepParse = ParseCases.Where(c => c.Value.Error.StartsWith("nest")).ToList();
        Assert.NotEmpty(deepRender);
        Assert.NotEmpty(deepParse);
        var failures = new List<string>();
        var thread = new Thread(() =>
        {
            foreach (var (name, (template, error)) in deepRender.Concat(deepParse))
            {
                try
                {
                    ChatTemplate.Parse(template).Render([], false, new Dictionary<string, object?> { ["x"] = new List<object?>() });
                    failures.Add($"{name}: rendered");
                }
                catch (TemplateException e)
                {
                    if (limitFirst && !e.Message.Contains(error)) failures.Add($"{name}: {e.Message}");
                }
                catch (Exception e)
                {
                    failures.Add($"{name}: {e.GetType().Name}: {e.Message}");
                }
            }
        }, stackSize);
        thread.Start();
        thread.Join();
        Assert.Empty(failures);
    }

    [Fact]
    public void CancellationStopsALongLoop()
    {
        var template = ChatTemplate.Parse("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => template.Render([], false, cancellationToken: cts.Token));
    }

    [Fact]
    public void ErrorsNameTheLineTheyHappenOn()
    {
        var template = ChatTemplate.Parse("a\n{% for m in messages %}\n{{ m.content }}\n{% endfor %}\n{{ 'x'.__class__.__mro__ }}\n");
        var e = Assert.Throws<TemplateException>(() => template.Render([new Dictionary<string, object?> { ["role"] = "user", ["content"] = "hi" }], false));
        Assert.Equal(5, e.Line);
        var macro = ChatTemplate.Parse("{% macro f(x) %}\n\n{{ x.__init__.__globals__ }}{% endmacro %}\n{{ f('a') }}");
        Assert.Equal(3, Assert.Throws<TemplateException>(() => macro.Render([], false)).Line);

        // what users see: the error id and the line
        var format = ChatFormat.FromTemplate("line one\n{{ 'a' * 3000000000 }}", "", "");
        var le = Assert.Throws<LlmException>(() => format.RenderRaw([], false, null));
        Assert.Equal("ChatTemplateError", le.ErrorId);
        Assert.Contains("line 2", le.Message);
        var deep = Assert.Throws<LlmException>(() => ChatFormat.FromTemplate("{{ " + Deep("(", "1", ")", 20_000) + " }}", "", ""));
        Assert.Equal("ChatTemplateInvalid", deep.ErrorId);
    }

    [Fact]
    public void InputThatContainsItselfIsAnError()
    {
        var message = new Dictionary<string, object?> { ["role"] = "user" };
        message["content"] = message;
        var template = ChatTemplate.Parse("{{ messages }}");
        Assert.Contains("contains itself", Assert.Throws<TemplateException>(() => template.Render([message], false)).Message);
        var list = new List<object?>();
        list.Add(list);
        Assert.Contains("contains itself", Assert.Throws<TemplateException>(() => template.Render([], false, tools: list)).Message);
        object? deep = "x";
        for (int i = 0; i < 10_000; i++) deep = new List<object?> { deep };
        Assert.Contains("levels deep", Assert.Throws<TemplateException>(() => template.Render([], false, tools: deep)).Message);
    }

    [Fact]
    public void AValueSharedTwiceIsNotACycle()
    {
        var shared = new List<object?> { 1L };
        var template = ChatTemplate.Parse("{{ tools | tojson }}");
        Assert.Equal("[[1], [1]]", template.Render([], false, tools: new List<object?> { shared, shared }));
    }
}
