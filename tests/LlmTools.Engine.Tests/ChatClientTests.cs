using LlmTools.Interop;
using Microsoft.Extensions.AI;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>The engine as Microsoft.Extensions.AI's IChatClient, driven through ChatClientBuilder as a .NET app would.</summary>
public class ChatClientTests
{
    private static readonly ContextOptions Context = new() { Threads = 1, ContextSize = 512 };

    private static string ExpectedGreedy(string system, string user, int maxTokens)
    {
        using var lease = ModelCache.Instance.Acquire(ServerModels.ChatModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default);
        var format = ChatFormat.ForModel(lease, null, NullEngineEvents.Instance);
        var prompt = format.Render([new LlmChatMessage("system", system), new LlmChatMessage("user", user)], true);
        var options = new CompletionOptions
        {
            Temperature = 0, MaxTokens = maxTokens, Stop = format.StopStrings, StopTokenIds = format.StopTokenIds, AddBos = format.AddBos(prompt),
        };
        return CompletionEngine.Complete(lease, prompt, options, Context, NullEngineEvents.Instance, default).Text;
    }

    [Fact]
    public async Task ChatClientBuilderPipelineGetsTheEnginesGreedyReply()
    {
        using var inner = new LlmChatClient(ServerModels.ChatModelPath, Context);
        // Middleware from Microsoft.Extensions.AI sets the options, as an application's pipeline would.
        using var client = new ChatClientBuilder(inner)
            .ConfigureOptions(o => { o.Temperature = 0; o.MaxOutputTokens = 24; })
            .Build();
        List<ChatMessage> messages = [new(ChatRole.System, "You are brief."), new(ChatRole.User, "Tell me a story")];
        var expected = ExpectedGreedy("You are brief.", "Tell me a story", 24);

        var response = await client.GetResponseAsync(messages);
        Assert.Equal(expected, response.Text);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.NotNull(response.FinishReason);
        Assert.True(response.Usage!.InputTokenCount > 10);
        Assert.Equal(response.Usage.InputTokenCount + response.Usage.OutputTokenCount, response.Usage.TotalTokenCount);
        Assert.Equal("tiny-chat-test", response.ModelId);

        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(messages)) updates.Add(u);
        Assert.Equal(expected, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(response.FinishReason, updates[^1].FinishReason);
        var streamed = updates.ToChatResponse();
        Assert.Equal(expected, streamed.Text);
        Assert.Equal(response.Usage.OutputTokenCount, streamed.Usage!.OutputTokenCount);

        Assert.Equal("tiny-chat-test", client.GetService<ChatClientMetadata>()!.DefaultModelId);
    }

    [Fact]
    public async Task MaxOutputTokensEndsWithLengthAndToolsAreRefused()
    {
        using var client = new ChatClientBuilder(new LlmChatClient(TestFiles.TinyModelPath, Context)).Build();
        var response = await client.GetResponseAsync("Hello", new ChatOptions { Temperature = 0, MaxOutputTokens = 3 });
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(3, response.Usage!.OutputTokenCount);
        var e = await Assert.ThrowsAsync<LlmException>(() => client.GetResponseAsync("Hello",
            new ChatOptions { Tools = [AIFunctionFactory.Create(() => 42, "answer")] }));
        Assert.Equal("ChatOptionNotSupported", e.ErrorId);
    }
}

/// <summary>Structured output through Microsoft.Extensions.AI's GetResponseAsync&lt;T&gt; (ChatResponseFormat.ForJsonSchema).</summary>
public class ChatClientStructuredTests
{
    public enum Level { Low, High }
    public sealed record Verdict(bool Ok, Level Level, long Score); // long: the schema Microsoft.Extensions.AI writes for int has no bounds

