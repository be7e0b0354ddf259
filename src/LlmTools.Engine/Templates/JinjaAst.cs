using System.Runtime.CompilerServices;
using System.Text;

namespace LlmTools.Templates;

/// <summary>Variables of one scope; lookups go up to the parent (a loop body or macro sees what is outside it).</summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);
    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s is not null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}

/// <summary>
/// What a render needs beyond the scope: the root scope (macros see it), the pinned clock, and the sandbox's
/// accounting (nesting, work done, cancellation, the line being rendered). Rendering runs on one thread, so the
/// runtime helpers that have no context parameter find it in <see cref="Current"/>.
/// </summary>
internal sealed class RenderContext(Scope root, DateTime now, CancellationToken cancellation = default)
{
    [ThreadStatic] private static RenderContext? _current;
    private int _untilCancellationCheck;

    public static RenderContext? Current => _current;
    public Scope Root { get; } = root;
    public DateTime Now { get; } = now;
    public CancellationToken Cancellation { get; } = cancellation;
    public int Nesting;
    public int Deepest;
    public long Steps;
    public int Line;

    /// <summary>Makes this the context of the calling thread until the returned scope ends.</summary>
    public Activation Activate()
    {
        var previous = _current;
        _current = this;
        return new Activation(previous);
    }

    public readonly struct Activation(RenderContext? previous) : IDisposable
    {
        public void Dispose() => _current = previous;
    }

    public void Enter()
    {
        if (++Nesting > TemplateLimits.MaxNesting) throw Sandbox.TooDeep();
        if (Nesting > Deepest) Deepest = Nesting;
        RuntimeHelpers.EnsureSufficientExecutionStack();
    }

    public void Leave() => Nesting--;

    /// <summary>Counts work; past the limit the render ends with an error, and cancellation is checked as it goes.</summary>
    public void Charge(long units)
    {
        Steps += units;
        if (Steps > TemplateLimits.MaxSteps)
            throw new TemplateException($"the template does more work than the sandbox allows ({TemplateLimits.MaxSteps} steps): it loops or builds too much");
        _untilCancellationCheck -= (int)Math.Min(units, 1 << 20);
        if (_untilCancellationCheck <= 0)
        {
            _untilCancellationCheck = 4096;
            Cancellation.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Appends to an output or block buffer, within the output limit.</summary>
    public void Append(StringBuilder output, string text)
    {
        if ((long)output.Length + text.Length > TemplateLimits.MaxStringLength)
            throw new TemplateException($"the template writes more than the sandbox allows ({TemplateLimits.MaxStringLength} chars)");
        Charge(text.Length / 16);
        output.Append(text);
    }
}

internal sealed class BreakSignal : Exception;
internal sealed class ContinueSignal : Exception;

// ---------- statements ----------

internal abstract class Node
{
    /// <summary>The template line the node starts on, for error messages.</summary>
    public int Line { get; set; }

    protected abstract void RenderCore(RenderContext ctx, Scope scope, StringBuilder output);

    public void Render(RenderContext ctx, Scope scope, StringBuilder output)
    {
        int outerLine = ctx.Line;
        ctx.Line = Line;
        ctx.Enter();
        ctx.Charge(1);
        RenderCore(ctx, scope, output);
        ctx.Leave();
        ctx.Line = outerLine; // not restored on an exception: the innermost line is the one the error names
    }

    public static void RenderAll(List<Node> nodes, RenderContext ctx, Scope scope, StringBuilder output)
    {
        foreach (var n in nodes) n.Render(ctx, scope, output);
    }
}

internal sealed class TextNode(string text) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output) => ctx.Append(output, text);
}

internal sealed class OutputNode(Expr expr) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output) => ctx.Append(output, Py.Str(expr.Eval(ctx, scope)));
}

internal sealed class IfNode(List<(Expr Condition, List<Node> Body)> branches, List<Node>? otherwise) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output)
    {
        foreach (var (condition, body) in branches)
            if (Py.Truthy(condition.Eval(ctx, scope)))
            {
                RenderAll(body, ctx, scope, output);
                return;
            }
        if (otherwise is not null) RenderAll(otherwise, ctx, scope, output);
    }
}

