using System.Text;
using System.Text.Json.Nodes;
using Json.Schema;
using LlmTools.Engine.Grammar;
using LLama.Native;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// Schemas converted to GBNF and generated with real llama.cpp (the suite's tiny model, and stories260K when
/// ../shared exists), several seeds each: every output parses and is valid against its schema by JsonSchema.Net.
/// </summary>
public class GrammarGenerationTests
{
    public sealed record Product(string Name, int Count, double Price, bool InStock, Color Shade, List<string> Tags, Size? Box, int? Rank);
    public sealed record Size(int Width, int Height);
    public enum Color { Red, Green, Blue }

    /// <summary>The corpus: name, schema. Strings mostly carry maxLength so a random-weights model finishes in a few tokens.</summary>
    public static readonly (string Name, string Schema)[] Corpus =
    [
        ("string-max", """{"type":"string","maxLength":12}"""),
        ("string-min-max", """{"type":"string","minLength":2,"maxLength":5}"""),
        ("integer", """{"type":"integer"}"""),
        ("number", """{"type":"number"}"""),
        ("boolean", """{"type":"boolean"}"""),
        ("null", """{"type":"null"}"""),
        ("enum-strings", """{"enum":["red","green","blue"]}"""),
        ("enum-mixed", """{"enum":["a",1,null,true,{"k":[2]}]}"""),
        ("const-object", """{"const":{"x":[1,"two"],"y":null}}"""),
        ("const-escapes", """{"const":"quote \" back \\ nl \n tab \t"}"""),
        ("int-range", """{"type":"integer","minimum":-15,"maximum":342}"""),
        ("int-exclusive", """{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10}"""),
        ("int-min-only", """{"type":"integer","minimum":1000}"""),
        ("int-max-only-negative", """{"type":"integer","maximum":-7}"""),
        ("int-wide", """{"type":"integer","minimum":-1000000,"maximum":99999999999}"""),
        ("pattern-phone", """{"type":"string","pattern":"^[0-9]{3}-[0-9]{4}$"}"""),
        ("pattern-groups", """{"type":"string","pattern":"^(ab|cd){1,3}x?[A-Z]\\d{2}$"}"""),
        ("pattern-classes", """{"type":"string","pattern":"^[^a-z\"]{1,3}\\.[\\w-]{2}(?:\\s|_)$"}"""),
        ("format-date", """{"type":"string","format":"date"}"""),
        ("format-time", """{"type":"string","format":"time"}"""),
        ("format-date-time", """{"type":"string","format":"date-time"}"""),
        ("format-uuid", """{"type":"string","format":"uuid"}"""),
        ("array-items", """{"type":"array","items":{"type":"integer","minimum":0,"maximum":9},"minItems":1,"maxItems":4}"""),
        ("array-empty", """{"type":"array","items":{"type":"integer"},"maxItems":0}"""),
        ("array-exact", """{"type":"array","items":{"type":"boolean"},"minItems":3,"maxItems":3}"""),
        ("prefix-items-false", """{"type":"array","prefixItems":[{"type":"string","maxLength":3},{"type":"integer","minimum":0,"maximum":100}],"items":false}"""),
        ("prefix-items-schema", """{"prefixItems":[{"const":"head"}],"items":{"type":"boolean"},"maxItems":3}"""),
        ("draft7-tuple", """{"$schema":"http://json-schema.org/draft-07/schema#","type":"array","items":[{"type":"null"},{"enum":[1,2]}],"additionalItems":false}"""),
        ("object-required-optional", """{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120},"ok":{"type":"boolean"}},"required":["name"]}"""),
        ("object-all-optional", """{"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"null"},"c":{"enum":[1,2]}},"additionalProperties":false}"""),
        ("object-additional-schema", """{"type":"object","properties":{"id":{"type":"integer","minimum":1,"maximum":9}},"required":["id"],"additionalProperties":{"type":"boolean"}}"""),
        ("object-additional-true", """{"type":"object","properties":{"id":{"type":"boolean"}},"required":["id"],"additionalProperties":true}"""),
        ("object-any", """{"type":"object"}"""),
        ("object-odd-names", """{"type":"object","properties":{"a b":{"type":"boolean"},"ü-ñ":{"type":"null"},"日本":{"enum":[0]}},"required":["a b","ü-ñ","日本"]}"""),
        ("refs-nested", """{"$defs":{"point":{"type":"object","properties":{"x":{"$ref":"#/$defs/coord"},"y":{"$ref":"#/$defs/coord"}},"required":["x","y"]},"coord":{"type":"integer","minimum":-9,"maximum":9}},"type":"array","items":{"$ref":"#/$defs/point"},"maxItems":3}"""),
        ("refs-recursive", """{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer","minimum":0,"maximum":9},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"]}},"$ref":"#/$defs/node"}"""),
        ("refs-definitions-in-property", """{"type":"object","properties":{"p":{"$defs":{"inner":{"enum":["i","j"]}},"$ref":"#/properties/p/$defs/inner"}},"required":["p"]}"""),
        ("any-of", """{"anyOf":[{"type":"integer","minimum":0,"maximum":5},{"type":"string","maxLength":3}]}"""),
        ("one-of", """{"oneOf":[{"type":"boolean"},{"type":"null"},{"type":"object","properties":{"t":{"const":1}},"required":["t"]}]}"""),
        ("all-of", """{"allOf":[{"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":3}},"required":["a"]},{"properties":{"b":{"enum":["x","y"]}},"required":["b"]}]}"""),
        ("all-of-ref-and-range", """{"$defs":{"small":{"type":"integer","minimum":0,"maximum":50}},"allOf":[{"$ref":"#/$defs/small"},{"minimum":10}]}"""),
        ("properties-with-any-of", """{"type":"object","properties":{"kind":{"enum":["a","b"]}},"required":["kind"],"anyOf":[{"properties":{"n":{"type":"integer","minimum":0,"maximum":9}},"required":["n"]},{"properties":{"s":{"type":"string","maxLength":4}},"required":["s"]}]}"""),
        ("type-array", """{"type":["integer","null","boolean"]}"""),
        ("type-array-string-null", """{"type":["string","null"],"maxLength":4}"""),
        ("unicode-enum", """{"enum":["café","日本語","😀","Ω"]}"""),
        ("unicode-string", """{"type":"string","minLength":1,"maxLength":3}"""),
        ("nested-everything", """{"type":"object","properties":{"id":{"format":"uuid","type":"string"},"when":{"type":"string","format":"date"},"tags":{"type":"array","items":{"enum":["x","y","z"]},"maxItems":2},"score":{"type":["number","null"]},"meta":{"type":"object","properties":{"k":{"type":"string","maxLength":2}},"required":["k"]}},"required":["id","when","tags","score","meta"],"additionalProperties":false}"""),
        ("dotnet-type", JsonSchemaGrammar.SchemaFromType(typeof(Product))),
    ];

    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (var (name, _) in Corpus)
        {
            d.Add("tiny", name);
            d.Add("stories260K.gguf", name);
        }
        return d;
    }

    private static readonly uint[] Seeds = [0, 11, 23, 37]; // 0: greedy; 37 with top-k 40 and the default grammar-first switch

    /// <summary>
    /// Schemas with strings (or keys, or values of any type) of unbounded length: a random-weights model (or stories260K,
    /// which writes stories) may not close them within MaxTokens. Those runs must end reported as incomplete; the
    /// runs that do end are checked like all others.
    /// </summary>
    private static readonly HashSet<string> Open = ["object-any", "object-additional-true", "object-additional-schema", "dotnet-type"];

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void EveryOutputIsValidAgainstItsSchema(string model, string name)
    {
        var schemaText = Corpus.Single(c => c.Name == name).Schema;
        var gbnf = JsonSchemaGrammar.Convert(schemaText);
        GbnfGrammar.Parse(gbnf); // the converter's output passes the checker
        var schema = JsonSchema.FromText(schemaText);
        using var lease = Acquire(model);
        foreach (var seed in Seeds)
        {
            var r = seed == 37 ? GrammarRun.Generate(lease, gbnf, seed, maxTokens: 400, topK: 40, grammarFirstBelow: 4096)
                : GrammarRun.Generate(lease, gbnf, seed, maxTokens: 400, topK: seed == 23 ? 40 : 0);
            if (!r.Complete && Open.Contains(name))
            {
                Assert.Equal(400, r.Tokens); // stopped by MaxTokens, reported as incomplete, not hung
                continue;
            }
            Assert.True(r.Complete, $"{name} seed {seed}: no end after {r.Tokens} tokens: {r.Text}");
            System.Text.Json.JsonElement value;
            try { value = System.Text.Json.JsonDocument.Parse(r.Text).RootElement; }
            catch (Exception e) { throw new Xunit.Sdk.XunitException($"{name} seed {seed}: not JSON ({e.Message}): {r.Text}\n{gbnf}"); }
            var result = schema.Evaluate(value, new EvaluationOptions { RequireFormatValidation = true, OutputFormat = OutputFormat.List });
            Assert.True(result.IsValid, $"{name} seed {seed}: invalid against the schema: {r.Text}\n" +
                string.Join("\n", (result.Details ?? []).Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}"))) + "\n" + gbnf);
        }
    }

    internal static ModelLease Acquire(string model)
    {
        string path = model == "tiny" ? TestFiles.TinyModelPath : TestFiles.Shared(model)!;
        Skip.If(path is null, "../shared/models is absent (a fresh clone)");
        return ModelCache.Instance.Acquire(path, new ModelLoadOptions(), NullEngineEvents.Instance, default);
    }
}

