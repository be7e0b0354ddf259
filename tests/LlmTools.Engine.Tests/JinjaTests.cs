using System.Text.Json;
using LlmTools.Templates;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// The template engine's features one by one, against outputs that Python's jinja2 produced with transformers'
/// settings (ChatTemplates/make-jinja-cases.py wrote ChatTemplates/jinja-cases.json, outside the suite).
/// These run in a fresh clone too, where ../shared/templates is absent.
/// </summary>
public class JinjaTests
{
    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var c in Load().EnumerateArray()) data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    private static JsonElement Load() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "ChatTemplates", "jinja-cases.json"))).RootElement;

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersAsJinja2(string name)
    {
        var c = Load().EnumerateArray().Single(x => x.GetProperty("name").GetString() == name);
        var variables = c.GetProperty("context").EnumerateObject().ToDictionary(p => p.Name, p => Py.FromJson(p.Value));
        string? output = null, error = null;
        try
        {
            output = ChatTemplate.Parse(c.GetProperty("template").GetString()!).Render([], false, variables);
        }
        catch (TemplateException e)
        {
            error = e.Message;
        }
        if (c.TryGetProperty("error", out var expectedError))
        {
            Assert.Null(output);
            // Python prefixes the exception type; the message itself must match.
            Assert.EndsWith(error!, expectedError.GetString()!);
        }
        else
        {
            Assert.Null(error);
            Assert.Equal(c.GetProperty("output").GetString(), output);
        }
    }

    [Fact]
    public void SyntaxErrorsNameTheLine()
    {
        var e = Assert.Throws<TemplateException>(() => ChatTemplate.Parse("line one\n{% if x %}\n{{ 1 + }}\n{% endif %}"));
        Assert.StartsWith("line 3:", e.Message);
        Assert.Throws<TemplateException>(() => ChatTemplate.Parse("{% for x in y %}no end"));
        Assert.Throws<TemplateException>(() => ChatTemplate.Parse("{% unknowntag %}"));
    }
}