/// <summary>The loop variable of a for: index, first, last, length, previtem, nextitem, cycle(), and loop(...) in a recursive loop.</summary>
internal sealed class LoopInfo(List<object?> items, int depth0, CallableValue? recurse)
{
    public int Index0;
    /// <summary>Renders the loop body again for other items (a loop marked recursive), or null.</summary>
    public CallableValue? Recurse { get; } = recurse;
    public object? Get(string name) => name switch
    {
        "index" => (long)(Index0 + 1),
        "index0" => (long)Index0,
        "revindex" => (long)(items.Count - Index0),
        "revindex0" => (long)(items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => (long)(depth0 + 1),
        "depth0" => (long)depth0,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : new Undefined("previtem"),
        "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : new Undefined("nextitem"),
        "cycle" => new CallableValue("cycle", (args, _) => args.Count == 0 ? throw new TemplateException("no items for cycling given") : args[Index0 % args.Count]),
        "changed" => new CallableValue("changed", (_, _) => throw new TemplateException("loop.changed() is not supported")),
        _ => name.StartsWith('_') ? Undefined.Unsafe(this, name) : new Undefined(name),
    };
}

internal sealed class ForNode(List<string> targets, Expr iterable, Expr? filter, List<Node> body, List<Node>? otherwise, bool recursive) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output) =>
        RenderLoop(ctx, scope, output, iterable.Eval(ctx, scope), 0);

    private void RenderLoop(RenderContext ctx, Scope scope, StringBuilder output, object? source, int depth0)
    {
        var all = Sandbox.ToList(Py.Iterate(source));
        List<object?> items;
        if (filter is null) items = all;
        else
        {
            items = [];
            foreach (var item in all)
            {
                var probe = new Scope(scope);
                Assign(probe, item);
                if (Py.Truthy(filter.Eval(ctx, probe))) items.Add(item);
            }
        }
        if (items.Count == 0)
        {
            if (otherwise is not null) RenderAll(otherwise, ctx, scope, output);
            return;
        }
        // loop(children) renders this loop again for them, one level deeper, and returns the text (jinja2's recursive loops)
        var recurse = !recursive ? null : new CallableValue("loop", (args, _) =>
        {
            if (args.Count != 1) throw new TemplateException("loop() takes exactly one argument: the items to loop over");
            var sb = new StringBuilder();
            ctx.Enter();
            RenderLoop(ctx, scope, sb, args[0], depth0 + 1);
            ctx.Leave();
            return new MarkupValue(sb.ToString());
        });
        var loop = new LoopInfo(items, depth0, recurse);
        for (int i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var inner = new Scope(scope);
            inner.Set("loop", loop);
            Assign(inner, items[i]);
            int nesting = ctx.Nesting;
            ctx.Charge(1);
            try
            {
                RenderAll(body, ctx, inner, output);
            }
            catch (BreakSignal)
            {
                ctx.Nesting = nesting;
                break;
            }
            catch (ContinueSignal)
            {
                ctx.Nesting = nesting;
            }
        }
    }

    private void Assign(Scope scope, object? item)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], item);
            return;
        }
        var values = Sandbox.ToList(Py.Iterate(item));
        if (values.Count != targets.Count)
            throw new TemplateException($"cannot unpack {values.Count} values into {targets.Count} loop variables");
        for (int i = 0; i < targets.Count; i++) scope.Set(targets[i], values[i]);
    }
}

internal sealed class SetNode(List<string> targets, Expr value) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output)
    {
        var v = value.Eval(ctx, scope);
        if (targets.Count == 1)
        {
            scope.Set(targets[0], v);
            return;
        }
        var values = Py.Iterate(v).ToList();
        if (values.Count != targets.Count) throw new TemplateException($"cannot unpack {values.Count} values into {targets.Count} names");
        for (int i = 0; i < targets.Count; i++) scope.Set(targets[i], values[i]);
    }
}

internal sealed class SetAttributeNode(string name, string attribute, Expr value) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output)
    {
        if (!scope.TryGet(name, out var target) || target is not Namespace ns)
            throw new TemplateException("cannot assign attribute on non-namespace object");
        ns.Values[attribute] = value.Eval(ctx, scope);
    }
}

internal sealed class SetBlockNode(string name, List<Node> body, List<FilterCall> filters) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output)
    {
        var sb = new StringBuilder();
        RenderAll(body, ctx, scope, sb);
        object? v = sb.ToString();
        foreach (var f in filters) v = f.Apply(ctx, scope, v);
        scope.Set(name, v);
    }
}

internal sealed class FilterBlockNode(List<Node> body, List<FilterCall> filters) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output)
    {
        var sb = new StringBuilder();
        RenderAll(body, ctx, scope, sb);
        object? v = sb.ToString();
        foreach (var f in filters) v = f.Apply(ctx, scope, v);
        ctx.Append(output, Py.Str(v));
    }
}