/// <summary>A minimal decode loop of its own around <see cref="GrammarConstrainedSampler"/>.</summary>
internal static class GrammarRun
{
    public sealed record Result(string Text, int Tokens, bool Complete, int Resamples, byte[] Bytes);

    public static Result Generate(ModelLease lease, string gbnf, uint seed, int maxTokens, string prompt = "Once upon a time", int topK = 0, int grammarFirstBelow = 0)
    {
        var model = lease.Model.Handle;
        var p = LLamaContextParams.Default();
        p.n_ctx = 1024; p.n_batch = 512; p.n_ubatch = 512; p.n_threads = 1; p.n_threads_batch = 1;
        using var ctx = SafeLLamaContextHandle.Create(model, p);
        var chain = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        if (seed == 0) chain.AddGreedySampler();
        else
        {
            if (topK > 0) chain.AddTopK(topK);
            chain.AddTemperature(1.0f);
            chain.AddDistributionSampler(seed);
        }
        using var sampler = GrammarConstrainedSampler.Create(model, gbnf, chain);
        sampler.GrammarFirstBelowVocabulary = grammarFirstBelow; // 0: the cut-first path even on these small vocabularies
        var tokens = model.Tokenize(prompt, model.Vocab.ShouldAddBOS, true, Encoding.UTF8);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, LLamaSeqId.Zero, i == tokens.Length - 1);
        Assert.Equal(DecodeResult.Ok, ctx.Decode(batch));
        var bytes = new List<byte>();
        var buf = new byte[256];
        int n = 0, pos = tokens.Length;
        bool complete = false;
        while (n < maxTokens)
        {
            var token = sampler.Sample(ctx, batch.TokenCount - 1);
            if (token.IsEndOfGeneration(model.Vocab))
            {
                complete = sampler.IsComplete;
                Assert.True(complete, "an end-of-text token was sampled before the grammar was complete");
                break;
            }
            sampler.Accept(token);
            n++;
            int len = (int)model.TokenToSpan(token, buf, 0, false);
            bytes.AddRange(buf.AsSpan(0, len).ToArray());
            batch.Clear();
            batch.Add(token, pos++, LLamaSeqId.Zero, true);
            Assert.Equal(DecodeResult.Ok, ctx.Decode(batch));
        }
        return new Result(Encoding.UTF8.GetString(bytes.ToArray()), n, complete, sampler.Resamples, bytes.ToArray());
    }
}
