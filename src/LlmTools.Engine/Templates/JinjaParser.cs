using System.Runtime.CompilerServices;

namespace LlmTools.Templates;

/// <summary>Parses jinja2 templates (the subset real chat templates use) into a tree the renderer walks.</summary>
internal sealed class JinjaParser
{
    private readonly List<Segment> _segments;
    private int _index;
    private int _depth; // blocks open: bounded, so a template of 20,000 nested ifs is an error, not a stack overflow

    private JinjaParser(List<Segment> segments) => _segments = segments;

    public static List<Node> Parse(string source)
    {
        var parser = new JinjaParser(JinjaLexer.Lex(source));
        var (nodes, end) = parser.ParseBody([]);
        if (end is not null) throw new TemplateException($"unexpected '{end}'");
        return nodes;
    }

    private (List<Node> Nodes, string? End) ParseBody(HashSet<string> ends)
    {
        var nodes = new List<Node>();
        while (_index < _segments.Count)
        {
            var seg = _segments[_index++];
            switch (seg.Kind)
            {
                case SegmentKind.Text:
                    nodes.Add(new TextNode(seg.Text) { Line = seg.Line });
                    break;
                case SegmentKind.Expression:
                {
                    var p = new ExpressionParser(seg);
                    nodes.Add(new OutputNode(p.ParseTuple()) { Line = seg.Line });
                    p.ExpectEnd();
                    break;
                }
                default:
                {
                    if (seg.Tokens.Count == 0) throw new TemplateException($"line {seg.Line}: empty tag");
                    var tag = seg.Tokens[0].Text;
                    if (ends.Contains(tag))
                    {
                        _index--; // the caller reads the end tag itself
                        return (nodes, tag);
                    }
                    if (++_depth > TemplateLimits.MaxParseNesting)
                        throw new TemplateException($"line {seg.Line}: blocks nest more than {TemplateLimits.MaxParseNesting} levels deep");
                    RuntimeHelpers.EnsureSufficientExecutionStack();
                    var node = ParseStatement(seg, tag);
                    node.Line = seg.Line;
                    nodes.Add(node);
                    _depth--;
                    break;
                }
            }
        }
        if (ends.Count > 0) throw new TemplateException($"unexpected end of template, expected one of: {string.Join(", ", ends.Order())}");
        return (nodes, null);
    }

    private Segment Next() => _segments[_index++];

    private Node ParseStatement(Segment seg, string tag)
    {
        var p = new ExpressionParser(seg, 1);
        switch (tag)
        {
            case "if":
            {
                var branches = new List<(Expr, List<Node>)>();
                var condition = p.ParseExpression();
                p.ExpectEnd();
                List<Node>? otherwise = null;
                while (true)
                {
                    var (body, end) = ParseBody(["elif", "else", "endif"]);
                    branches.Add((condition, body));
                    var endSeg = Next();
                    if (end == "elif")
                    {
                        var ep = new ExpressionParser(endSeg, 1);
                        condition = ep.ParseExpression();
                        ep.ExpectEnd();
                        continue;
                    }
                    if (end == "else")
                    {
                        new ExpressionParser(endSeg, 1).ExpectEnd();
                        (otherwise, _) = ParseBody(["endif"]);
                        Next();
                    }
                    break;
                }
                return new IfNode(branches, otherwise);
            }
            case "for":
            {
                var targets = p.ParseTargets();
                p.ExpectName("in");
                var iterable = p.ParseExpression(allowConditional: false);
                Expr? filter = null;
                if (p.Accept("if")) filter = p.ParseExpression(allowConditional: false);
                bool recursive = p.Accept("recursive");
                p.ExpectEnd();
                var (body, end) = ParseBody(["else", "endfor"]);
                Next();
                List<Node>? otherwise = null;
                if (end == "else")
                {
                    (otherwise, _) = ParseBody(["endfor"]);
                    Next();
                }
                return new ForNode(targets, iterable, filter, body, otherwise, recursive);
            }
            case "set":
            {
                var first = p.ExpectIdentifier();
                if (p.Accept("."))
                {
                    var attribute = p.ExpectIdentifier();
                    p.ExpectOperator("=");
                    var value = p.ParseTuple();
                    p.ExpectEnd();
                    return new SetAttributeNode(first, attribute, value);
                }
                var targets = new List<string> { first };
                while (p.Accept(",")) targets.Add(p.ExpectIdentifier());
                if (p.Accept("="))
                {
                    var value = p.ParseTuple();
                    p.ExpectEnd();
                    return new SetNode(targets, value);
                }
                var filters = p.ParseFilterChain();
                p.ExpectEnd();
                var (body, _) = ParseBody(["endset"]);
                Next();
                return new SetBlockNode(first, body, filters);
            }
            case "macro":
            {
                var name = p.ExpectIdentifier();
                p.ExpectOperator("(");
                var parameters = p.ParseParameters();
                p.ExpectEnd();
                var (body, _) = ParseBody(["endmacro"]);
                Next();
                return new MacroNode(name, parameters, body);
            }
            case "call":
            {
                var parameters = p.Accept("(") ? p.ParseParameters() : [];
                if (p.ParseExpression() is not CallExpr call) throw new TemplateException($"line {seg.Line}: expected a macro call after 'call'");
                p.ExpectEnd();
                var (body, _) = ParseBody(["endcall"]);
                Next();
                return new CallBlockNode(parameters, call, body);
            }
            case "include" or "import" or "from" or "extends":
                return new LoaderNode();
            case "filter":
            {
                var filters = p.ParseFilterChain(leadingPipe: false);
                p.ExpectEnd();
                var (body, _) = ParseBody(["endfilter"]);
                Next();
                return new FilterBlockNode(body, filters);
            }
            case "generation":
            {
                p.ExpectEnd();
                var (body, _) = ParseBody(["endgeneration"]);
                Next();
                return new BlockNode(body);
            }
            case "break":
                p.ExpectEnd();
                return new BreakNode();
            case "continue":
                p.ExpectEnd();
                return new ContinueNode();
            default:
                throw new TemplateException($"line {seg.Line}: Encountered unknown tag '{tag}'.");
        }
    }
}

