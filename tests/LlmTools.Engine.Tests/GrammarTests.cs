using System.Collections;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Json.Schema;
using LlmTools.Engine.Grammar;
using LLama.Native;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>
/// The converter's grammars checked exactly with llama.cpp's own grammar engine: a text is fed byte by byte through
/// the tiny model's byte tokens (&lt;0x00&gt;..&lt;0xFF&gt;), and it matches when every byte is allowed and the grammar is
/// complete at the end. Plus errors: unsupported keywords, invalid GBNF (never a crash), and token-level edge cases.
/// </summary>
public class GrammarTests
{
    private static ModelLease Tiny() => GrammarGenerationTests.Acquire("tiny");

    private static SafeLlamaModelHandle Handle(ModelLease lease) => lease.Model.Handle;

    private static GrammarConstrainedSampler Sampler(ModelLease lease, string gbnf)
    {
        var chain = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        chain.AddGreedySampler();
        return GrammarConstrainedSampler.Create(Handle(lease), gbnf, chain);
    }

    /// <summary>The tiny vocabulary's byte tokens follow &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;.</summary>
    private static LLamaToken ByteToken(byte b) => 3 + b;

    private static bool Matches(ModelLease lease, string gbnf, string text)
    {
        using var s = Sampler(lease, gbnf);
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            if (!s.Allows(ByteToken(b))) return false;
            s.Accept(ByteToken(b));
        }
        return s.IsComplete;
    }

    private static string G(string schema) => JsonSchemaGrammar.Convert(schema);

    [Fact]
    public void IntegerRangesMatchExactlyTheirIntegers()
    {
        using var lease = Tiny();
        foreach (var (lo, hi) in new (long, long)[] { (-15, 342), (0, 9), (1, 10), (-7, -3), (10, 99), (37, 1005), (-120, 0) })
        {
            var gbnf = G($$"""{"type":"integer","minimum":{{lo}},"maximum":{{hi}}}""");
            using var s = Sampler(lease, gbnf); // one parse; exact membership below
            for (long v = lo - 25; v <= hi + 25; v++)
                Assert.True(Matches(lease, gbnf, v.ToString()) == (v >= lo && v <= hi), $"{v} in [{lo},{hi}]\n{gbnf}");
            Assert.False(Matches(lease, gbnf, "0" + hi)); // no leading zeros
            Assert.False(Matches(lease, gbnf, "-0"));
        }
        var exclusive = G("""{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10}""");
        Assert.False(Matches(lease, exclusive, "0"));
        Assert.True(Matches(lease, exclusive, "1"));
        Assert.True(Matches(lease, exclusive, "9"));
        Assert.False(Matches(lease, exclusive, "10"));
        var minOnly = G("""{"type":"integer","minimum":1000}""");
        Assert.False(Matches(lease, minOnly, "999"));
        Assert.True(Matches(lease, minOnly, "1000"));
        Assert.True(Matches(lease, minOnly, "9999999999999999"));
        Assert.False(Matches(lease, minOnly, "10000000000000000")); // 17 digits: numbers are bounded
    }

    [Fact]
    public void NumbersAndWhitespaceAreBounded()
    {
        using var lease = Tiny();
        var num = G("""{"type":"number"}""");
        Assert.True(Matches(lease, num, "-12.5e+3"));
        Assert.True(Matches(lease, num, "0"));
        Assert.False(Matches(lease, num, "01"));
        Assert.False(Matches(lease, num, "1" + new string('0', 16)));
        Assert.False(Matches(lease, num, "1." + new string('5', 17)));
        var obj = G("""{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}""");
        Assert.True(Matches(lease, obj, """{"a":1}"""));
        Assert.True(Matches(lease, obj, "{ \"a\": 1 }"));
        Assert.True(Matches(lease, obj, "{\n  \"a\":\n\t1\n}"));
        Assert.False(Matches(lease, obj, "{  \"a\":1}")); // one run of whitespace, not two spaces
        Assert.False(Matches(lease, obj, "{\n" + new string(' ', 21) + "\"a\":1}"));
        Assert.False(Matches(lease, obj, "{\"a\" :1}")); // none before ':'
        Assert.False(Matches(lease, obj, " {\"a\":1}")); // none before the value
        Assert.False(Matches(lease, obj, "{\"a\":1} ")); // none after: the grammar is complete with the value
    }

    [Fact]
    public void StringsKeepLengthsInCharactersAndEscapesStayValid()
    {
        using var lease = Tiny();
        var g = G("""{"type":"string","minLength":2,"maxLength":3}""");
        Assert.False(Matches(lease, g, "\"a\""));
        Assert.True(Matches(lease, g, "\"ab\""));
        Assert.True(Matches(lease, g, "\"😀日本\"")); // three characters, nine bytes
        Assert.False(Matches(lease, g, "\"abcd\""));
        Assert.True(Matches(lease, g, "\"\\n\\u00e9\"")); // an escape counts as one character
        Assert.False(Matches(lease, g, "\"\\ud83d\"")); // a lone surrogate escape
        Assert.False(Matches(lease, g, "\"a\tb\"")); // raw control character
        Assert.False(Matches(lease, g, "\"\\q\""));
    }

    [Fact]
    public void FormatsAreRealDatesTimesAndUuids()
    {
        using var lease = Tiny();
        var date = G("""{"type":"string","format":"date"}""");
        Assert.True(Matches(lease, date, "\"2024-12-31\""));
        Assert.True(Matches(lease, date, "\"2023-02-28\""));
        Assert.False(Matches(lease, date, "\"2023-02-30\""));
        Assert.False(Matches(lease, date, "\"2024-04-31\""));
        Assert.False(Matches(lease, date, "\"2024-13-01\""));
        Assert.False(Matches(lease, date, "\"2024-00-10\""));
        var time = G("""{"type":"string","format":"time"}""");
        Assert.True(Matches(lease, time, "\"23:59:59Z\""));
        Assert.True(Matches(lease, time, "\"08:00:00.250+02:00\""));
        Assert.False(Matches(lease, time, "\"24:00:00Z\""));
        Assert.False(Matches(lease, time, "\"12:00:00\"")); // RFC 3339 full-time needs an offset
        var dt = G("""{"type":"string","format":"date-time"}""");
        Assert.True(Matches(lease, dt, "\"2024-02-29T12:30:00Z\"") == false); // Feb 29 is left out (not every year has it)
        Assert.True(Matches(lease, dt, "\"2024-03-01T12:30:00-05:00\""));
        var uuid = G("""{"type":"string","format":"uuid"}""");
        Assert.True(Matches(lease, uuid, "\"123e4567-e89b-12d3-a456-426614174000\""));
        Assert.False(Matches(lease, uuid, "\"123e4567e89b12d3a456426614174000\""));
    }

    [Fact]
    public void ObjectsFollowRequiredOptionalAndAdditionalProperties()
    {
        using var lease = Tiny();
        var g = G("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"boolean"},"c":{"type":"null"}},"required":["b"]}""");
        Assert.True(Matches(lease, g, """{"b":true}"""));
        Assert.True(Matches(lease, g, """{"a":1,"b":true,"c":null}"""));
        Assert.True(Matches(lease, g, """{"b":false,"c":null}"""));
        Assert.False(Matches(lease, g, """{"a":1}"""));
        Assert.False(Matches(lease, g, """{"b":true,"d":1}""")); // no additionalProperties: none
        Assert.False(Matches(lease, g, """{"b":true,"b":true}"""));
        var none = G("""{"type":"object","properties":{"a":{"type":"integer"}}}""");
        Assert.True(Matches(lease, none, "{}"));
        Assert.True(Matches(lease, none, "{ }"));
        var extra = G("""{"type":"object","properties":{"ab":{"type":"integer"}},"additionalProperties":{"type":"boolean"}}""");
        Assert.True(Matches(lease, extra, """{"ab":1,"x":true}"""));
        Assert.True(Matches(lease, extra, """{"a":true,"abc":false}""")); // a prefix and an extension of the name are other names
        Assert.True(Matches(lease, extra, """{"x":true}"""));
        Assert.False(Matches(lease, extra, """{"ab":1,"ab":true}"""));
        Assert.False(Matches(lease, extra, """{"x":1}"""));
        var any = G("""{"type":"object"}""");
        Assert.True(Matches(lease, any, """{"k":[1,{"z":null}],"s":"t"}"""));
    }

    [Fact]
    public void ArraysTuplesAndEmptyArrays()
    {
        using var lease = Tiny();
        var empty = G("""{"type":"array","maxItems":0}""");
        Assert.True(Matches(lease, empty, "[]"));
        Assert.True(Matches(lease, empty, "[ ]"));
        Assert.False(Matches(lease, empty, "[1]"));
        var tuple = G("""{"prefixItems":[{"type":"integer"},{"type":"string","maxLength":2}],"items":false}""");
        Assert.True(Matches(lease, tuple, """[1,"ab"]"""));
        Assert.False(Matches(lease, tuple, """[1,"ab",2]"""));
        var more = G("""{"prefixItems":[{"const":"h"}],"items":{"type":"integer"},"minItems":2,"maxItems":3}""");
        Assert.False(Matches(lease, more, """["h"]"""));
        Assert.True(Matches(lease, more, """["h",1]"""));
        Assert.True(Matches(lease, more, """["h",1,2]"""));
        Assert.False(Matches(lease, more, """["h",1,2,3]"""));
        var list = G("""{"items":{"type":"integer"},"minItems":1,"maxItems":2}""");
        Assert.False(Matches(lease, list, "[]"));
        Assert.True(Matches(lease, list, "[7, 8]"));
        Assert.False(Matches(lease, list, "[7,8,9]"));
        Assert.False(Matches(lease, list, "[7,]"));
    }

    [Fact]
    public void RefsUnionsAndMergedProperties()
    {
        using var lease = Tiny();
        var nested = G("""{"$defs":{"a":{"type":"object","properties":{"b":{"$ref":"#/$defs/b"}},"required":["b"]},"b":{"enum":[1,2]}},"$ref":"#/$defs/a"}""");
        Assert.True(Matches(lease, nested, """{"b":2}"""));
        Assert.False(Matches(lease, nested, """{"b":3}"""));
        var recursive = G("""{"type":"object","properties":{"next":{"$ref":"#"}}}""");
        Assert.True(Matches(lease, recursive, """{"next":{"next":{}}}"""));
        var mixed = G("""{"type":"object","properties":{"k":{"enum":["a"]}},"required":["k"],"anyOf":[{"properties":{"n":{"type":"integer"}},"required":["n"]},{"properties":{"s":{"type":"boolean"}},"required":["s"]}]}""");
        Assert.True(Matches(lease, mixed, """{"k":"a","n":1}"""));
        Assert.True(Matches(lease, mixed, """{"k":"a","s":true}"""));
        Assert.False(Matches(lease, mixed, """{"k":"a"}"""));
        Assert.False(Matches(lease, mixed, """{"n":1}"""));
        var allOf = G("""{"allOf":[{"type":"integer","minimum":0,"maximum":100},{"minimum":50},{"maximum":60}]}""");
        Assert.True(Matches(lease, allOf, "55"));
        Assert.False(Matches(lease, allOf, "49"));
        Assert.False(Matches(lease, allOf, "61"));
        var nullable = G("""{"type":"string","nullable":true,"maxLength":1}""");
        Assert.True(Matches(lease, nullable, "null"));
        Assert.True(Matches(lease, nullable, "\"x\""));
        var types = G("""{"type":["boolean","null"]}""");
        Assert.True(Matches(lease, types, "null"));
        Assert.False(Matches(lease, types, "1"));
    }

    [Fact]
    public void PatternsBecomeGrammars()
    {
        using var lease = Tiny();
        var g = G("""{"type":"string","pattern":"^(ab|cd){1,2}-[0-9a-f]{2}\\.x?$"}""");
        Assert.True(Matches(lease, g, "\"ab-0f.\""));
        Assert.True(Matches(lease, g, "\"abcd-99.x\""));
        Assert.False(Matches(lease, g, "\"ab-0g.\""));
        Assert.False(Matches(lease, g, "\"-00.\""));
        var quote = G("""{"type":"string","pattern":"^[\"a]\\d$"}""");
        Assert.True(Matches(lease, quote, "\"\\\"1\"")); // a quote in the class is written escaped in the JSON text
        Assert.True(Matches(lease, quote, "\"a1\""));
        var unanchored = G("""{"type":"string","pattern":"ok"}""");
        Assert.True(Matches(lease, unanchored, "\"is ok here\""));
        Assert.False(Matches(lease, unanchored, "\"nope\""));
    }

    [Theory]
    [InlineData("""{"type":"array","uniqueItems":true}""", "uniqueItems")]
    [InlineData("""{"type":"array","contains":{"type":"integer"}}""", "contains")]
    [InlineData("""{"type":"object","minProperties":1}""", "minProperties")]
    [InlineData("""{"type":"object","patternProperties":{"^a":{}}}""", "patternProperties")]
    [InlineData("""{"not":{"type":"null"}}""", "not")]
    [InlineData("""{"if":{"type":"string"},"then":{"maxLength":2}}""", "if")]
    [InlineData("""{"type":"integer","multipleOf":3}""", "multipleOf")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","format":"email"}}}""", "email")]
    [InlineData("""{"type":"string","pattern":"^(?=a)b$"}""", "lookaround")]
    [InlineData("""{"type":"string","pattern":"^(a)\\1$"}""", "back reference")]
    [InlineData("""{"type":"number","minimum":0.5}""", "minimum")]
    [InlineData("""{"$ref":"https://example.com/schema.json"}""", "https://example.com/schema.json")]
    [InlineData("""{"type":"object","properties":{"deep":{"type":"array","items":{"dependentRequired":{}}}}}""", "dependentRequired")]
    [InlineData("""{"$ref":"#","type":"object"}""", "itself")]
    [InlineData("""{"allOf":[{"$ref":"#"},{"type":"object"}]}""", "refers back to itself")]
    public void UnsupportedKeywordsAreNamedNeverIgnored(string schema, string named)
    {
        var e = Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert(schema));
        Assert.Equal("JsonSchemaUnsupported", e.ErrorId);
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void AnnotationsAreIgnoredAndBadSchemasAreErrors()
    {
        var g = JsonSchemaGrammar.Convert("""{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"T","description":"d","examples":[1],"default":1,"type":"integer"}""");
        Assert.Contains("root ::=", g);
        Assert.Equal("JsonSchemaInvalid", Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert("{nope")).ErrorId);
        Assert.Equal("JsonSchemaInvalid", Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert("""{"$ref":"#/$defs/missing"}""")).ErrorId);
        Assert.Equal("JsonSchemaInvalid", Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert("""{"type":"integer","minimum":5,"maximum":4}""")).ErrorId);
        Assert.Equal("JsonSchemaInvalid", Assert.Throws<LlmException>(() => JsonSchemaGrammar.Convert("""{"type":"strin"}""")).ErrorId);
    }

    public static TheoryData<string, string> BadGrammars() => new()
    {
        { "", "no rules" },
        { "start ::= \"a\"", "no 'root' rule" },
        { "root ::= a", "not defined" },
        { "root ::= root \"a\" | \"b\"", "left-recursive" },
        { "root ::= x root \"a\" | \"b\"\nx ::= \"\" | \"c\"", "left-recursive" }, // only through a rule that may be empty
        { "root ::= a\na ::= b \"x\"\nb ::= a | \"y\"", "left-recursive" },
        { "root ::= (\"a\"?)*", "can match nothing" },
        { "root ::= \"a", "end of input" },
        { "root ::= (\"a\"", "expecting ')'" },
        { "root ::= [a-", "end of input" },
        { "root ::= \"\\q\"", "unknown escape" },
        { "root ::= \"a\"{2001}", "2000" },
        { "root ::= \"a\"{3,2}", "below its minimum" },
        { "root : \"a\"", "::=" },
        { "root ::= *", "before '*'" },
        { "root ::= \"a\" ) ", "newline" },
        { "root ::= " + new string('(', 300) + "\"a\"" + new string(')', 300), "nested" },
        { "root ::= \"a\"\0 junk", "NUL" },
        { "root ::= <[1000]>", "newline" },
    };

    [Theory]
    [MemberData(nameof(BadGrammars))]
    public void InvalidGbnfIsAnErrorNotACrash(string gbnf, string why)
    {
        var e = Assert.Throws<LlmException>(() => GbnfGrammar.Parse(gbnf));
        Assert.Equal("GrammarInvalid", e.ErrorId);
        Assert.Contains(why, e.Message);
        // And through the sampler with a real model: the same error, the process lives on.
        using var lease = Tiny();
        var chain = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        chain.AddGreedySampler();
        Assert.Equal("GrammarInvalid", Assert.Throws<LlmException>(() => GrammarConstrainedSampler.Create(Handle(lease), gbnf, chain)).ErrorId);
        chain.Dispose();
    }

    [Fact]
    public void RawGbnfConstrainsGeneration()
    {
        using var lease = Tiny();
        const string gbnf = "# answers\nroot ::= answer (\", \" answer){0,2}\nanswer ::= \"yes\" | \"no\" | [0-9]{1,3}\n";
        var seen = new HashSet<string>();
        foreach (var seed in new uint[] { 0, 1, 2, 3, 4 })
        {
            var r = GrammarRun.Generate(lease, gbnf, seed, 60);
            Assert.True(r.Complete, r.Text);
            Assert.Matches("^(yes|no|[0-9]{1,3})(, (yes|no|[0-9]{1,3})){0,2}$", r.Text);
            seen.Add(r.Text);
        }
        Assert.True(seen.Count > 1); // seeds matter
    }

    [Fact]
    public void MaxTokensBeforeTheGrammarIsCompleteIsReportedNotHung()
    {
        using var lease = Tiny();
        var r = GrammarRun.Generate(lease, "root ::= \"[\" [a-z]{40} \"]\"", 5, maxTokens: 6);
        Assert.False(r.Complete);
        Assert.Equal(6, r.Tokens);
        Assert.StartsWith("[", r.Text);
        using var s = Sampler(lease, "root ::= \"[\" [a-z]{40} \"]\"");
        Assert.False(s.IsComplete);
        Assert.False(s.Allows(Handle(lease).Vocab.EOS!.Value)); // ending now is not allowed
    }

    [Fact]
    public void TokensThatSpanSeveralGrammarElements()
    {
        using var lease = Tiny();
        var model = Handle(lease);
        // ",▁" is one token in the tiny vocabulary: a comma and a space, two grammar elements.
        var commaSpace = model.Tokenize("a, b", false, false, Encoding.UTF8).Select(t => (t, Piece(model, t))).Single(x => x.Item2 == ", ").t;
        using (var s = Sampler(lease, "root ::= \"[1\" \",\" ws \"2]\"\nws ::= \" \"?"))
        {
            foreach (var b in "[1"u8.ToArray()) s.Accept(ByteToken(b));
            Assert.True(s.Allows(commaSpace));
            s.Accept(commaSpace);
            foreach (var b in "2]"u8.ToArray()) s.Accept(ByteToken(b));
            Assert.True(s.IsComplete);
        }
        using (var s = Sampler(lease, "root ::= \"[1\" \",\" \"2]\""))
        {
            foreach (var b in "[1"u8.ToArray()) s.Accept(ByteToken(b));
            Assert.False(s.Allows(commaSpace)); // no space allowed there
            Assert.Equal("GrammarRejectedToken", Assert.Throws<LlmException>(() => s.Accept(commaSpace)).ErrorId);
        }
    }

    [Fact]
    public void UnicodeComesThroughWholeAndInvalidUtf8IsNeverAllowed()
    {
        using var lease = Tiny();
        // The tiny vocabulary spells 😀 with four byte tokens: every one is a partial character to the grammar.
        var r = GrammarRun.Generate(lease, "root ::= \"😀 é\"", 3, 20);
        Assert.True(r.Complete);
        Assert.Equal("😀 é", r.Text);
        using var s = Sampler(lease, JsonSchemaGrammar.Convert("""{"type":"string","maxLength":4}"""));
        s.Accept(ByteToken((byte)'"'));
        Assert.False(s.Allows(ByteToken(0xC0))); // overlong lead byte
        Assert.False(s.Allows(ByteToken(0xF8))); // beyond U+10FFFF
        Assert.False(s.Allows(ByteToken(0x80))); // a continuation byte alone
        Assert.False(s.Allows(1)); // <s>: llama.cpp would match its name, but the text shows nothing
        Assert.True(s.Allows(ByteToken(0xED)));
        s.Accept(ByteToken(0xED));
        Assert.False(s.Allows(ByteToken(0xA0))); // ED A0..BF encodes a surrogate
        Assert.True(s.Allows(ByteToken(0x9F)));
    }

    public sealed record Point(int X, int Y, bool Ok, GrammarGenerationTests.Color Shade, List<int> Values, GrammarGenerationTests.Size? Box);

    [Fact]
    public void SchemaFromTypeDescribesPublicPropertiesAndOutputDeserializes()
    {
        var schema = JsonDocument.Parse(JsonSchemaGrammar.SchemaFromType(typeof(Point))).RootElement;
        var props = schema.GetProperty("properties");
        Assert.Equal(["X", "Y", "Ok", "Shade", "Values", "Box"], props.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["X", "Y", "Ok", "Shade", "Values", "Box"], schema.GetProperty("required").EnumerateArray().Select(x => x.GetString()));
        Assert.Equal("integer", props.GetProperty("X").GetProperty("type").GetString());
        Assert.Equal(["Red", "Green", "Blue"], props.GetProperty("Shade").GetProperty("enum").EnumerateArray().Select(x => x.GetString()));
        Assert.Equal("array", props.GetProperty("Values").GetProperty("type").GetString());
        Assert.Contains("null", props.GetProperty("Box").GetProperty("type").EnumerateArray().Select(x => x.GetString()));

        using var lease = Tiny();
        var gbnf = JsonSchemaGrammar.Convert(schema.GetRawText());
        var options = new JsonSerializerOptions { Converters = { new JsonStringEnumConverter() } };
        int done = 0;
        foreach (var seed in new uint[] { 0, 5, 6, 7 })
        {
            var r = GrammarRun.Generate(lease, gbnf, seed, 300);
            if (!r.Complete) continue;
            var p = JsonSerializer.Deserialize<Point>(r.Text, options);
            Assert.NotNull(p);
            done++;
        }
        Assert.True(done > 0);
    }

    [Fact]
    public void SchemaFromDictionarySerialisesNestedHashtables()
    {
        var schema = new Hashtable
        {
            ["type"] = "object",
            ["properties"] = new Hashtable { ["n"] = new Hashtable { ["type"] = "integer", ["minimum"] = 1, ["maximum"] = 3 } },
            ["required"] = new object[] { "n" },
        };
        var json = JsonSchemaGrammar.SchemaFromDictionary(schema);
        using var lease = Tiny();
        var r = GrammarRun.Generate(lease, JsonSchemaGrammar.Convert(json), 9, 50);
        Assert.True(r.Complete);
        Assert.True(JsonSchema.FromText(json).Evaluate(JsonDocument.Parse(r.Text).RootElement).IsValid, r.Text);
    }

    private static string Piece(SafeLlamaModelHandle model, LLamaToken t)
    {
        var buf = new byte[64];
        int n = (int)model.TokenToSpan(t, buf, 0, false);
        return Encoding.UTF8.GetString(buf, 0, n);
    }
}

