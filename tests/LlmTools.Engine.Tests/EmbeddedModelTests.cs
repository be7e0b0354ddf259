using System.Security.Cryptography;
using Xunit;

namespace LlmTools.Engine.Tests;

/// <summary>The model shipped with the module: found by its short name, the file its provenance note pins.</summary>
public class EmbeddedModelTests
{
    [Theory]
    [InlineData("tinystories")]
    [InlineData("TinyStories")]
    [InlineData("TINYSTORIES")]
    public void TheShortNameNamesTheShippedFileInAnyCase(string name)
    {
        var path = EmbeddedModels.TryResolve(name);
        Assert.NotNull(path);
        Assert.Equal("stories260K.gguf", Path.GetFileName(path));
        Assert.True(EmbeddedModels.IsEmbedded(path!));
    }

    [Theory]
    [InlineData("tinystories.gguf")]
    [InlineData("stories")]
    [InlineData("")]
    [InlineData(null)]
    public void OtherNamesAreNotEmbeddedModels(string? name) => Assert.Null(EmbeddedModels.TryResolve(name));

    [Fact]
    public void TheShippedFileIsTheOnePinnedInItsProvenance()
    {
        var path = EmbeddedModels.TryResolve("tinystories")!;
        using var stream = File.OpenRead(path);
        Assert.Equal("270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
            Convert.ToHexStringLower(SHA256.HashData(stream)));
    }

    [Fact]
    public void ItIsDescribedByItsShortNameWithItsOwnHeaderFacts()
    {
        var info = Assert.Single(EmbeddedModels.Describe());
        Assert.Equal("tinystories", info.Name);
        Assert.Equal("llama", info.Metadata["general.name"]);
        Assert.Equal(292_800, info.ParameterCount);
        Assert.Equal(512, info.VocabularySize);
        Assert.False(info.HasChatTemplate);
    }
}