/// <summary>Recursive-descent parser for one tag's expression, with jinja2's precedence.</summary>
internal sealed class ExpressionParser(Segment segment, int start = 0)
{
    private readonly List<Token> _tokens = segment.Tokens;
    private int _pos = start;
    private static readonly HashSet<string> Keywords = ["and", "or", "not", "in", "is", "if", "else", "recursive"];

    private Token Peek(int ahead = 0) => _pos + ahead < _tokens.Count ? _tokens[_pos + ahead] : new Token(TokenKind.End, "");

    private TemplateException Error(string what) => new($"line {segment.Line}: {what}");

    public bool Accept(string text)
    {
        if (Peek().Kind != TokenKind.End && Peek().Is(text)) { _pos++; return true; }
        return false;
    }

    public void ExpectOperator(string op)
    {
        if (!Accept(op)) throw Error($"expected '{op}', got {Peek()}");
    }

    public void ExpectName(string name)
    {
        if (!Accept(name)) throw Error($"expected '{name}', got {Peek()}");
    }

    public string ExpectIdentifier()
    {
        var t = Peek();
        if (t.Kind != TokenKind.Name) throw Error($"expected a name, got {t}");
        _pos++;
        return t.Text;
    }

    public void ExpectEnd()
    {
        if (Peek().Kind != TokenKind.End) throw Error($"expected end of tag, got {Peek()}");
    }

    /// <summary>A macro's or caller's parameters after the '(': names with optional defaults, up to ')'.</summary>
    public List<(string Name, Expr? Default)> ParseParameters()
    {
        var parameters = new List<(string, Expr?)>();
        while (!Accept(")"))
        {
            var pn = ExpectIdentifier();
            Expr? dflt = Accept("=") ? ParseExpression() : null;
            parameters.Add((pn, dflt));
            if (!Accept(",")) { ExpectOperator(")"); break; }
        }
        return parameters;
    }

    private int _depth;

    // Every recursion of the expression grammar passes through here: deep nesting is an error, not a stack overflow.
    private void Enter()
    {
        if (++_depth > TemplateLimits.MaxParseNesting) throw Error($"the expression nests more than {TemplateLimits.MaxParseNesting} levels deep");
        RuntimeHelpers.EnsureSufficientExecutionStack();
    }

    public List<string> ParseTargets()
    {
        bool paren = Accept("(");
        var names = new List<string> { ExpectIdentifier() };
        while (Accept(",")) names.Add(ExpectIdentifier());
        if (paren) ExpectOperator(")");
        return names;
    }

    /// <summary>An expression, or a tuple of them without parentheses (a, b).</summary>
    public Expr ParseTuple()
    {
        var first = ParseExpression();
        if (!Peek().Is(",") || Peek().Kind != TokenKind.Operator) return first;
        var items = new List<Expr> { first };
        while (Accept(","))
        {
            if (Peek().Kind == TokenKind.End) break;
            items.Add(ParseExpression());
        }
        return new ListExpr(items, tuple: true);
    }

