namespace LlmTools.Engine.Gguf;

/// <summary>
/// Refuses files that would make native llama.cpp abort the process (a crash of the user's pwsh session) or
/// misbehave silently. llama.cpp validates some things gracefully, but not all: a block count of 0 or over its layer
/// limit aborts at load, a NaN norm epsilon aborts at the first decode, a context length of 0 yields a null context.
/// So every hyperparameter that can be checked from the header is checked here, before native code sees the file.
/// </summary>
public static class GgufValidator
{
    /// <summary>LLAMA_MAX_LAYERS at the llama.cpp commit LLamaSharp 0.30.0 binds.</summary>
    public const int MaxLayers = 512;

    /// <summary>Checks the structure (tensor data inside the file) and, for a model with weights, its hyperparameters.</summary>
    public static void Validate(GgufFile file)
    {
        ValidateTensors(file);
        ValidateTokenizer(file);
        if (file.Tensors.Count > 0)
            ValidateHyperparameters(file);
    }

    /// <summary>Throws unless the file has weights: a vocabulary-only file can tokenize but not generate.</summary>
    public static void RequireWeights(GgufFile file)
    {
        if (file.Tensors.Count == 0)
            throw new LlmException("VocabularyOnlyModel", LlmErrorKind.InvalidArgument,
                $"'{file.Path}' holds only a tokenizer vocabulary (no weights), so it cannot generate text. " +
                "It can count tokens (Measure-LlmToken); for generation choose a full model file.", file.Path);
    }

