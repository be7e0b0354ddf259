using System.Globalization;
using System.Text;

namespace LlmTools.Engine.Grammar;

/// <summary>
/// A GBNF grammar checked in C# before llama.cpp sees it. llama.cpp's parser reports most errors by returning null,
/// but a left-recursive grammar it does not detect (its check ignores rules that are empty only through other rules),
/// or nesting deep enough to overflow its recursive parser, take the process down; and LLamaSharp adds a null grammar
/// sampler to a chain unchecked. So every grammar is parsed here first with llama.cpp's syntax (llama-grammar.cpp):
/// rules <c>name ::= alternatives</c>, literals with <c>\x \u \U \t \r \n \\ \" \[ \]</c> escapes, character classes,
/// <c>.</c>, groups, <c>* + ? {m} {m,} {m,n}</c>, <c>#</c> comments. Anything else is <c>GrammarInvalid</c>.
/// </summary>
public sealed class GbnfGrammar
{
    /// <summary>llama.cpp refuses repetition counts above this (MAX_REPETITION_THRESHOLD).</summary>
    public const int MaxRepetition = 2000;
    /// <summary>Nesting of groups beyond this is refused: llama.cpp's parser recurses once per level.</summary>
    public const int MaxNesting = 200;

    internal abstract record Node;
    internal sealed record Literal(string Text) : Node;
    internal sealed record CharClass(bool Negated) : Node;
    internal sealed record AnyChar : Node;
    internal sealed record RuleRef(string Name, int Offset) : Node;
    internal sealed record Group(List<List<Node>> Alternatives) : Node;
    internal sealed record Repeat(Node Item, int Min, int Max) : Node; // Max -1: unbounded

    private readonly Dictionary<string, List<List<Node>>> _rules;

    private GbnfGrammar(string text, Dictionary<string, List<List<Node>>> rules)
    {
        Text = text;
        _rules = rules;
    }

    /// <summary>The grammar text as given.</summary>
    public string Text { get; }

    /// <summary>Rule names, in order of definition.</summary>
    public IReadOnlyCollection<string> RuleNames => _rules.Keys;

    /// <summary>Parses and checks <paramref name="text"/>; throws <see cref="LlmException"/> GrammarInvalid naming line and column.</summary>
    public static GbnfGrammar Parse(string text, string root = "root")
    {
        ArgumentNullException.ThrowIfNull(text);
        var p = new Parser(text);
        var rules = p.ParseRules();
        if (rules.Count == 0) throw Invalid("the grammar has no rules");
        if (!rules.ContainsKey(root)) throw Invalid($"the grammar has no '{root}' rule (generation starts there)");
        foreach (var (name, alts) in rules)
            foreach (var r in Refs(alts))
                if (!rules.ContainsKey(r.Name))
                    throw Invalid($"rule '{name}' refers to '{r.Name}', which is not defined ({p.Where(r.Offset)})");
        var g = new GbnfGrammar(text, rules);
        g.CheckLeftRecursion();
        return g;
    }

    internal static LlmException Invalid(string why) =>
        new("GrammarInvalid", LlmErrorKind.InvalidArgument, $"The GBNF grammar is invalid: {why}.");

    private static IEnumerable<RuleRef> Refs(IEnumerable<List<Node>> alts)
    {
        foreach (var seq in alts)
            foreach (var n in seq)
                foreach (var r in Refs(n))
                    yield return r;
    }

    private static IEnumerable<RuleRef> Refs(Node n) => n switch
    {
        RuleRef r => [r],
        Group g => Refs(g.Alternatives),
        Repeat rep => Refs(rep.Item),
        _ => [],
    };

    // ---- left recursion: llama.cpp expands a rule by recursing into its leftmost references, so a rule that can reach
    // itself before consuming a character never terminates. Nullability is computed properly (to a fixed point). ----

    private void CheckLeftRecursion()
    {
        var nullable = new HashSet<string>();
        bool changed = true;
        while (changed)
        {
            changed = false;
            foreach (var (name, alts) in _rules)
                if (!nullable.Contains(name) && alts.Any(s => SeqNullable(s, nullable)))
                    changed = nullable.Add(name) | changed;
        }
        // Unbounded repetition of something that can match nothing is left-recursive once llama.cpp expands it.
        foreach (var (name, alts) in _rules)
            foreach (var seq in alts)
                foreach (var n in seq)
                    CheckRepeats(name, n, nullable);

        var first = _rules.ToDictionary(kv => kv.Key, kv =>
        {
            var set = new HashSet<string>();
            foreach (var seq in kv.Value) SeqFirst(seq, nullable, set);
            return set;
        });
        var state = new Dictionary<string, int>(); // 1 in progress, 2 done
        foreach (var name in _rules.Keys) Visit(name, []);

        void Visit(string name, List<string> path)
        {
            if (state.TryGetValue(name, out var s))
            {
                if (s == 1)
                {
                    int at = path.IndexOf(name);
                    throw Invalid($"rule '{name}' is left-recursive ({string.Join(" -> ", path.Skip(at).Append(name))} before reading a character); " +
                        "rewrite it right-recursively or with * / +");
                }
                return;
            }
            state[name] = 1;
            path.Add(name);
            foreach (var next in first[name]) Visit(next, path);
            path.RemoveAt(path.Count - 1);
            state[name] = 2;
        }
    }

