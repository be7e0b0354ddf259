using LlmTools.Engine.Gguf;

namespace LlmTools;

/// <summary>Reads <see cref="LlmModelInfo"/> from GGUF files (header only, no weights).</summary>
public static class ModelInfoReader
{
    /// <summary>Reads and validates a GGUF file. Throws <see cref="LlmException"/> for anything llama.cpp must not see.</summary>
    public static LlmModelInfo Read(string path)
    {
        var file = ReadValidated(path);
        try
        {
            return FromGguf(file);
        }
        catch (Exception e) when (e is not LlmException)
        {
            throw GgufFile.Corrupt(file.Path, $"its metadata cannot be described ({e.GetType().Name}: {e.Message})", e);
        }
    }

    internal static GgufFile ReadValidated(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full))
            throw new LlmException("ModelPathIsDirectory", LlmErrorKind.InvalidArgument,
                $"'{full}' is a folder; give the path of a .gguf file inside it (Get-LlmModel -Path '{full}' lists them).", full);
        var file = GgufFile.Read(full);
        try
        {
            GgufValidator.Validate(file);
        }
        catch (Exception e) when (e is not LlmException)
        {
            // A check that trips over a value it did not expect still means the file is not one to load.
            throw GgufFile.Corrupt(full, $"its metadata cannot be checked ({e.GetType().Name}: {e.Message})", e);
        }
        return file;
    }

    internal static LlmModelInfo FromGguf(GgufFile f)
    {
        string arch = f.GetString("general.architecture") ?? "unknown";
        var tokens = f.GetArray("tokenizer.ggml.tokens") as string[];
        string? TokenText(string key) =>
            f.GetInteger(key) is { } id && tokens is not null && id >= 0 && id < tokens.Length ? tokens[id] : null;

        long parameters = 0;
        foreach (var t in f.Tensors)
            parameters = t.ElementCount > (ulong)(long.MaxValue - parameters) ? long.MaxValue : parameters + (long)t.ElementCount;

        var scalars = new SortedDictionary<string, object>(StringComparer.Ordinal);
        foreach (var (k, v) in f.Metadata)
            if (v is not Array) scalars[k] = v;

        return new LlmModelInfo
        {
            Path = f.Path,
            Name = f.GetString("general.name") is { Length: > 0 } n ? n : System.IO.Path.GetFileNameWithoutExtension(f.Path),
            Architecture = arch,
            ParameterCount = parameters,
            SizeBytes = f.FileSize,
            FileType = FileTypeName(f),
            ContextLength = (int)Math.Clamp(f.GetInteger($"{arch}.context_length") ?? 0, 0, int.MaxValue),
            EmbeddingLength = (int)Math.Clamp(f.GetInteger($"{arch}.embedding_length") ?? 0, 0, int.MaxValue),
            LayerCount = (int)Math.Clamp(f.GetInteger($"{arch}.block_count") ?? 0, 0, int.MaxValue),
            VocabularySize = tokens?.Length ?? 0,
            TokenizerModel = f.GetString("tokenizer.ggml.model"),
            TokenizerPreset = f.GetString("tokenizer.ggml.pre"),
            BosToken = TokenText("tokenizer.ggml.bos_token_id"),
            EosToken = TokenText("tokenizer.ggml.eos_token_id"),
            AddBosToken = f.GetBool("tokenizer.ggml.add_bos_token") ?? (f.GetString("tokenizer.ggml.model") == "llama"),
            ChatTemplate = f.GetString("tokenizer.chat_template"),
            IsVocabularyOnly = f.Tensors.Count == 0,
            GgufVersion = f.Version,
            TensorCount = f.Tensors.Count,
            Metadata = scalars,
        };
    }

    // llama_ftype values; the file's own statement wins, else the most common tensor type is reported.
    private static readonly Dictionary<long, string> FileTypes = new()
    {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
        [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M",
        [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K", [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S",
        [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M",
        [28] = "IQ2_S", [29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M", [32] = "BF16", [36] = "TQ1_0",
        [37] = "TQ2_0", [38] = "MXFP4_MOE",
    };

    private static string FileTypeName(GgufFile f)
    {
        if (f.GetInteger("general.file_type") is { } ft)
            return FileTypes.TryGetValue(ft, out var name) ? name : $"type {ft}";
        if (f.Tensors.Count == 0) return "none";
        return f.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => (double)t.ElementCount)).First().First().TypeName;
    }
}
