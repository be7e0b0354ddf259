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

/// <summary>What a render needs beyond the scope: the root scope (macros see it) and the pinned clock.</summary>
internal sealed class RenderContext(Scope root, DateTime now)
{
    public Scope Root { get; } = root;
    public DateTime Now { get; } = now;
    public int Depth;
}

internal sealed class BreakSignal : Exception;
internal sealed class ContinueSignal : Exception;

// ---------- statements ----------

internal abstract class Node
{
    public abstract void Render(RenderContext ctx, Scope scope, StringBuilder output);

    public static void RenderAll(List<Node> nodes, RenderContext ctx, Scope scope, StringBuilder output)
    {
        foreach (var n in nodes) n.Render(ctx, scope, output);
    }
}

internal sealed class TextNode(string text) : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output) => output.Append(text);
}

internal sealed class OutputNode(Expr expr) : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output) => output.Append(Py.Str(expr.Eval(ctx, scope)));
}

internal sealed class IfNode(List<(Expr Condition, List<Node> Body)> branches, List<Node>? otherwise) : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output)
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

/// <summary>The loop variable of a for: index, first, last, length, previtem, nextitem, cycle().</summary>
internal sealed class LoopInfo(List<object?> items, int depth0)
{
    public int Index0;
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
        _ => new Undefined(name),
    };
}

internal sealed class ForNode(List<string> targets, Expr iterable, Expr? filter, List<Node> body, List<Node>? otherwise) : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output)
    {
        var source = iterable.Eval(ctx, scope);
        var all = Py.Iterate(source).ToList();
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
        var loop = new LoopInfo(items, ctx.Depth);
        for (int i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var inner = new Scope(scope);
            inner.Set("loop", loop);
            Assign(inner, items[i]);
            try
            {
                RenderAll(body, ctx, inner, output);
            }
            catch (BreakSignal)
            {
                break;
            }
            catch (ContinueSignal)
            {
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
        var values = Py.Iterate(item).ToList();
        if (values.Count != targets.Count)
            throw new TemplateException($"cannot unpack {values.Count} values into {targets.Count} loop variables");
        for (int i = 0; i < targets.Count; i++) scope.Set(targets[i], values[i]);
    }
}

internal sealed class SetNode(List<string> targets, Expr value) : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output)
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
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output)
    {
        if (!scope.TryGet(name, out var target) || target is not Namespace ns)
            throw new TemplateException("cannot assign attribute on non-namespace object");
        ns.Values[attribute] = value.Eval(ctx, scope);
    }
}

internal sealed class SetBlockNode(string name, List<Node> body, List<FilterCall> filters) : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output)
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
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output)
    {
        var sb = new StringBuilder();
        RenderAll(body, ctx, scope, sb);
        object? v = sb.ToString();
        foreach (var f in filters) v = f.Apply(ctx, scope, v);
        output.Append(Py.Str(v));
    }
}

/// <summary>A block whose body renders as is ({% generation %}).</summary>
internal sealed class BlockNode(List<Node> body) : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output) => RenderAll(body, ctx, scope, output);
}

internal sealed class BreakNode : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output) => throw new BreakSignal();
}

internal sealed class ContinueNode : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output) => throw new ContinueSignal();
}

internal sealed class MacroNode(string name, List<(string Name, Expr? Default)> parameters, List<Node> body) : Node
{
    public override void Render(RenderContext ctx, Scope scope, StringBuilder output)
    {
        scope.Set(name, new CallableValue(name, (args, kwargs) =>
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
            foreach (var k in kwargs.Keys)
                if (!parameters.Any(p => p.Name == k)) throw new TemplateException($"macro '{name}' takes no keyword argument '{k}'");
            var sb = new StringBuilder();
            RenderAll(body, ctx, inner, sb);
            return sb.ToString();
        }));
    }
}

// ---------- expressions ----------

internal abstract class Expr
{
    public abstract object? Eval(RenderContext ctx, Scope scope);
}

internal sealed class LiteralExpr(object? value) : Expr
{
    public object? Value { get; } = value;
    public override object? Eval(RenderContext ctx, Scope scope) => Value;
}