    private static void CheckRepeats(string rule, Node n, HashSet<string> nullable)
    {
        switch (n)
        {
            case Repeat r:
                if (r.Max < 0 && Nullable(r.Item, nullable))
                    throw Invalid($"in rule '{rule}', an unbounded repetition (* + {{m,}}) applies to something that can match nothing");
                CheckRepeats(rule, r.Item, nullable);
                break;
            case Group g:
                foreach (var seq in g.Alternatives) foreach (var x in seq) CheckRepeats(rule, x, nullable);
                break;
        }
    }

    private static bool SeqNullable(List<Node> seq, HashSet<string> nullable) => seq.All(n => Nullable(n, nullable));

    private static bool Nullable(Node n, HashSet<string> nullable) => n switch
    {
        Literal l => l.Text.Length == 0,
        RuleRef r => nullable.Contains(r.Name),
        Group g => g.Alternatives.Any(s => SeqNullable(s, nullable)),
        Repeat r => r.Min == 0 || Nullable(r.Item, nullable),
        _ => false,
    };

    private static void SeqFirst(List<Node> seq, HashSet<string> nullable, HashSet<string> into)
    {
        foreach (var n in seq)
        {
            First(n, nullable, into);
            if (!Nullable(n, nullable)) return;
        }
    }

    private static void First(Node n, HashSet<string> nullable, HashSet<string> into)
    {
        switch (n)
        {
            case RuleRef r: into.Add(r.Name); break;
            case Group g: foreach (var s in g.Alternatives) SeqFirst(s, nullable, into); break;
            case Repeat r: First(r.Item, nullable, into); break;
        }
    }

    // ---- the parser, following llama-grammar.cpp's syntax ----

    private sealed class Parser(string src)
    {
        private int _pos;
        private int _depth;
        private readonly Dictionary<string, List<List<Node>>> _rules = new(StringComparer.Ordinal);

        public string Where(int offset)
        {
            int line = 1, col = 1;
            for (int i = 0; i < offset && i < src.Length; i++)
            {
                if (src[i] == '\n') { line++; col = 1; } else col++;
            }
            return $"line {line}, column {col}";
        }

        private LlmException Error(string what) => Invalid($"{what} at {Where(_pos)}");

        private char Cur => _pos < src.Length ? src[_pos] : '\0';
        private char At(int k) => _pos + k < src.Length ? src[_pos + k] : '\0';

        private static bool IsWordChar(char c) => c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or >= '0' and <= '9' or '-';

        public Dictionary<string, List<List<Node>>> ParseRules()
        {
            if (src.Contains('\0')) { _pos = src.IndexOf('\0'); throw Error("a NUL character"); }
            SkipSpace(true);
            while (_pos < src.Length)
            {
                ParseRule();
            }
            return _rules;
        }

        private void SkipSpace(bool newlineOk)
        {
            while (_pos < src.Length)
            {
                char c = src[_pos];
                if (c is ' ' or '\t' || (newlineOk && c is '\r' or '\n')) _pos++;
                else if (c == '#')
                {
                    while (_pos < src.Length && src[_pos] is not '\r' and not '\n') _pos++;
                }
                else break;
            }
        }

        private string ParseName()
        {
            int start = _pos;
            while (IsWordChar(Cur)) _pos++;
            if (_pos == start) throw Error("expecting a rule name");
            return src[start.._pos];
        }

        private void ParseRule()
        {
            string name = ParseName();
            SkipSpace(false);
            if (!(Cur == ':' && At(1) == ':' && At(2) == '=')) throw Error("expecting ::=");
            _pos += 3;
            SkipSpace(true);
            var alts = ParseAlternatives(false);
            if (Cur == '\r') _pos += At(1) == '\n' ? 2 : 1;
            else if (Cur == '\n') _pos++;
            else if (_pos < src.Length) throw Error($"expecting a newline or the end, found '{Cur}'");
            SkipSpace(true);
            // llama.cpp lets a later definition replace an earlier one; so does this.
            _rules[name] = alts;
        }

        private List<List<Node>> ParseAlternatives(bool nested)
        {
            if (++_depth > MaxNesting) throw Error($"groups nested more than {MaxNesting} deep");
            var alts = new List<List<Node>> { ParseSequence(nested) };
            while (Cur == '|')
            {
                _pos++;
                SkipSpace(true);
                alts.Add(ParseSequence(nested));
            }
            _depth--;
            return alts;
        }