    public Expr ParseExpression(bool allowConditional = true)
    {
        Enter();
        var e = ParseOr();
        if (allowConditional && Peek().Kind == TokenKind.Name && Peek().Text == "if")
        {
            _pos++;
            var condition = ParseOr();
            Expr? otherwise = Accept("else") ? ParseExpression() : null;
            e = new ConditionalExpr(condition, e, otherwise);
        }
        _depth--;
        return e;
    }

    private Expr ParseOr()
    {
        var e = ParseAnd();
        while (Peek().Kind == TokenKind.Name && Peek().Text == "or") { _pos++; e = new OrExpr(e, ParseAnd()); }
        return e;
    }

    private Expr ParseAnd()
    {
        var e = ParseNot();
        while (Peek().Kind == TokenKind.Name && Peek().Text == "and") { _pos++; e = new AndExpr(e, ParseNot()); }
        return e;
    }

    private Expr ParseNot()
    {
        if (Peek().Kind == TokenKind.Name && Peek().Text == "not")
        {
            _pos++;
            Enter();
            var operand = ParseNot();
            _depth--;
            return new NotExpr(operand);
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var t = Peek();
            if (t.Kind == TokenKind.Operator && t.Text is "==" or "!=" or "<" or ">" or "<=" or ">=") { _pos++; rest.Add((t.Text, ParseMath1())); }
            else if (t.Kind == TokenKind.Name && t.Text == "in") { _pos++; rest.Add(("in", ParseMath1())); }
            else if (t.Kind == TokenKind.Name && t.Text == "not" && Peek(1).Kind == TokenKind.Name && Peek(1).Text == "in") { _pos += 2; rest.Add(("not in", ParseMath1())); }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest);
    }

    private Expr ParseMath1()
    {
        var e = ParseConcat();
        while (Peek().Kind == TokenKind.Operator && Peek().Text is "+" or "-")
        {
            var op = Peek().Text;
            _pos++;
            e = new BinaryExpr(op, e, ParseConcat());
        }
        return e;
    }

    private Expr ParseConcat()
    {
        var e = ParseMath2();
        while (Peek().Kind == TokenKind.Operator && Peek().Text == "~") { _pos++; e = new BinaryExpr("~", e, ParseMath2()); }
        return e;
    }

    private Expr ParseMath2()
    {
        var e = ParsePow();
        while (Peek().Kind == TokenKind.Operator && Peek().Text is "*" or "/" or "//" or "%")
        {
            var op = Peek().Text;
            _pos++;
            e = new BinaryExpr(op, e, ParsePow());
        }
        return e;
    }

    private Expr ParsePow()
    {
        var e = ParseUnary();
        while (Peek().Kind == TokenKind.Operator && Peek().Text == "**") { _pos++; e = new BinaryExpr("**", e, ParseUnary()); }
        return e;
    }

    private Expr ParseUnary(bool withFilter = true)
    {
        Expr e;
        if (Peek().Kind == TokenKind.Operator && Peek().Text is "-" or "+")
        {
            var op = Peek().Text;
            _pos++;
            Enter();
            e = new UnaryExpr(op, ParseUnary(false));
            _depth--;
        }
        else e = ParsePostfix(ParsePrimary());
        return withFilter ? ParseFilterExpr(e) : e;
    }

    private Expr ParseFilterExpr(Expr e)
    {
        while (true)
        {
            if (Peek().Kind == TokenKind.Operator && Peek().Text == "|")
            {
                _pos++;
                e = new FilterExpr(e, ParseFilterCall());
            }
            else if (Peek().Kind == TokenKind.Name && Peek().Text == "is")
            {
                _pos++;
                bool negated = Accept("not");
                var name = Peek().Kind == TokenKind.Name ? ExpectIdentifier() : Peek().Kind == TokenKind.Operator ? _tokens[_pos++].Text : throw Error("expected a test name");
                var args = new List<Expr>();
                if (Peek().Kind == TokenKind.Operator && Peek().Text == "(")
                {
                    var (a, _) = ParseArguments();
                    args = a;
                }
                else if (Peek().Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float ||
                         (Peek().Kind == TokenKind.Name && !Keywords.Contains(Peek().Text)))
                {
                    args.Add(ParsePostfix(ParsePrimary()));
                }
                e = new TestExpr(e, name, args, negated);
            }
            else if (Peek().Kind == TokenKind.Operator && Peek().Text == "(")
            {
                var (a, k) = ParseArguments();
                e = new CallExpr(e, a, k);
            }
            else return e;
        }
    }

