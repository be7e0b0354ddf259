using System.Collections.Concurrent;
using System.Text;

namespace LlmTools;

/// <summary>
/// Reads Start-LlmChat's lines at the keyboard with a small line editor of its own: Left, Right, Home, End (Ctrl+A,
/// Ctrl+E), Backspace, Delete, Up and Down through this chat's earlier lines, Ctrl+C clears the line, Ctrl+D on an
/// empty line ends the chat. Keys typed while a reply is generated are kept (type-ahead) and read first.
/// </summary>
/// <remarks>
/// Not PSReadLine, even where it is loaded: its Enter parses the line as PowerShell and, on incomplete input, inserts
/// a newline instead of accepting (PSReadLine's AcceptLineImpl), so a message such as "I don't know" or a """ block
/// could not be sent; and its history would be the user's shell history, not this chat's.
/// </remarks>
internal sealed class ConsoleLineReader
{
    private readonly ConcurrentQueue<ConsoleKeyInfo> _typeAhead = new();
    private readonly List<string> _history = [];

    /// <summary>Keys read while a reply ran (other than Ctrl+C): the start of the next line.</summary>
    public void KeepTypedAhead(ConsoleKeyInfo key) => _typeAhead.Enqueue(key);

    /// <summary>One line, or null at the end of input (Ctrl+D on an empty line).</summary>
    public string? ReadLine(string prompt)
    {
        Console.Out.Write(prompt);
        Console.Out.Flush();
        var line = Edit(prompt);
        if (!string.IsNullOrWhiteSpace(line) && (_history.Count == 0 || _history[^1] != line)) _history.Add(line);
        return line;
    }

    private ConsoleKeyInfo NextKey() => _typeAhead.TryDequeue(out var k) ? k : Console.ReadKey(intercept: true);

    private string? Edit(string prompt)
    {
        var text = new StringBuilder();
        int cursor = 0;
        int recalled = _history.Count;
        string draft = "";
        bool treatCtrlC = false;
        try { treatCtrlC = Console.TreatControlCAsInput; Console.TreatControlCAsInput = true; } catch (IOException) { }
        try
        {
            while (true)
            {
                var key = NextKey();
                bool ctrl = key.Modifiers.HasFlag(ConsoleModifiers.Control);
                switch (key.Key)
                {
                    case ConsoleKey.Enter:
                        Console.Out.WriteLine();
                        return text.ToString();
                    case ConsoleKey.C when ctrl:
                        Console.Out.WriteLine("^C");
                        text.Clear();
                        cursor = 0;
                        Console.Out.Write(prompt);
                        continue;
                    case ConsoleKey.D when ctrl:
                        if (text.Length == 0)
                        {
                            Console.Out.WriteLine();
                            return null;
                        }
                        if (cursor < text.Length) text.Remove(cursor, 1);
                        break;
                    case ConsoleKey.Backspace:
                        if (cursor > 0) text.Remove(--cursor, 1);
                        break;
                    case ConsoleKey.Delete:
                        if (cursor < text.Length) text.Remove(cursor, 1);
                        break;
                    case ConsoleKey.LeftArrow: cursor = Math.Max(0, cursor - 1); break;
                    case ConsoleKey.RightArrow: cursor = Math.Min(text.Length, cursor + 1); break;
                    case ConsoleKey.Home: cursor = 0; break;
                    case ConsoleKey.End: cursor = text.Length; break;
                    case ConsoleKey.A when ctrl: cursor = 0; break;
                    case ConsoleKey.E when ctrl: cursor = text.Length; break;
                    case ConsoleKey.UpArrow or ConsoleKey.DownArrow:
                        if (recalled == _history.Count) draft = text.ToString();
                        recalled = Math.Clamp(recalled + (key.Key == ConsoleKey.UpArrow ? -1 : 1), 0, _history.Count);
                        text.Clear().Append(recalled == _history.Count ? draft : _history[recalled]);
                        cursor = text.Length;
                        break;
                    default:
                        if (key.KeyChar == '\r' || key.KeyChar == '\n')
                        {
                            Console.Out.WriteLine();
                            return text.ToString();
                        }
                        if (key.KeyChar >= ' ' && !ctrl) text.Insert(cursor++, key.KeyChar);
                        break;
                }
                // Redraw the line: back to its start, the text, clear what is left, cursor in place.
                Console.Out.Write("\r" + prompt + text + "\x1b[K");
                if (text.Length > cursor) Console.Out.Write($"\x1b[{text.Length - cursor}D");
                Console.Out.Flush();
            }
        }
        finally
        {
            try { Console.TreatControlCAsInput = treatCtrlC; } catch (IOException) { }
        }
    }
}