        private List<Node> ParseSequence(bool nested)
        {
            var seq = new List<Node>();
            while (_pos < src.Length)
            {
                char c = Cur;
                if (c == '"')
                {
                    _pos++;
                    var sb = new StringBuilder();
                    while (Cur != '"')
                    {
                        if (_pos >= src.Length) throw Error("unexpected end of input in a literal");
                        sb.Append(ParseChar());
                    }
                    _pos++;
                    seq.Add(new Literal(sb.ToString()));
                    SkipSpace(nested);
                }
                else if (c == '[')
                {
                    _pos++;
                    bool negated = false;
                    if (Cur == '^') { negated = true; _pos++; }
                    while (Cur != ']')
                    {
                        if (_pos >= src.Length) throw Error("unexpected end of input in a character class");
                        ParseChar();
                        if (Cur == '-' && At(1) != ']')
                        {
                            _pos++;
                            if (_pos >= src.Length) throw Error("unexpected end of input in a character class");
                            ParseChar();
                        }
                    }
                    _pos++;
                    seq.Add(new CharClass(negated));
                    SkipSpace(nested);
                }
                else if (IsWordChar(c))
                {
                    int at = _pos;
                    seq.Add(new RuleRef(ParseName(), at));
                    SkipSpace(nested);
                }
                else if (c == '(')
                {
                    _pos++;
                    SkipSpace(true);
                    var alts = ParseAlternatives(true);
                    if (Cur != ')') throw Error("expecting ')'");
                    _pos++;
                    seq.Add(new Group(alts));
                    SkipSpace(nested);
                }
                else if (c == '.')
                {
                    _pos++;
                    seq.Add(new AnyChar());
                    SkipSpace(nested);
                }
                else if (c is '*' or '+' or '?')
                {
                    if (seq.Count == 0) throw Error($"expecting an item before '{c}'");
                    _pos++;
                    seq[^1] = new Repeat(seq[^1], c == '+' ? 1 : 0, c == '?' ? 1 : -1);
                    SkipSpace(nested);
                }
                else if (c == '{')
                {
                    if (seq.Count == 0) throw Error("expecting an item before '{'");
                    _pos++;
                    SkipSpace(nested);
                    int min = ParseInt(), max;
                    SkipSpace(nested);
                    if (Cur == '}') max = min;
                    else if (Cur == ',')
                    {
                        _pos++;
                        SkipSpace(nested);
                        max = char.IsAsciiDigit(Cur) ? ParseInt() : -1;
                        SkipSpace(nested);
                    }
                    else throw Error("expecting ',' or '}'");
                    if (Cur != '}') throw Error("expecting '}'");
                    _pos++;
                    if (min > MaxRepetition || max > MaxRepetition)
                        throw Error($"a repetition count above {MaxRepetition} (llama.cpp's limit)");
                    if (max >= 0 && max < min) throw Error($"a repetition {{{min},{max}}} whose maximum is below its minimum");
                    seq[^1] = new Repeat(seq[^1], min, max);
                    SkipSpace(nested);
                }
                else break;
            }
            return seq;
        }

        private int ParseInt()
        {
            int start = _pos;
            long v = 0;
            while (char.IsAsciiDigit(Cur))
            {
                v = Math.Min(v * 10 + (Cur - '0'), int.MaxValue);
                _pos++;
            }
            if (_pos == start) throw Error("expecting a number");
            return (int)v;
        }

        /// <summary>One character of a literal or class; returns it as text (a surrogate pair for U+10000 and above).</summary>
        private string ParseChar()
        {
            if (Cur == '\\')
            {
                char e = At(1);
                _pos += 2;
                switch (e)
                {
                    case 'x': return Hex(2);
                    case 'u': return Hex(4);
                    case 'U': return Hex(8);
                    case 't': return "\t";
                    case 'r': return "\r";
                    case 'n': return "\n";
                    case '\\' or '"' or '[' or ']': return e.ToString();
                    default:
                        _pos -= 2;
                        throw Error(e == '\0' ? "unexpected end of input after '\\'" : $"unknown escape '\\{e}'");
                }
            }
            if (char.IsHighSurrogate(Cur) && char.IsLowSurrogate(At(1)))
            {
                _pos += 2;
                return src.Substring(_pos - 2, 2);
            }
            if (char.IsSurrogate(Cur)) throw Error("an unpaired UTF-16 surrogate");
            return src[_pos++].ToString();
        }

        private string Hex(int digits)
        {
            int start = _pos;
            while (_pos - start < digits && char.IsAsciiHexDigit(Cur)) _pos++;
            if (_pos - start != digits) throw Error($"expecting {digits} hex digits");
            uint v = uint.Parse(src.AsSpan(start, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            return v <= 0x10FFFF && v is not (>= 0xD800 and <= 0xDFFF) ? char.ConvertFromUtf32((int)v) : "\uFFFD";
        }
    }
}
