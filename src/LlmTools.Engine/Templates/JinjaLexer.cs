using System.Globalization;
using System.Text;

namespace LlmTools.Templates;

/// <summary>A template error: raised by the template (raise_exception), or a syntax or runtime error in it.</summary>
public sealed class TemplateException : Exception
{
    public TemplateException(string message) : base(message) { }
    public TemplateException(string message, Exception? inner) : base(message, inner) { }

    /// <summary>The template line being rendered when the error happened (parse errors name theirs in the message).</summary>
    public int? Line { get; internal set; }
}

internal enum SegmentKind { Text, Expression, Statement }

/// <summary>A piece of the template: literal text, or the tokens of one {{ }} or {% %} tag.</summary>
internal sealed record Segment(SegmentKind Kind, string Text, List<Token> Tokens, int Line);

internal enum TokenKind { Name, Integer, Float, String, Operator, End }

internal readonly record struct Token(TokenKind Kind, string Text, object? Value = null)
{
    public bool Is(string op) => (Kind == TokenKind.Operator || Kind == TokenKind.Name) && Text == op;
    public override string ToString() => Kind == TokenKind.End ? "end of tag" : $"'{Text}'";
}

/// <summary>
/// Splits a template into text and tags as jinja2 does with transformers' settings: trim_blocks (the first newline
/// after a block tag is dropped), lstrip_blocks (whitespace before a block tag at the start of a line is dropped),
/// '-' and '+' whitespace control, and one trailing newline of the template dropped.
/// </summary>
internal static class JinjaLexer
{
    public static List<Segment> Lex(string source)
    {
        if (source.EndsWith('\n')) source = source[..^1];
        if (source.EndsWith('\r')) source = source[..^1];
        var segments = new List<Segment>();
        int pos = 0, line = 1;
        bool stripNextLeading = false;
        while (pos < source.Length)
        {
            int start = NextTag(source, pos, out var open);
            string text = start < 0 ? source[pos..] : source[pos..start];
            int textStart = pos;
            if (stripNextLeading) { text = text.TrimStart(); stripNextLeading = false; }
            if (start < 0)
            {
                if (text.Length > 0) segments.Add(new Segment(SegmentKind.Text, text, [], line));
                break;
            }
            char modifier = start + 2 < source.Length ? source[start + 2] : '\0';
            bool isBlock = open != "{{";
            if (modifier == '-') text = text.TrimEnd();
            else if (isBlock && modifier != '+')
            {
                // lstrip_blocks: only whitespace between the start of the line and the tag
                int nl = text.LastIndexOf('\n');
                bool lineStarting = nl >= 0 || textStart == 0 || source[textStart - 1] == '\n';
                if (lineStarting && text[(nl + 1)..].All(c => c is ' ' or '\t')) text = text[..(nl + 1)];
            }
            if (text.Length > 0) segments.Add(new Segment(SegmentKind.Text, text, [], line));
            line += CountLines(source, pos, start);
            int inner = start + 2 + (modifier is '-' or '+' ? 1 : 0);
            int end;
            bool rightStrip;
            if (open == "{#")
            {
                end = source.IndexOf("#}", inner, StringComparison.Ordinal);
                if (end < 0) throw new TemplateException($"line {line}: a comment is not closed ('#}}' missing)");
                rightStrip = source[end - 1] == '-';
                end += 2;
            }
            else
            {
                var tokens = Tokenize(source, ref inner, open == "{{" ? "}}" : "%}", line, out rightStrip);
                end = inner;
                string raw = source[start..end];
                if (open == "{%" && tokens.Count > 0 && tokens[0].Is("raw"))
                {
                    // {% raw %} ... {% endraw %}: the text between is literal
                    int endRaw = FindEndRaw(source, end, out int afterEndRaw, out bool rawRightStrip);
                    string body = source[end..endRaw];
                    segments.Add(new Segment(SegmentKind.Text, body, [], line));
                    line += CountLines(source, start, afterEndRaw);
                    pos = afterEndRaw;
                    stripNextLeading = rawRightStrip;
                    if (!rawRightStrip && pos < source.Length && source[pos] == '\n') pos++;
                    continue;
                }
                segments.Add(new Segment(open == "{{" ? SegmentKind.Expression : SegmentKind.Statement, raw, tokens, line));
            }
            line += CountLines(source, start, end);
            pos = end;
            if (rightStrip) stripNextLeading = true;
            else if (isBlock && pos < source.Length)
            {
                // trim_blocks: the first newline after a block tag
                if (source[pos] == '\n') { pos++; line++; }
                else if (source[pos] == '\r' && pos + 1 < source.Length && source[pos + 1] == '\n') { pos += 2; line++; }
            }
        }
        return segments;
    }