public class GrammarGreedyTests
{
    public static TheoryData<string> Models() => new() { "tiny", "stories260K.gguf" };

    /// <summary>
    /// Greedy decoding with the grammar applied last (this sampler) picks exactly what llama.cpp's grammar-first chain
    /// (grammar sampler, then greedy; LLamaSharp's AddGrammar) picks: the best token the grammar allows.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void GreedyWithTheGrammarLastEqualsGrammarFirst(string model)
    {
        using var lease = GrammarGenerationTests.Acquire(model);
        var handle = lease.Model.Handle;
        foreach (var name in new[] { "object-required-optional", "refs-nested", "nested-everything", "pattern-groups", "enum-mixed", "int-wide" })
        {
            var gbnf = JsonSchemaGrammar.Convert(GrammarGenerationTests.Corpus.Single(c => c.Name == name).Schema);
            var ours = GrammarRun.Generate(lease, gbnf, 0, 120);

            var p = LLamaContextParams.Default();
            p.n_ctx = 1024; p.n_batch = 512; p.n_ubatch = 512; p.n_threads = 1; p.n_threads_batch = 1;
            using var ctx = SafeLLamaContextHandle.Create(handle, p);
            using var chain = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
            chain.AddGrammar(handle, gbnf, "root"); // safe: the checker accepted this grammar above
            chain.AddGreedySampler();
            var tokens = handle.Tokenize("Once upon a time", handle.Vocab.ShouldAddBOS, true, Encoding.UTF8);
            var batch = new LLamaBatch();
            for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, LLamaSeqId.Zero, i == tokens.Length - 1);
            Assert.Equal(DecodeResult.Ok, ctx.Decode(batch));
            var bytes = new List<byte>();
            var buf = new byte[256];
            int pos = tokens.Length;
            for (int n = 0; n < 120; n++)
            {
                var t = chain.Sample(ctx, batch.TokenCount - 1); // samples and accepts
                if (t.IsEndOfGeneration(handle.Vocab)) break;
                int len = (int)handle.TokenToSpan(t, buf, 0, false);
                bytes.AddRange(buf.AsSpan(0, len).ToArray());
                batch.Clear();
                batch.Add(t, pos++, LLamaSeqId.Zero, true);
                Assert.Equal(DecodeResult.Ok, ctx.Decode(batch));
            }
            Assert.Equal(Encoding.UTF8.GetString(bytes.ToArray()), ours.Text);
        }
    }
}