    private static void ValidateTensors(GgufFile file)
    {
        long dataBytes = file.FileSize - file.DataOffset;
        if (file.Tensors.Count > 0 && dataBytes < 0)
            throw GgufFile.Corrupt(file.Path, "the file ends before its tensor data begins (the file is truncated)");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in file.Tensors)
        {
            if (!names.Add(t.Name))
                throw GgufFile.Corrupt(file.Path, $"tensor '{t.Name}' appears twice");
            if (t.Offset % file.Alignment != 0)
                throw GgufFile.Corrupt(file.Path, $"tensor '{t.Name}' is not aligned to {file.Alignment} bytes");
            ulong elements;
            try { elements = t.ElementCount; }
            catch (OverflowException) { throw GgufFile.Corrupt(file.Path, $"tensor '{t.Name}' has more elements than can be counted"); }
            ulong? size;
            try { size = GgmlTypes.ByteSize(t.Type, elements, t.Dimensions[0]); }
            catch (OverflowException) { throw GgufFile.Corrupt(file.Path, $"tensor '{t.Name}' is larger than can be counted"); }
            if (size == ulong.MaxValue)
                throw GgufFile.Corrupt(file.Path, $"tensor '{t.Name}' ({t.TypeName}) has a row length {t.Dimensions[0]} that is not a whole number of blocks");
            // A type this table does not know is left to llama.cpp, which rejects unknown types without aborting.
            if (size is { } s && (t.Offset > (ulong)dataBytes || s > (ulong)dataBytes - t.Offset))
                throw GgufFile.Corrupt(file.Path,
                    $"tensor '{t.Name}' needs bytes {t.Offset}..{t.Offset + s} of the data section but the file holds only {dataBytes} (the file is truncated)");
        }
    }

    private static void ValidateTokenizer(GgufFile file)
    {
        if (file.GetArray("tokenizer.ggml.tokens") is not { } tokens)
        {
            if (file.Tensors.Count == 0)
                throw GgufFile.Corrupt(file.Path, "it has neither weights nor a tokenizer vocabulary");
            return; // llama.cpp reports a missing vocabulary itself, without aborting
        }
        if (tokens is not string[] || tokens.Length == 0)
            throw GgufFile.Corrupt(file.Path, "tokenizer.ggml.tokens is not a non-empty list of strings");
        foreach (var key in new[] { "tokenizer.ggml.scores", "tokenizer.ggml.token_type" })
            if (file.GetArray(key) is { } a && a.Length != tokens.Length)
                throw GgufFile.Corrupt(file.Path, $"{key} has {a.Length} entries for {tokens.Length} tokens");
        foreach (var key in new[] { "bos", "eos", "eot", "eom", "unknown", "seperator", "padding", "mask" })
            // -1 (or its unsigned form) means "no such token".
            if (file.GetInteger($"tokenizer.ggml.{key}_token_id") is { } id && id != uint.MaxValue && (id < -1 || id >= tokens.Length))
                throw GgufFile.Corrupt(file.Path, $"tokenizer.ggml.{key}_token_id is {id}, outside the vocabulary of {tokens.Length} tokens");
    }

    private static void ValidateHyperparameters(GgufFile file)
    {
        string arch = file.GetString("general.architecture")
            ?? throw GgufFile.Corrupt(file.Path, "general.architecture is missing");
        string Key(string name) => $"{arch}.{name}";

        long blocks = RequirePositive(file, Key("block_count"));
        if (blocks > MaxLayers)
            throw GgufFile.Corrupt(file.Path, $"{Key("block_count")} is {blocks}, above llama.cpp's limit of {MaxLayers} layers");
        long context = RequirePositive(file, Key("context_length"));
        if (context > int.MaxValue)
            throw GgufFile.Corrupt(file.Path, $"{Key("context_length")} is {context}, above what llama.cpp can address");
        long embedding = RequirePositive(file, Key("embedding_length"));

        long? heads = CheckPerLayer(file, Key("attention.head_count"), blocks, requirePositiveScalar: true);
        long? kvHeads = CheckPerLayer(file, Key("attention.head_count_kv"), blocks, requirePositiveScalar: true);
        CheckPerLayer(file, Key("feed_forward_length"), blocks, requirePositiveScalar: false);
        if (heads is > 0 && kvHeads is > 0 && heads % kvHeads != 0)
            throw GgufFile.Corrupt(file.Path, $"{heads} attention heads cannot be shared by {kvHeads} key/value heads");
        if (heads is > 0 && file.GetInteger(Key("attention.key_length")) is null && embedding % heads != 0)
            throw GgufFile.Corrupt(file.Path, $"{Key("embedding_length")} {embedding} is not a multiple of {heads} attention heads");
        if (file.GetInteger(Key("rope.dimension_count")) is { } ropeDims && (ropeDims < 0 || ropeDims > embedding))
            throw GgufFile.Corrupt(file.Path, $"{Key("rope.dimension_count")} is {ropeDims}");

        foreach (var name in new[]
                 {
                     "attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.freq_base",
                     "rope.scaling.factor", "rope.freq_scale", "attention.scale", "logit_scale",
                 })
        {
            if (file.Metadata.TryGetValue(Key(name), out var raw))
            {
                double? v = file.GetFloat(Key(name));
                if (v is null || !double.IsFinite(v.Value) || v.Value < 0 || (v.Value == 0 && name.Contains("epsilon")))
                    throw GgufFile.Corrupt(file.Path, $"{Key(name)} is {raw} (it must be a finite positive number)");
            }
        }

        if (file.Tensors.FirstOrDefault(t => t.Name == "token_embd.weight") is { } embd
            && file.GetArray("tokenizer.ggml.tokens") is { } tokens
            && embd.Dimensions.Length == 2 && embd.Dimensions[1] != (ulong)tokens.Length)
            throw GgufFile.Corrupt(file.Path, $"token_embd.weight has {embd.Dimensions[1]} rows for {tokens.Length} vocabulary tokens");
    }

    private static long RequirePositive(GgufFile file, string key)
    {
        if (!file.Metadata.ContainsKey(key))
            throw GgufFile.Corrupt(file.Path, $"{key} is missing");
        long? v = file.GetInteger(key);
        if (v is null or <= 0)
            throw GgufFile.Corrupt(file.Path, $"{key} is {file.Metadata[key]} (it must be a positive integer)");
        return v.Value;
    }

    /// <summary>A hyperparameter that is either one value or one per layer. Returns the scalar, if it is one.</summary>
    private static long? CheckPerLayer(GgufFile file, string key, long blocks, bool requirePositiveScalar)
    {
        if (!file.Metadata.TryGetValue(key, out var raw)) return null;
        if (raw is Array arr)
        {
            if (arr.Length != blocks)
                throw GgufFile.Corrupt(file.Path, $"{key} lists {arr.Length} values for {blocks} layers");
            foreach (var o in arr)
                if (Convert.ToInt64(o) < 0)
                    throw GgufFile.Corrupt(file.Path, $"{key} holds the negative value {o}");
            return null;
        }
        long? v = file.GetInteger(key);
        if (v is null || v < 0 || (requirePositiveScalar && v == 0))
            throw GgufFile.Corrupt(file.Path, $"{key} is {raw}");
        return v;
    }
}
