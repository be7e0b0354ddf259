using LlmTools.Templates;
using Xunit;
using Xunit.Abstractions;

namespace LlmTools.Engine.Tests;

/// <summary>The sandbox's limits leave real templates (../shared/templates with the conformance cases) a wide margin.</summary>
public class TemplateLimitsTests(ITestOutputHelper output)
{
    private static readonly DateTime Now = new(2025, 3, 7, 9, 5, 3);

    [SkippableFact]
    public void RealTemplatesStayFarBelowTheLimits()
    {
        var folder = TestFiles.SharedModels is { } models ? Path.GetFullPath(Path.Combine(models, "..", "templates")) : null;
        Skip.If(folder is null || !Directory.Exists(folder), "../shared/templates is absent (a fresh clone)");
        var cases = Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "ChatTemplates", "cases"), "*.json").Order(StringComparer.Ordinal).ToList();
        long maxSteps = 0;
        int maxNesting = 0, rendered = 0;
        string worst = "";
        foreach (var file in Directory.GetFiles(folder!, "*.jinja").Order(StringComparer.Ordinal))
        {
            var template = ChatTemplate.Parse(File.ReadAllText(file));
            foreach (var c in cases)
            {
                var (messages, agp, tools, variables) = ChatTemplateConformanceTests.LoadCase(c);
                // a long conversation: the case's messages 50 times over (system messages only where they were)
                var longer = Enumerable.Range(0, 50).SelectMany(i => messages.Where((m, j) => i == 0 || j > 0)).ToList();
                try
                {
                    var (_, steps, nesting) = template.RenderMeasured(longer, agp, variables, tools, Now);
                    rendered++;
                    if (steps > maxSteps) (maxSteps, worst) = (steps, $"{Path.GetFileName(file)} {Path.GetFileName(c)} ({longer.Count} messages)");
                    maxNesting = Math.Max(maxNesting, nesting);
                }
                catch (TemplateException)
                {
                    // the template refuses the case (as in jinja2): no figure
                }
            }
        }
        output.WriteLine($"{rendered} renders; most steps {maxSteps} ({worst}); deepest nesting {maxNesting}");
        Assert.True(rendered > 100);
        Assert.True(maxSteps * 20 < TemplateLimits.MaxSteps, $"{maxSteps} steps for {worst}");
        Assert.True(maxNesting * 4 < TemplateLimits.MaxNesting, $"nesting {maxNesting}");
    }
}