/// <summary>A block whose body renders as is ({% generation %}).</summary>
internal sealed class BlockNode(List<Node> body) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output) => RenderAll(body, ctx, scope, output);
}

internal sealed class BreakNode : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output) => throw new BreakSignal();
}

internal sealed class ContinueNode : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output) => throw new ContinueSignal();
}

internal sealed class MacroNode(string name, List<(string Name, Expr? Default)> parameters, List<Node> body) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output) =>
        scope.Set(name, Macro.Make(name, parameters, body, ctx, scope));
}

/// <summary>A macro, or the caller of a {% call %} block: a callable that renders a body with its arguments bound.</summary>
internal static class Macro
{
    public static CallableValue Make(string name, List<(string Name, Expr? Default)> parameters, List<Node> body, RenderContext ctx, Scope scope) =>
        new(name, (args, kwargs) =>
        {
            var inner = new Scope(scope); // the defining scope: top-level names as they are at call time
            if (args.Count > parameters.Count) throw new TemplateException($"macro '{name}' takes not more than {parameters.Count} argument(s)");
            for (int i = 0; i < parameters.Count; i++)
            {
                var (p, dflt) = parameters[i];
                if (i < args.Count) inner.Set(p, args[i]);
                else if (kwargs.TryGetValue(p, out var kv)) inner.Set(p, kv);
                else inner.Set(p, dflt is null ? new Undefined(p) : dflt.Eval(ctx, inner));
            }
            foreach (var (k, v) in kwargs)
            {
                if (k == "caller" && !parameters.Any(p => p.Name == k)) { inner.Set(k, v); continue; }
                if (!parameters.Any(p => p.Name == k)) throw new TemplateException($"macro '{name}' takes no keyword argument '{k}'");
            }
            var sb = new StringBuilder();
            ctx.Enter();
            RenderAll(body, ctx, inner, sb);
            ctx.Leave();
            return sb.ToString();
        });

    private static void RenderAll(List<Node> body, RenderContext ctx, Scope scope, StringBuilder sb) => Node.RenderAll(body, ctx, scope, sb);
}

/// <summary>{% call(args) macro(...) %}body{% endcall %}: the macro gets the body as caller(args).</summary>
internal sealed class CallBlockNode(List<(string Name, Expr? Default)> parameters, CallExpr call, List<Node> body) : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output)
    {
        var caller = Macro.Make("caller", parameters, body, ctx, scope);
        ctx.Append(output, Py.Str(call.Invoke(ctx, scope, caller)));
    }
}

/// <summary>
/// {% include %}, {% import %}, {% extends %}: transformers gives jinja2 no loader, so these fail when rendered, as in
/// jinja2 (a template cannot include itself or anything else).
/// </summary>
internal sealed class LoaderNode : Node
{
    protected override void RenderCore(RenderContext ctx, Scope scope, StringBuilder output) =>
        throw new TemplateException("no loader for this environment specified"); // jinja2's words
}

// ---------- expressions ----------

internal abstract class Expr
{
    protected abstract object? EvalCore(RenderContext ctx, Scope scope);

    public object? Eval(RenderContext ctx, Scope scope)
    {
        ctx.Enter();
        ctx.Charge(1);
        var v = EvalCore(ctx, scope);
        ctx.Leave();
        return v;
    }
}

internal sealed class LiteralExpr(object? value) : Expr
{
    public object? Value { get; } = value;
    protected override object? EvalCore(RenderContext ctx, Scope scope) => Value;
}

internal sealed class NameExpr(string name) : Expr
{
    public string Name { get; } = name;
    protected override object? EvalCore(RenderContext ctx, Scope scope) => scope.TryGet(Name, out var v) ? v : new Undefined(Name);
}

internal sealed class ListExpr(List<Expr> items, bool tuple = false) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope)
    {
        var values = items.Select(i => i.Eval(ctx, scope));
        return tuple ? new PyTuple(values) : values.ToList();
    }
}

internal sealed class DictExpr(List<(Expr Key, Expr Value)> items) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope)
    {
        var d = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in items)
        {
            var key = k.Eval(ctx, scope);
            d[Py.DictKey(key)] = v.Eval(ctx, scope); // {0: 'a'} keeps the int 0 as its key
        }
        return d;
    }
}

internal sealed class AttributeExpr(Expr target, string name) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope) => Runtime.GetAttribute(target.Eval(ctx, scope), name);
}