    [Fact]
    public async Task GetResponseAsyncOfTFollowsTheSchemaAndJsonGivesAnObject()
    {
        var context = new ContextOptions { Threads = 1, ContextSize = 512 };
        using var client = new ChatClientBuilder(new LlmChatClient(ServerModels.ChatModelPath, context)).Build();
        var typed = await client.GetResponseAsync<Verdict>("Judge this.", new ChatOptions { Temperature = 0, MaxOutputTokens = 80 });
        Assert.Equal(ChatFinishReason.Stop, typed.FinishReason);
        Assert.True(typed.TryGetResult(out var verdict), typed.Text);
        Assert.NotNull(verdict);
        Assert.True(Enum.IsDefined(verdict!.Level));

        var any = await client.GetResponseAsync("Anything.", new ChatOptions { Temperature = 0, MaxOutputTokens = 80, ResponseFormat = ChatResponseFormat.Json });
        Assert.StartsWith("{", any.Text);
        if (any.FinishReason == ChatFinishReason.Stop)
            Assert.Equal(System.Text.Json.JsonValueKind.Object, System.Text.Json.JsonDocument.Parse(any.Text).RootElement.ValueKind);

        var schema = System.Text.Json.JsonDocument.Parse("""{"type":"object","if":{"type":"object"}}""").RootElement;
        var e = await Assert.ThrowsAsync<LlmException>(() => client.GetResponseAsync("x", new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(schema) }));
        Assert.Equal("JsonSchemaUnsupported", e.ErrorId);
        Assert.Contains("'if'", e.Message);
    }
}

/// <summary>The engine as Microsoft.Extensions.AI's IEmbeddingGenerator, driven through EmbeddingGeneratorBuilder.</summary>
public class EmbeddingGeneratorTests
{
    private static readonly ContextOptions Context = new() { Threads = 1 };

    [Fact]
    public async Task EmbeddingGeneratorBuilderPipelineGivesTheEnginesVectors()
    {
        string[] texts = ["The cat sat on the mat.", "A dog barked at the moon.", "Once upon a time"];
        LlmEmbedding[] expected;
        using (var lease = ModelCache.Instance.Acquire(TestFiles.TinyModelPath, new ModelLoadOptions(), NullEngineEvents.Instance, default))
            expected = EmbeddingEngine.Embed(lease, texts, new EmbeddingOptions(), Context, NullEngineEvents.Instance, default)
                .Select(i => i.Embedding!).ToArray();

        using var inner = new LlmEmbeddingGenerator(TestFiles.TinyModelPath, contextOptions: Context);
        // Middleware from Microsoft.Extensions.AI, as an application's pipeline would have it.
        var seen = 0;
        using var generator = new EmbeddingGeneratorBuilder<string, Embedding<float>>(inner)
            .ConfigureOptions(o => o.AdditionalProperties = new() { ["caller"] = "test" })
            .Use(async (values, options, next, cancel) =>
            {
                Interlocked.Add(ref seen, values.Count());
                return await next.GenerateAsync(values, options, cancel);
            })
            .Build();

        var result = await generator.GenerateAsync(texts);
        Assert.Equal(texts.Length, seen);
        Assert.Equal(texts.Length, result.Count);
        for (int i = 0; i < texts.Length; i++)
        {
            Assert.Equal(expected[i].Dimensions, result[i].Vector.Length);
            Assert.True(EmbeddingEngine.Cosine(expected[i].Vector, result[i].Vector.Span) >= 0.9999);
            Assert.Equal("tiny-llama-test", result[i].ModelId);
        }
        Assert.Equal(expected.Sum(e => e.TokenCount), result.Usage!.InputTokenCount);

        // The abstractions' one-value helper, and the metadata an application reads.
        var one = await generator.GenerateVectorAsync("A dog barked at the moon.");
        Assert.True(EmbeddingEngine.Cosine(expected[1].Vector, one.Span) >= 0.9999);
        var metadata = generator.GetService<EmbeddingGeneratorMetadata>()!;
        Assert.Equal(expected[0].Dimensions, metadata.DefaultModelDimensions);
        Assert.Equal("tiny-llama-test", metadata.DefaultModelId);

        // A text that does not fit fails the call with the engine's error; a length the model cannot give is refused.
        var e = await Assert.ThrowsAsync<LlmException>(() => generator.GenerateAsync([string.Join(" ", Enumerable.Repeat("the little dog", 2000))]));
        Assert.Equal("TextTooLong", e.ErrorId);
        e = await Assert.ThrowsAsync<LlmException>(() => generator.GenerateAsync(["x"], new EmbeddingGenerationOptions { Dimensions = 7 }));
        Assert.Equal("EmbeddingDimensionsNotSupported", e.ErrorId);
    }
}
