using System.Text;
using System.Text.Json;
using LlmTools.Templates;
using Xunit;
using Xunit.Abstractions;

namespace LlmTools.Engine.Tests;

/// <summary>
/// The real chat templates of ../shared/templates rendered byte for byte as transformers renders them (jinja2).
/// Expected outputs in ChatTemplates/expected were produced outside the suite by the reference renderer
/// (shared/tools/chat-template-reference/render.py, jinja2 3.1.6, --now 2025-03-07T09:05:03).
/// </summary>
public class ChatTemplateConformanceTests(ITestOutputHelper output)
{
    private static readonly DateTime Now = new(2025, 3, 7, 9, 5, 3);
    private static readonly string Folder = Path.Combine(AppContext.BaseDirectory, "ChatTemplates");

    private static string? TemplatesFolder =>
        TestFiles.SharedModels is { } models && Directory.Exists(Path.Combine(models, "..", "templates"))
            ? Path.GetFullPath(Path.Combine(models, "..", "templates")) : null;

    public static TheoryData<string> Templates()
    {
        var data = new TheoryData<string>();
        foreach (var dir in Directory.GetDirectories(Path.Combine(Folder, "expected")).Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(dir));
        return data;
    }

    internal static (List<object?> Messages, bool AddGenerationPrompt, object? Tools, Dictionary<string, object?> Variables) LoadCase(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        var messages = root.GetProperty("messages").EnumerateArray().Select(Py.FromJson).ToList();
        bool agp = root.TryGetProperty("add_generation_prompt", out var g) && g.GetBoolean();
        object? tools = root.TryGetProperty("tools", out var t) ? Py.FromJson(t) : null;
        var variables = root.EnumerateObject()
            .Where(p => p.Name is not ("messages" or "add_generation_prompt" or "tools" or "documents"))
            .ToDictionary(p => p.Name, p => Py.FromJson(p.Value));
        return (messages, agp, tools, variables);
    }

    [SkippableTheory]
    [MemberData(nameof(Templates))]
    public void RendersExactlyAsTransformers(string template)
    {
        Skip.If(TemplatesFolder is null, "../shared/templates is absent (a fresh clone)");
        var source = File.ReadAllText(Path.Combine(TemplatesFolder!, template + ".jinja"));
        var failures = new List<string>();
        ChatTemplate? parsed = null;
        string? parseError = null;
        try { parsed = ChatTemplate.Parse(source); }
        catch (TemplateException e) { parseError = e.Message; }
        foreach (var caseFile in Directory.GetFiles(Path.Combine(Folder, "cases"), "*.json").Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileNameWithoutExtension(caseFile);
            var expectedText = Path.Combine(Folder, "expected", template, name + ".txt");
            var expectedError = Path.Combine(Folder, "expected", template, name + ".err");
            var (messages, agp, tools, variables) = LoadCase(caseFile);
            string? actual = null, error = parseError;
            if (parsed is not null)
            {
                try { actual = parsed.Render(messages, agp, variables, tools, now: Now); }
                catch (TemplateException e) { error = e.Message; }
            }
            if (File.Exists(expectedError))
            {
                var reference = File.ReadAllText(expectedError).Trim().Replace("TemplateError: ", "");
                if (error is null) failures.Add($"{name}: expected the error '{reference}', got output");
                // The template's own raise_exception message must be the same; Python's internal errors only need to be errors.
                else if (!reference.Contains("Error: ") && reference != error) failures.Add($"{name}: expected error '{reference}', got '{error}'");
                continue;
            }
            var expected = File.ReadAllText(expectedText, Encoding.UTF8);
            if (error is not null) failures.Add($"{name}: error '{error}'");
            else if (actual != expected) failures.Add($"{name}: differs at {FirstDifference(expected, actual!)}");
        }
        foreach (var f in failures) output.WriteLine(f);
        Assert.Empty(failures);
    }

    private static string FirstDifference(string expected, string actual)
    {
        int i = 0;
        while (i < expected.Length && i < actual.Length && expected[i] == actual[i]) i++;
        string Around(string s) => JsonSerializer.Serialize(s.Substring(Math.Max(0, i - 30), Math.Min(s.Length - Math.Max(0, i - 30), 60)));
        return $"char {i}: expected {Around(expected)} got {Around(actual)}";
    }
}