    private FilterCall ParseFilterCall()
    {
        var name = ExpectIdentifier();
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        if (Peek().Kind == TokenKind.Operator && Peek().Text == "(") (args, kwargs) = ParseArguments();
        return new FilterCall(name, args, kwargs);
    }

    public List<FilterCall> ParseFilterChain(bool leadingPipe = true)
    {
        var filters = new List<FilterCall>();
        if (!leadingPipe && Peek().Kind != TokenKind.End) filters.Add(ParseFilterCall());
        while (Accept("|")) filters.Add(ParseFilterCall());
        return filters;
    }

    private (List<Expr>, List<(string, Expr)>) ParseArguments()
    {
        ExpectOperator("(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!Accept(")"))
        {
            if (Peek().Kind == TokenKind.Name && Peek(1).Kind == TokenKind.Operator && Peek(1).Text == "=")
            {
                var name = ExpectIdentifier();
                _pos++;
                kwargs.Add((name, ParseExpression()));
            }
            else args.Add(ParseExpression());
            if (!Accept(",")) { ExpectOperator(")"); break; }
        }
        return (args, kwargs);
    }

    private Expr ParsePostfix(Expr e)
    {
        while (true)
        {
            var t = Peek();
            if (t.Kind != TokenKind.Operator) return e;
            if (t.Text == ".")
            {
                _pos++;
                var n = Peek();
                if (n.Kind == TokenKind.Integer) { _pos++; e = new ItemExpr(e, new LiteralExpr(n.Value)); }
                else e = new AttributeExpr(e, ExpectIdentifier());
            }
            else if (t.Text == "[")
            {
                _pos++;
                Expr? a = null, b = null, c = null;
                bool slice = false;
                if (!(Peek().Kind == TokenKind.Operator && Peek().Text == ":")) a = ParseExpression();
                if (Accept(":"))
                {
                    slice = true;
                    if (!(Peek().Kind == TokenKind.Operator && Peek().Text is "]" or ":")) b = ParseExpression();
                    if (Accept(":") && !(Peek().Kind == TokenKind.Operator && Peek().Text == "]")) c = ParseExpression();
                }
                ExpectOperator("]");
                e = slice ? new SliceExpr(e, a, b, c) : new ItemExpr(e, a!);
            }
            else if (t.Text == "(")
            {
                var (args, kwargs) = ParseArguments();
                e = new CallExpr(e, args, kwargs);
            }
            else return e;
        }
    }

    private Expr ParsePrimary()
    {
        var t = Peek();
        switch (t.Kind)
        {
            case TokenKind.String:
            {
                _pos++;
                var s = (string)t.Value!;
                while (Peek().Kind == TokenKind.String) s += (string)_tokens[_pos++].Value!; // adjacent literals join
                return new LiteralExpr(s);
            }
            case TokenKind.Integer:
            case TokenKind.Float:
                _pos++;
                return new LiteralExpr(t.Value);
            case TokenKind.Name:
                _pos++;
                return t.Text switch
                {
                    "true" or "True" => new LiteralExpr(true),
                    "false" or "False" => new LiteralExpr(false),
                    "none" or "None" => new LiteralExpr(null),
                    _ => new NameExpr(t.Text),
                };
            case TokenKind.Operator when t.Text == "(":
            {
                _pos++;
                if (Accept(")")) return new ListExpr([], tuple: true);
                var e = ParseExpression();
                if (Peek().Kind == TokenKind.Operator && Peek().Text == ",")
                {
                    var items = new List<Expr> { e };
                    while (Accept(","))
                    {
                        if (Peek().Kind == TokenKind.Operator && Peek().Text == ")") break;
                        items.Add(ParseExpression());
                    }
                    e = new ListExpr(items, tuple: true);
                }
                ExpectOperator(")");
                return e;
            }
            case TokenKind.Operator when t.Text == "[":
            {
                _pos++;
                var items = new List<Expr>();
                while (!Accept("]"))
                {
                    items.Add(ParseExpression());
                    if (!Accept(",")) { ExpectOperator("]"); break; }
                }
                return new ListExpr(items);
            }
            case TokenKind.Operator when t.Text == "{":
            {
                _pos++;
                var items = new List<(Expr, Expr)>();
                while (!Accept("}"))
                {
                    var key = ParseExpression();
                    ExpectOperator(":");
                    items.Add((key, ParseExpression()));
                    if (!Accept(",")) { ExpectOperator("}"); break; }
                }
                return new DictExpr(items);
            }
            default:
                throw Error($"unexpected {t}");
        }
    }
}
