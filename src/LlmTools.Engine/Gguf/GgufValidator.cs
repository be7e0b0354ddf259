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

    /// <summary>LLAMA_MAX_EXPERTS at that commit: more experts abort the process in GGML_ASSERT.</summary>
    public const int MaxExperts = 512;

    /// <summary>ggml's TENSOR_ALIGNMENT: mapped tensor data must start on it.</summary>
    public const int TensorAlignment = 32;

    // llama_rope_scaling_type names; any other string aborts in GGML_ASSERT (rope_scaling_type_train != UNSPECIFIED).
    private static readonly string[] RopeScalingTypes = ["none", "linear", "yarn", "longrope"];

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
            // Mapped from the file, tensor data must start on ggml's TENSOR_ALIGNMENT (32) or ggml-backend aborts;
            // a general.alignment below 32 can leave it short.
            if (((ulong)file.DataOffset + t.Offset) % TensorAlignment != 0)
                throw GgufFile.Corrupt(file.Path, $"tensor '{t.Name}' data does not start on a {TensorAlignment}-byte boundary (general.alignment is {file.Alignment})");
            // Integer, F64 and Q8_K tensors have no matrix kernels in ggml's CPU backend: a weight of such a type
            // crashes the first decode (a null function pointer), where llama.cpp itself does not check.
            if (t.Type is 15 or (>= 24 and <= 28))
                throw GgufFile.Corrupt(file.Path, $"tensor '{t.Name}' is stored as {t.TypeName}, which llama.cpp cannot compute with");
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
        if (file.GetArray("tokenizer.ggml.tokens") is not { } tokenArray)
        {
            if (file.Metadata.ContainsKey("tokenizer.ggml.tokens"))
                throw GgufFile.Corrupt(file.Path, "tokenizer.ggml.tokens is not a list of strings");
            if (file.Tensors.Count == 0)
                throw GgufFile.Corrupt(file.Path, "it has neither weights nor a tokenizer vocabulary");
            return; // llama.cpp reports a missing vocabulary itself, without aborting
        }
        // llama.cpp reads list entries with gguf_get_arr_str (which aborts on a list of another type) and keeps each
        // as a C string: the text stops at the first NUL byte.
        if (tokenArray is not string[] tokens || tokens.Length == 0)
            throw GgufFile.Corrupt(file.Path, "tokenizer.ggml.tokens is not a non-empty list of strings");
        if (file.GetArray("tokenizer.ggml.scores") is { } scores && scores is not float[])
            throw GgufFile.Corrupt(file.Path, "tokenizer.ggml.scores is not a list of 32-bit floats");
        var types = file.GetArray("tokenizer.ggml.token_type");
        if (types is not null && types is not (int[] or uint[]))
            throw GgufFile.Corrupt(file.Path, "tokenizer.ggml.token_type is not a list of 32-bit integers");
        foreach (var key in new[] { "tokenizer.ggml.scores", "tokenizer.ggml.token_type" })
        {
            if (file.Metadata.TryGetValue(key, out var v) && v is not Array)
                throw GgufFile.Corrupt(file.Path, $"{key} is not a list");
            if (file.GetArray(key) is { } a && a.Length != tokens.Length)
                throw GgufFile.Corrupt(file.Path, $"{key} has {a.Length} entries for {tokens.Length} tokens");
        }

        // Token texts as llama.cpp sees them. Duplicates abort (GGML_ASSERT id_to_token.size() == token_to_id.size()).
        var ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
        {
            string text = CText(tokens[i]);
            if (text.Length == 0)
                throw GgufFile.Corrupt(file.Path, $"vocabulary token {i} is empty");
            if (!ids.TryAdd(text, i))
                throw GgufFile.Corrupt(file.Path, $"vocabulary tokens {ids[text]} and {i} are the same text '{Printable(text)}'");
        }

        foreach (var (key, value) in file.Metadata)
        {
            if (!key.StartsWith("tokenizer.ggml.", StringComparison.Ordinal) || !key.EndsWith("_token_id", StringComparison.Ordinal))
                continue;
            // -1 (or its unsigned form) means "no such token".
            long? id = value is Array ? null : file.GetInteger(key);
            if (id is null)
                throw GgufFile.Corrupt(file.Path, $"{key} is not a token id");
            if (id != uint.MaxValue && id != long.MaxValue && (id < -1 || id >= tokens.Length))
                throw GgufFile.Corrupt(file.Path, $"{key} is {id}, outside the vocabulary of {tokens.Length} tokens");
        }

        string model = file.Metadata.TryGetValue("tokenizer.ggml.model", out var m) ? m as string ?? "" : "";
        if (types is not null)
        {
            // Only SentencePiece-style vocabularies have byte tokens: for the others llama.cpp's token_to_byte is
            // GGML_ABORT, reached as soon as such a token is turned back into text.
            bool bytesAllowed = model is "llama" or "t5" or "plamo2";
            if (!bytesAllowed)
                for (int i = 0; i < tokens.Length; i++)
                    if (Convert.ToInt64(types.GetValue(i)) == 6)
                        throw GgufFile.Corrupt(file.Path, $"vocabulary token {i} is marked as a byte, which a '{model}' vocabulary cannot have");
            // A BYTE token is read back as the hex digits of "<0xXX>": a shorter text makes substr throw (abort).
            for (int i = 0; i < tokens.Length; i++)
                if (Convert.ToInt64(types.GetValue(i)) == 6 && !IsByteToken(CText(tokens[i])))
                    throw GgufFile.Corrupt(file.Path, $"vocabulary token {i} '{Printable(tokens[i])}' is marked as a byte but is not of the form <0xXX>");
        }

        switch (model)
        {
            case "llama":
                // SentencePiece byte fallback: any character not in the vocabulary becomes its UTF-8 bytes, looked up
                // as <0xXX> (else as the bare byte) with std::map::at, which throws std::out_of_range (abort) when
                // neither exists. Every byte that UTF-8 text can contain must therefore be there.
                for (int b = 0; b < 256; b++)
                {
                    if (b is 0xC0 or 0xC1 or >= 0xF5) continue; // never in UTF-8 text
                    if (ids.ContainsKey($"<0x{b:X2}>")) continue;
                    if (b != 0 && ids.ContainsKey(b < 0x80 ? ((char)b).ToString() : ((char)(0xDC00 + b)).ToString())) continue;
                    throw GgufFile.Corrupt(file.Path,
                        $"its SentencePiece vocabulary lacks the byte token <0x{b:X2}>, so text needing that byte would abort llama.cpp");
                }
                break;
            case "gpt2":
                ValidateMerges(file, ids);
                break;
        }
    }

    private static void ValidateMerges(GgufFile file, Dictionary<string, int> ids)
    {
        if (!file.Metadata.TryGetValue("tokenizer.ggml.merges", out var raw))
            return; // llama.cpp refuses a BPE vocabulary without merges itself
        if (raw is not string[] merges)
            throw GgufFile.Corrupt(file.Path, "tokenizer.ggml.merges is not a list of strings");
        for (int i = 0; i < merges.Length; i++)
        {
            string merge = CText(merges[i]);
            int space = merge.Length > 1 ? merge.IndexOf(' ', 1) : -1;
            if (space < 0)
                throw GgufFile.Corrupt(file.Path, $"merge {i} '{Printable(merge)}' is not two tokens separated by a space");
            string left = merge[..space], right = merge[(space + 1)..];
            foreach (var part in new[] { left, right, left + right })
                if (!ids.ContainsKey(part))
                    throw GgufFile.Corrupt(file.Path, $"merge {i} '{Printable(merge)}' refers to '{Printable(part)}', which is not in the vocabulary");
        }
    }

    /// <summary>The text llama.cpp keeps of a GGUF string read as a C string: up to the first NUL.</summary>
    private static string CText(string s) => s.IndexOf('\0') is var nul and >= 0 ? s[..nul] : s;

    private static bool IsByteToken(string s) =>
        s.Length == 6 && s.StartsWith("<0x", StringComparison.Ordinal) && s[5] == '>' && Uri.IsHexDigit(s[3]) && Uri.IsHexDigit(s[4]);

    private static string Printable(string s)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var c in s.Length > 40 ? s[..40] : s)
            sb.Append(char.IsControl(c) || char.IsSurrogate(c) ? $"\\u{(int)c:X4}" : c.ToString());
        return sb.ToString();
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

        long[]? headArr = null, kvArr = null;
        long? heads = CheckPerLayer(file, Key("attention.head_count"), blocks, requirePositiveScalar: true, ref headArr);
        long? kvHeads = CheckPerLayer(file, Key("attention.head_count_kv"), blocks, requirePositiveScalar: true, ref kvArr);
        long[]? ffArr = null;
        CheckPerLayer(file, Key("feed_forward_length"), blocks, requirePositiveScalar: false, ref ffArr);
        if (heads is > 0 && kvHeads is > 0 && heads % kvHeads != 0)
            throw GgufFile.Corrupt(file.Path, $"{heads} attention heads cannot be shared by {kvHeads} key/value heads");
        for (int il = 0; il < blocks; il++)
        {
            long h = headArr?[il] ?? heads ?? 0, kv = kvArr?[il] ?? kvHeads ?? 0;
            if (h > 0 && kv > 0 && h % kv != 0)
                throw GgufFile.Corrupt(file.Path, $"layer {il}: {h} attention heads cannot be shared by {kv} key/value heads");
        }
        if (heads is > 0 && file.GetInteger(Key("attention.key_length")) is null && embedding % heads != 0)
            throw GgufFile.Corrupt(file.Path, $"{Key("embedding_length")} {embedding} is not a multiple of {heads} attention heads");

        // Other per-layer lists are read as numbers (a string list aborts in get_arr's type assertion).
        foreach (var (k, v) in file.Metadata)
            if (k.StartsWith(arch + ".", StringComparison.Ordinal) && v is Array arr && arr is not (int[] or uint[] or float[] or bool[]))
                throw GgufFile.Corrupt(file.Path, $"{k} is a list of {arr.GetType().GetElementType()!.Name}, where llama.cpp reads numbers");

        ValidateExperts(file, Key);

        if (file.Metadata.TryGetValue(Key("rope.scaling.type"), out var scaling)
            && (scaling is not string st || !RopeScalingTypes.Contains(st)))
            throw GgufFile.Corrupt(file.Path, $"{Key("rope.scaling.type")} is '{scaling}' (llama.cpp knows {string.Join(", ", RopeScalingTypes)})");

        if (arch == "llama" && heads is > 0)
        {
            // llama's graph asserts that the head size is the same for keys, values and rotary embedding.
            long headK = file.GetInteger(Key("attention.key_length")) ?? embedding / heads.Value;
            long headV = file.GetInteger(Key("attention.value_length")) ?? embedding / heads.Value;
            long rot = file.GetInteger(Key("rope.dimension_count")) ?? headK;
            if (headK != headV || rot != headK)
                throw GgufFile.Corrupt(file.Path, $"its attention head sizes differ (keys {headK}, values {headV}, rotary {rot}), which llama models cannot run");
        }
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

    // llama.cpp's load_hparams: GGML_ASSERTs on expert counts (each one an abort, not an error).
    private static void ValidateExperts(GgufFile file, Func<string, string> key)
    {
        long experts = Count(file, key("expert_count"));
        long used = Count(file, key("expert_used_count"));
        if (experts > MaxExperts)
            throw GgufFile.Corrupt(file.Path, $"{key("expert_count")} is {experts}, above llama.cpp's limit of {MaxExperts} experts");
        if (used > experts)
            throw GgufFile.Corrupt(file.Path, $"{key("expert_used_count")} is {used}, more than the {experts} experts ({key("expert_count")})");
        if (experts > 0 && used == 0)
            throw GgufFile.Corrupt(file.Path, $"{key("expert_used_count")} is 0 (or missing) for a model with {experts} experts");
        long groups = Count(file, key("expert_group_count"));
        long groupsUsed = Count(file, key("expert_group_used_count"));
        if (groups > 0)
        {
            if (groups >= experts || experts % groups != 0)
                throw GgufFile.Corrupt(file.Path, $"{experts} experts cannot be split into {groups} groups ({key("expert_group_count")})");
            if (groupsUsed == 0 || groupsUsed >= groups)
                throw GgufFile.Corrupt(file.Path, $"{key("expert_group_used_count")} is {groupsUsed} for {groups} expert groups");
        }
    }

    private static long Count(GgufFile file, string key)
    {
        if (!file.Metadata.TryGetValue(key, out var raw)) return 0;
        if (file.GetInteger(key) is not { } v || v < 0 || v > uint.MaxValue)
            throw GgufFile.Corrupt(file.Path, $"{key} is {raw} (it must be a count)");
        return v;
    }

    /// <summary>
    /// A hyperparameter that is either one value or one per layer. Returns the scalar, if it is one; a list is
    /// returned in <paramref name="perLayer"/>. llama.cpp reads such lists as 32-bit integers and aborts on another type.
    /// </summary>
    private static long? CheckPerLayer(GgufFile file, string key, long blocks, bool requirePositiveScalar, ref long[]? perLayer)
    {
        if (!file.Metadata.TryGetValue(key, out var raw)) return null;
        if (raw is Array arr)
        {
            long[] values = arr switch
            {
                int[] i => i.Select(x => (long)x).ToArray(),
                uint[] u => u.Select(x => (long)x).ToArray(),
                _ => throw GgufFile.Corrupt(file.Path, $"{key} is a list of {arr.GetType().GetElementType()!.Name}, not of 32-bit integers"),
            };
            if (values.Length != blocks)
                throw GgufFile.Corrupt(file.Path, $"{key} lists {values.Length} values for {blocks} layers");
            foreach (var v in values)
                if (v < 0)
                    throw GgufFile.Corrupt(file.Path, $"{key} holds the negative value {v}");
            perLayer = values;
            return null;
        }
        long? s = file.GetInteger(key);
        if (s is null || s < 0 || s > uint.MaxValue || (requirePositiveScalar && s == 0))
            throw GgufFile.Corrupt(file.Path, $"{key} is {raw}");
        return s;
    }
}