internal sealed class ItemExpr(Expr target, Expr key) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope) => Runtime.GetItem(target.Eval(ctx, scope), key.Eval(ctx, scope));
}

internal sealed class SliceExpr(Expr target, Expr? start, Expr? stop, Expr? step) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope) =>
        Runtime.Slice(target.Eval(ctx, scope), start?.Eval(ctx, scope), stop?.Eval(ctx, scope), step?.Eval(ctx, scope));
}

internal sealed class CallExpr(Expr callee, List<Expr> args, List<(string Name, Expr Value)> kwargs) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope) => Invoke(ctx, scope, null);

    public object? Invoke(RenderContext ctx, Scope scope, CallableValue? caller)
    {
        var f = callee.Eval(ctx, scope);
        var a = args.Select(x => x.Eval(ctx, scope)).ToList();
        var k = kwargs.ToDictionary(x => x.Name, x => x.Value.Eval(ctx, scope), StringComparer.Ordinal);
        if (caller is not null) k["caller"] = caller;
        var result = f switch
        {
            CallableValue c => c.Call(a, k),
            LoopInfo { Recurse: { } r } => r.Call(a, k),
            LoopInfo => throw new TemplateException("The loop must have the 'recursive' marker to be called recursively."),
            Undefined u => throw u.Error(),
            _ => throw new TemplateException($"'{Py.TypeName(f)}' object is not callable"),
        };
        if (Py.Plain(result) is string s) Sandbox.CheckString(s.Length);
        return result;
    }
}

internal sealed class FilterCall(string name, List<Expr> args, List<(string Name, Expr Value)> kwargs)
{
    public string Name { get; } = name;

    public object? Apply(RenderContext ctx, Scope scope, object? value)
    {
        var result = Filters.Apply(ctx, Name, value, args.Select(a => a.Eval(ctx, scope)).ToList(),
            kwargs.ToDictionary(x => x.Name, x => x.Value.Eval(ctx, scope), StringComparer.Ordinal));
        if (Py.Plain(result) is string s) Sandbox.CheckString(s.Length);
        else if (result is List<object?> l) Sandbox.CheckList(l.Count);
        return result;
    }
}

internal sealed class FilterExpr(Expr value, FilterCall filter) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope) => filter.Apply(ctx, scope, value.Eval(ctx, scope));
}

internal sealed class TestExpr(Expr value, string name, List<Expr> args, bool negated) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope)
    {
        bool r = Tests.Apply(name, value.Eval(ctx, scope), args.Select(a => a.Eval(ctx, scope)).ToList());
        return negated ? !r : r;
    }
}

internal sealed class NotExpr(Expr operand) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope) => !Py.Truthy(operand.Eval(ctx, scope));
}

internal sealed class AndExpr(Expr left, Expr right) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope)
    {
        var l = left.Eval(ctx, scope);
        return Py.Truthy(l) ? right.Eval(ctx, scope) : l;
    }
}

internal sealed class OrExpr(Expr left, Expr right) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope)
    {
        var l = left.Eval(ctx, scope);
        return Py.Truthy(l) ? l : right.Eval(ctx, scope);
    }
}

internal sealed class ConditionalExpr(Expr condition, Expr then, Expr? otherwise) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope) =>
        Py.Truthy(condition.Eval(ctx, scope)) ? then.Eval(ctx, scope) : otherwise?.Eval(ctx, scope) ?? new Undefined("else");
}

internal sealed class UnaryExpr(string op, Expr operand) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope)
    {
        var v = operand.Eval(ctx, scope);
        return op switch
        {
            "-" => v switch { long l => (object)(-l), double d => -d, bool b => b ? -1L : 0L, _ => throw new TemplateException($"bad operand type for unary -: '{Py.TypeName(v)}'") },
            _ => v switch { long or double => v, bool b => (object)(b ? 1L : 0L), _ => throw new TemplateException($"bad operand type for unary +: '{Py.TypeName(v)}'") },
        };
    }
}

internal sealed class BinaryExpr(string op, Expr left, Expr right) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope) => Runtime.Binary(op, left.Eval(ctx, scope), right.Eval(ctx, scope));
}

internal sealed class CompareExpr(Expr first, List<(string Op, Expr Operand)> rest) : Expr
{
    protected override object? EvalCore(RenderContext ctx, Scope scope)
    {
        var left = first.Eval(ctx, scope);
        foreach (var (op, operand) in rest)
        {
            var right = operand.Eval(ctx, scope);
            if (!Runtime.Compare(op, left, right)) return false;
            left = right;
        }
        return true;
    }
}
