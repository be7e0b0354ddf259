namespace LlmTools;

/// <summary>The account a Hub token belongs to (whoami). The token itself is never kept here.</summary>
public sealed class HubUser
{
    public required string Name { get; init; }
    public required string Type { get; init; }
    public required IReadOnlyList<string> Organizations { get; init; }
    /// <summary>read, write or fineGrained.</summary>
    public string? TokenRole { get; init; }
    public string? TokenName { get; init; }
    /// <summary>Where the token came from: Parameter, Session, HF_TOKEN, HUGGING_FACE_HUB_TOKEN or TokenFile.</summary>
    public required string TokenSource { get; init; }
    public required string Endpoint { get; init; }

    public override string ToString() => Name;
}

/// <summary>A model repository found on the Hub.</summary>
public sealed class HubModel
{
    public required string Id { get; init; }
    public string Author => Id.Contains('/') ? Id[..Id.IndexOf('/')] : "";
    public long Downloads { get; init; }
    public long Likes { get; init; }
    /// <summary>False, or "auto"/"manual" when the terms must be accepted before download.</summary>
    public string Gated { get; init; } = "False";
    public bool IsGated => Gated is not ("False" or "false" or "");
    public bool Private { get; init; }
    public DateTime? LastModified { get; init; }
    public string? PipelineTag { get; init; }
    public IReadOnlyList<string> Tags { get; init; } = [];

    public override string ToString() => Id;
}

/// <summary>A GGUF model file (or a split model's parts) in a Hub repository.</summary>
public sealed class HubModelFile
{
    public required string Repository { get; init; }
    /// <summary>Path in the repository (of the first part, for a split model).</summary>
    public required string Path { get; init; }
    public required long Size { get; init; }
    public required string? Quantization { get; init; }
    /// <summary>All files of the model: one, or the parts of a split GGUF.</summary>
    public required IReadOnlyList<string> Parts { get; init; }
    /// <summary>The reference that selects this file: org/name/path.</summary>
    public string Reference => $"{Repository}/{Path}";

    public override string ToString() => Reference;
}