    private static int FindEndRaw(string source, int from, out int after, out bool rightStrip)
    {
        int i = from;
        while (true)
        {
            int s = source.IndexOf("{%", i, StringComparison.Ordinal);
            if (s < 0) throw new TemplateException("{% raw %} is not closed by {% endraw %}");
            int j = s + 2;
            if (j < source.Length && source[j] is '-' or '+') j++;
            while (j < source.Length && char.IsWhiteSpace(source[j])) j++;
            if (string.CompareOrdinal(source, j, "endraw", 0, 6) == 0)
            {
                int close = source.IndexOf("%}", j, StringComparison.Ordinal);
                rightStrip = source[close - 1] == '-';
                after = close + 2;
                return source[s + 2] == '-' ? source[from..s].TrimEnd().Length + from : s;
            }
            i = s + 2;
        }
    }

    private static int CountLines(string s, int from, int to)
    {
        int n = 0;
        for (int i = from; i < to && i < s.Length; i++) if (s[i] == '\n') n++;
        return n;
    }

    private static int NextTag(string s, int from, out string open)
    {
        for (int i = s.IndexOf('{', from); i >= 0 && i + 1 < s.Length; i = s.IndexOf('{', i + 1))
        {
            char c = s[i + 1];
            if (c is '{' or '%' or '#')
            {
                open = "{" + c;
                return i;
            }
        }
        open = "";
        return -1;
    }

    private static readonly string[] Operators =
        ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", ";"];

    private static List<Token> Tokenize(string s, ref int pos, string close, int line, out bool rightStrip)
    {
        var tokens = new List<Token>();
        while (true)
        {
            while (pos < s.Length && char.IsWhiteSpace(s[pos])) pos++;
            if (pos >= s.Length) throw new TemplateException($"line {line}: a tag is not closed ('{close}' missing)");
            if (s[pos] == '-' && string.CompareOrdinal(s, pos + 1, close, 0, 2) == 0)
            {
                rightStrip = true;
                pos += 3;
                return tokens;
            }
            if (s[pos] == '+' && string.CompareOrdinal(s, pos + 1, close, 0, 2) == 0)
            {
                rightStrip = false;
                pos += 3;
                return tokens;
            }
            if (string.CompareOrdinal(s, pos, close, 0, 2) == 0)
            {
                rightStrip = false;
                pos += 2;
                return tokens;
            }
            char c = s[pos];
            if (char.IsLetter(c) || c == '_')
            {
                int b = pos;
                while (pos < s.Length && (char.IsLetterOrDigit(s[pos]) || s[pos] == '_')) pos++;
                tokens.Add(new Token(TokenKind.Name, s[b..pos]));
            }
            else if (char.IsDigit(c))
            {
                int b = pos;
                while (pos < s.Length && (char.IsDigit(s[pos]) || s[pos] == '_')) pos++;
                bool isFloat = false;
                if (pos + 1 < s.Length && s[pos] == '.' && char.IsDigit(s[pos + 1]))
                {
                    isFloat = true;
                    pos++;
                    while (pos < s.Length && char.IsDigit(s[pos])) pos++;
                }
                if (pos < s.Length && s[pos] is 'e' or 'E')
                {
                    isFloat = true;
                    pos++;
                    if (pos < s.Length && s[pos] is '+' or '-') pos++;
                    while (pos < s.Length && char.IsDigit(s[pos])) pos++;
                }
                var text = s[b..pos].Replace("_", "");
                tokens.Add(isFloat
                    ? new Token(TokenKind.Float, text, double.Parse(text, CultureInfo.InvariantCulture))
                    : new Token(TokenKind.Integer, text, long.Parse(text, CultureInfo.InvariantCulture)));
            }
            else if (c is '\'' or '"')
            {
                tokens.Add(new Token(TokenKind.String, "string", ReadString(s, ref pos, line)));
            }
            else
            {
                int at = pos;
                var op = Operators.FirstOrDefault(o => string.CompareOrdinal(s, at, o, 0, o.Length) == 0)
                    ?? throw new TemplateException($"line {line}: unexpected character '{c}'");
                tokens.Add(new Token(TokenKind.Operator, op));
                pos += op.Length;
            }
        }
    }

    private static string ReadString(string s, ref int pos, int line)
    {
        char quote = s[pos++];
        var sb = new StringBuilder();
        while (true)
        {
            if (pos >= s.Length) throw new TemplateException($"line {line}: a string is not closed");
            char c = s[pos++];
            if (c == quote) return sb.ToString();
            if (c != '\\') { sb.Append(c); continue; }
            char e = s[pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '0': sb.Append('\0'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case 'a': sb.Append('\a'); break;
                case '\n': break;
                case 'x':
                    sb.Append((char)Convert.ToInt32(s.Substring(pos, 2), 16));
                    pos += 2;
                    break;
                case 'u':
                    sb.Append((char)Convert.ToInt32(s.Substring(pos, 4), 16));
                    pos += 4;
                    break;
                case 'U':
                    sb.Append(char.ConvertFromUtf32(Convert.ToInt32(s.Substring(pos, 8), 16)));
                    pos += 8;
                    break;
                default: sb.Append('\\').Append(e); break; // Python keeps unknown escapes
            }
        }
    }
}
