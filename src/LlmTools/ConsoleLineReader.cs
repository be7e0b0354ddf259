using System.Collections.Concurrent;
using System.Management.Automation;
using System.Text;

namespace LlmTools;

/// <summary>
/// Reads Start-LlmChat's lines at the keyboard. Keys typed while a reply is generated are kept (type-ahead) and read
/// first; Up and Down go through this chat's earlier lines. PSReadLine reads the line where it is loaded and nothing
/// was typed ahead (its history swapped for this chat's while the chat runs, and put back after); otherwise a small
/// editor of its own does (Left, Right, Home, End, Backspace, Delete, Up, Down; Ctrl+C clears the line, Ctrl+D on an
/// empty line ends the chat).
/// </summary>
internal sealed class ConsoleLineReader
{
    private readonly ConcurrentQueue<ConsoleKeyInfo> _typeAhead = new();
    private readonly List<string> _history = [];
    private readonly PSCmdlet _cmdlet;
    private bool _usePsReadLine;
    private object[]? _savedHistory;
    private object? _savedStyle;

    public ConsoleLineReader(PSCmdlet cmdlet)
    {
        _cmdlet = cmdlet;
        // PSReadLine's history becomes this chat's: nothing the chat reads is saved to the user's history file.
        if (cmdlet.Host.Name != "ConsoleHost" || PsReadLine.Type is null) return;
        try
        {
            var items = (Array)PsReadLine.Call("GetHistoryItems")!;
            _savedHistory = items.Cast<object>().Select(i => (object)(i.GetType().GetProperty("CommandLine")?.GetValue(i) as string ?? "")).ToArray();
            var options = PsReadLine.Call("GetOptions")!;
            var style = options.GetType().GetProperty("HistorySaveStyle")!;
            _savedStyle = style.GetValue(options);
            style.SetValue(options, Enum.Parse(style.PropertyType, "SaveNothing"));
            PsReadLine.Call("ClearHistory", null, null);
            _usePsReadLine = true;
        }
        catch (Exception e) when (e is System.Reflection.TargetInvocationException or InvalidCastException or ArgumentException
                                       or NullReferenceException or MissingMethodException)
        {
            _usePsReadLine = false;
        }
    }

    /// <summary>PSReadLine's public static API, by reflection: the module references no PSReadLine, which may be absent.</summary>
    private static class PsReadLine
    {
        public static readonly Type? Type = AppDomain.CurrentDomain.GetAssemblies()
            .Where(a => a.GetName().Name == "Microsoft.PowerShell.PSReadLine2" || a.GetName().Name == "Microsoft.PowerShell.PSReadLine")
            .Select(a => a.GetType("Microsoft.PowerShell.PSConsoleReadLine")).FirstOrDefault(t => t is not null);

        public static object? Call(string name, params object?[] args) =>
            Type!.GetMethods(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
                .First(m => m.Name == name && m.GetParameters().Length == args.Length).Invoke(null, args);
    }

    /// <summary>Keys read while a reply ran (other than Ctrl+C): the start of the next line.</summary>
    public void KeepTypedAhead(ConsoleKeyInfo key) => _typeAhead.Enqueue(key);

    /// <summary>One line, or null at the end of input (Ctrl+D on an empty line).</summary>
    public string? ReadLine(string prompt)
    {
        Console.Out.Write(prompt);
        Console.Out.Flush();
        string? line = null;
        bool read = false;
        // Keys already typed go to the editor below: PSReadLine asks the terminal where the cursor is when it starts,
        // and keys waiting in the input then can be lost.
        try
        {
            while (Console.KeyAvailable) _typeAhead.Enqueue(Console.ReadKey(intercept: true));
        }
        catch (InvalidOperationException) { }
        if (_usePsReadLine && _typeAhead.IsEmpty)
        {
            try
            {
                var result = _cmdlet.InvokeCommand.InvokeScript(
                    "[Microsoft.PowerShell.PSConsoleReadLine]::ReadLine($Host.Runspace, $ExecutionContext, $null)");
                line = result.Count > 0 ? result[0]?.BaseObject as string ?? "" : "";
                read = true;
            }
            catch (RuntimeException)
            {
                _usePsReadLine = false; // not a terminal PSReadLine can drive: the editor below from now on
            }
        }
        if (!read)
        {
            line = Edit(prompt);
            if (_usePsReadLine && !string.IsNullOrWhiteSpace(line))
                try { PsReadLine.Call("AddToHistory", line); }
                catch (System.Reflection.TargetInvocationException) { }
        }
        if (!string.IsNullOrWhiteSpace(line) && (_history.Count == 0 || _history[^1] != line)) _history.Add(line);
        return line;
    }

    /// <summary>Puts the user's PSReadLine history and save style back (by reflection: no pipeline needed, so it works while the pipeline stops).</summary>
    public void Restore()
    {
        if (_savedStyle is null) return;
        try
        {
            PsReadLine.Call("ClearHistory", null, null);
            foreach (var line in _savedHistory ?? []) PsReadLine.Call("AddToHistory", line);
            var options = PsReadLine.Call("GetOptions")!;
            options.GetType().GetProperty("HistorySaveStyle")!.SetValue(options, _savedStyle);
        }
        catch (Exception e) when (e is System.Reflection.TargetInvocationException or ArgumentException or NullReferenceException) { }
        _savedStyle = null;
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