internal sealed class NameExpr(string name) : Expr
{
    public string Name { get; } = name;
    public override object? Eval(RenderContext ctx, Scope scope) => scope.TryGet(Name, out var v) ? v : new Undefined(Name);
}

internal sealed class ListExpr(List<Expr> items, bool tuple = false) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope)
    {
        var values = items.Select(i => i.Eval(ctx, scope));
        return tuple ? new PyTuple(values) : values.ToList();
    }
}

internal sealed class DictExpr(List<(Expr Key, Expr Value)> items) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope)
    {
        var d = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in items)
        {
            var key = k.Eval(ctx, scope);
            d[key as string ?? Py.Str(key)] = v.Eval(ctx, scope);
        }
        return d;
    }
}

internal sealed class AttributeExpr(Expr target, string name) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope) => Runtime.GetAttribute(target.Eval(ctx, scope), name);
}

internal sealed class ItemExpr(Expr target, Expr key) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope) => Runtime.GetItem(target.Eval(ctx, scope), key.Eval(ctx, scope));
}

internal sealed class SliceExpr(Expr target, Expr? start, Expr? stop, Expr? step) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope) =>
        Runtime.Slice(target.Eval(ctx, scope), start?.Eval(ctx, scope), stop?.Eval(ctx, scope), step?.Eval(ctx, scope));
}

internal sealed class CallExpr(Expr callee, List<Expr> args, List<(string Name, Expr Value)> kwargs) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope)
    {
        var f = callee.Eval(ctx, scope);
        var a = args.Select(x => x.Eval(ctx, scope)).ToList();
        var k = kwargs.ToDictionary(x => x.Name, x => x.Value.Eval(ctx, scope), StringComparer.Ordinal);
        return f switch
        {
            CallableValue c => c.Call(a, k),
            Undefined u => throw u.Error(),
            _ => throw new TemplateException($"'{Py.TypeName(f)}' object is not callable"),
        };
    }
}

internal sealed class FilterCall(string name, List<Expr> args, List<(string Name, Expr Value)> kwargs)
{
    public string Name { get; } = name;

    public object? Apply(RenderContext ctx, Scope scope, object? value) =>
        Filters.Apply(ctx, Name, value, args.Select(a => a.Eval(ctx, scope)).ToList(),
            kwargs.ToDictionary(x => x.Name, x => x.Value.Eval(ctx, scope), StringComparer.Ordinal));
}

internal sealed class FilterExpr(Expr value, FilterCall filter) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope) => filter.Apply(ctx, scope, value.Eval(ctx, scope));
}

internal sealed class TestExpr(Expr value, string name, List<Expr> args, bool negated) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope)
    {
        bool r = Tests.Apply(name, value.Eval(ctx, scope), args.Select(a => a.Eval(ctx, scope)).ToList());
        return negated ? !r : r;
    }
}

internal sealed class NotExpr(Expr operand) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope) => !Py.Truthy(operand.Eval(ctx, scope));
}

internal sealed class AndExpr(Expr left, Expr right) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope)
    {
        var l = left.Eval(ctx, scope);
        return Py.Truthy(l) ? right.Eval(ctx, scope) : l;
    }
}

internal sealed class OrExpr(Expr left, Expr right) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope)
    {
        var l = left.Eval(ctx, scope);
        return Py.Truthy(l) ? l : right.Eval(ctx, scope);
    }
}

internal sealed class ConditionalExpr(Expr condition, Expr then, Expr? otherwise) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope) =>
        Py.Truthy(condition.Eval(ctx, scope)) ? then.Eval(ctx, scope) : otherwise?.Eval(ctx, scope) ?? new Undefined("else");
}

internal sealed class UnaryExpr(string op, Expr operand) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope)
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
    public override object? Eval(RenderContext ctx, Scope scope) => Runtime.Binary(op, left.Eval(ctx, scope), right.Eval(ctx, scope));
}

internal sealed class CompareExpr(Expr first, List<(string Op, Expr Operand)> rest) : Expr
{
    public override object? Eval(RenderContext ctx, Scope scope)
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
