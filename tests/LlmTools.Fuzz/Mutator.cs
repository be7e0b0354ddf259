namespace LlmTools.Fuzz;

/// <summary>
/// Seeded GGUF mutations: raw damage to the header bytes (flips, extreme integers, truncation) and structured damage
/// (hyperparameters at extremes or of the wrong type, per-layer lists, vocabulary and tokenizer damage, tensor
/// descriptions). The same seed and base file always give the same mutant.
/// </summary>
public static class Mutator
{
    private static readonly ulong[] Extremes =
    [
        0, 1, 2, 3, 7, 8, 31, 32, 33, 63, 64, 255, 256, 511, 512, 513, 1023, 1024, 4096, 65535, 65536,
        0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ulong.MaxValue,
        ulong.MaxValue - 1, 0xFFFFFFFE,
    ];

    private static readonly float[] ExtremeFloats =
    [
        0f, -0f, 1f, -1f, 1e-30f, 1e30f, float.MaxValue, float.MinValue, float.Epsilon, float.NaN,
        float.PositiveInfinity, float.NegativeInfinity, 1e-5f, 0.5f, 10000f,
    ];

    // Hyperparameters read by llama.cpp for llama-like models (suffixes after "<arch>.").
    private static readonly string[] ArchKeys =
    [
        "block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count",
        "attention.head_count_kv", "attention.key_length", "attention.value_length", "rope.dimension_count",
        "attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.freq_base", "rope.freq_scale",
        "rope.scaling.factor", "rope.scaling.type", "rope.scaling.original_context_length", "expert_count",
        "expert_used_count", "expert_group_count", "expert_group_used_count", "vocab_size", "attention.sliding_window",
        "logit_scale", "attention.scale", "attention.clamp_kqv", "attention.max_alibi_bias", "expert_shared_count",
        "leading_dense_block_count", "rope.dimension_sections", "attention.causal", "pooling_type", "decoder_start_token_id",
        "embedding_scale", "residual_scale", "final_logit_softcapping", "attn_logit_softcapping",
    ];

    private static readonly string[] TokenizerKeys =
    [
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.seperator_token_id",
        "tokenizer.ggml.mask_token_id", "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.eom_token_id",
        "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix",
        "tokenizer.ggml.remove_extra_whitespaces", "tokenizer.ggml.model", "tokenizer.ggml.pre",
        "tokenizer.ggml.precompiled_charsmap", "tokenizer.ggml.merges", "general.alignment", "general.architecture",
        "tokenizer.chat_template", "general.file_type",
    ];

    private static readonly string[] TokenizerModels = ["llama", "gpt2", "bert", "t5", "rwkv", "none", "no_vocab", "plamo2", "unknown", ""];
    private static readonly string[] Architectures = ["llama", "qwen2", "qwen3", "gemma", "gemma3", "phi3", "mamba", "rwkv6", "bert", "t5", "deepseek2", "qwen3moe", "mixtral", "gpt2", "llama4", "nonexistent"];

    public static (byte[] Bytes, string Description) Mutate(byte[] original, GgufImage parsed, Random rng)
    {
        var notes = new List<string>();
        byte[] bytes;
        int kind = rng.Next(10);
        if (kind < 6)
        {
            // Structured damage, one to three edits, re-serialised.
            var image = Clone(parsed);
            string arch = image.Get("general.architecture") as string ?? "llama";
            int edits = 1 + rng.Next(3);
            for (int i = 0; i < edits; i++) notes.Add(Structured(image, arch, rng));
            bytes = image.ToBytes();
        }
        else
        {
            bytes = (byte[])original.Clone();
        }
        if (kind >= 6 || rng.Next(4) == 0) notes.Add(Raw(ref bytes, rng));
        return (bytes, string.Join("; ", notes));
    }

    private static GgufImage Clone(GgufImage p)
    {
        var c = new GgufImage { Version = p.Version, Data = p.Data };
        foreach (var (k, v) in p.Metadata) c.Metadata.Add((k, v is Array a ? (Array)a.Clone() : v));
        c.Tensors.AddRange(p.Tensors);
        return c;
    }

    private static int HeaderEnd(byte[] bytes)
    {
        // The header is everything before the tensor data; without parsing, the first 64 KiB (or the whole file).
        return Math.Min(bytes.Length, 1 << 16);
    }

    private static string Raw(ref byte[] bytes, Random rng)
    {
        int end = HeaderEnd(bytes);
        switch (rng.Next(5))
        {
            case 0:
            {
                int n = 1 + rng.Next(8);
                for (int i = 0; i < n; i++) bytes[rng.Next(end)] ^= (byte)(1 << rng.Next(8));
                return $"flipped {n} header bits";
            }
            case 1:
            {
                // The counts and version at the start, or a random aligned word.
                int at = rng.Next(3) == 0 ? new[] { 4, 8, 16 }[rng.Next(3)] : rng.Next(Math.Max(1, end - 8)) & ~3;
                ulong v = Extremes[rng.Next(Extremes.Length)];
                if (at + 8 <= bytes.Length) BitConverter.TryWriteBytes(bytes.AsSpan(at, 8), v);
                return $"wrote {v} at byte {at}";
            }
            case 2:
            {
                int at = rng.Next(Math.Max(1, end - 4)) & ~3;
                uint v = (uint)Extremes[rng.Next(Extremes.Length)];
                if (at + 4 <= bytes.Length) BitConverter.TryWriteBytes(bytes.AsSpan(at, 4), v);
                return $"wrote u32 {v} at byte {at}";
            }
            case 3:
            {
                int keep = rng.Next(2) == 0 ? rng.Next(bytes.Length) : bytes.Length - 1 - rng.Next(Math.Min(bytes.Length - 1, 4096));
                bytes = bytes[..keep];
                return $"truncated to {keep} bytes";
            }
            default:
            {
                int at = rng.Next(end);
                int n = Math.Min(1 + rng.Next(64), bytes.Length - at);
                byte fill = (byte)(rng.Next(2) == 0 ? 0xFF : rng.Next(256));
                bytes.AsSpan(at, n).Fill(fill);
                return $"filled {n} bytes at {at} with {fill}";
            }
        }
    }

    private static object ExtremeValue(Random rng, int blocks)
    {
        ulong e = Extremes[rng.Next(Extremes.Length)];
        return rng.Next(14) switch
        {
            0 or 1 or 2 => (uint)e,
            3 => (int)e,
            4 => e,
            5 => (long)e,
            6 or 7 => ExtremeFloats[rng.Next(ExtremeFloats.Length)],
            8 => rng.Next(2) == 0 ? "yarn" : new string('x', rng.Next(5)),
            9 => Enumerable.Range(0, rng.Next(2) == 0 ? blocks : rng.Next(blocks + 3)).Select(_ => (uint)Extremes[rng.Next(Extremes.Length)]).ToArray(),
            10 => Enumerable.Range(0, blocks).Select(_ => (int)Extremes[rng.Next(Extremes.Length)]).ToArray(),
            11 => Enumerable.Range(0, blocks).Select(_ => ExtremeFloats[rng.Next(ExtremeFloats.Length)]).ToArray(),
            12 => rng.Next(2) == 0,
            _ => Enumerable.Range(0, blocks).Select(i => i.ToString()).ToArray(),
        };
    }

    private static string Structured(GgufImage image, string arch, Random rng)
    {
        int blocks = image.Get($"{arch}.block_count") is uint b && b < 1024 ? (int)b : 2;
        switch (rng.Next(12))
        {
            case 0: case 1: case 2:
            {
                string key = $"{arch}.{ArchKeys[rng.Next(ArchKeys.Length)]}";
                var v = rng.Next(6) == 0 ? null : ExtremeValue(rng, blocks);
                image.Set(key, v);
                return $"{key} = {Show(v)}";
            }
            case 3:
            {
                // A plausible but different value: off by one, doubled, halved.
                var (key, value) = image.Metadata.Where(m => m.Key.StartsWith(arch + ".", StringComparison.Ordinal) && m.Value is uint).OrderBy(_ => rng.Next()).FirstOrDefault();
                if (key is null) return "no numeric hyperparameter";
                uint u = (uint)value;
                uint nv = rng.Next(4) switch { 0 => u + 1, 1 => u - 1, 2 => u * 2, _ => u / 2 };
                image.Set(key, nv);
                return $"{key} {u} -> {nv}";
            }
            case 4:
            {
                string key = TokenizerKeys[rng.Next(TokenizerKeys.Length)];
                object? v = key switch
                {
                    "tokenizer.ggml.model" => TokenizerModels[rng.Next(TokenizerModels.Length)],
                    "general.architecture" => Architectures[rng.Next(Architectures.Length)],
                    "tokenizer.ggml.merges" => rng.Next(3) switch
                    {
                        0 => new[] { "a b", "\u2581 t", "x" },
                        1 => new[] { "", " ", "a  b" },
                        _ => Enumerable.Range(0, 50).Select(i => $"{(char)('a' + i % 26)} {(char)('a' + (i * 7) % 26)}").ToArray(),
                    },
                    "tokenizer.ggml.precompiled_charsmap" => Enumerable.Range(0, rng.Next(12)).Select(_ => (byte)rng.Next(256)).ToArray(),
                    "tokenizer.chat_template" => rng.Next(2) == 0 ? "{{ messages" : "{% for m in messages %}{{ m.content }}{% endfor %}",
                    _ => rng.Next(5) == 0 ? null : ExtremeValue(rng, 2),
                };
                image.Set(key, v);
                return $"{key} = {Show(v)}";
            }
            case 5: case 6:
                return Vocabulary(image, rng);
            case 7:
            {
                if (image.Tensors.Count == 0) return "no tensors";
                int i = rng.Next(image.Tensors.Count);
                var t = image.Tensors[i];
                var dims = (ulong[])t.Dimensions.Clone();
                string what;
                switch (rng.Next(4))
                {
                    case 0:
                        dims[rng.Next(dims.Length)] = Extremes[rng.Next(Extremes.Length)] switch { 0 => 1, var x => Math.Min(x, long.MaxValue) };
                        what = "dimension";
                        break;
                    case 1:
                        image.Tensors[i] = t with { Type = (uint)rng.Next(42) };
                        return $"tensor {t.Name} type -> {image.Tensors[i].Type}";
                    case 2:
                        image.Tensors[i] = t with { Offset = t.Offset + (ulong)(32 * rng.Next(-2, 3)) };
                        return $"tensor {t.Name} offset moved";
                    default:
                        image.Tensors.RemoveAt(i);
                        return $"tensor {t.Name} removed";
                }
                image.Tensors[i] = t with { Dimensions = dims };
                return $"tensor {t.Name} {what} -> [{string.Join(",", dims)}]";
            }
            case 8:
            {
                // A scalar replaced by a list, or a list by a scalar.
                var (key, value) = image.Metadata.OrderBy(_ => rng.Next()).First();
                object nv = value is Array a ? (a.Length > 0 ? a.GetValue(0)! : 0u) : new[] { value.ToString() ?? "" };
                if (value is uint u && rng.Next(2) == 0) nv = Enumerable.Repeat(u, blocks).ToArray();
                image.Set(key, nv);
                return $"{key} scalar/list swapped";
            }
            case 9:
                image.Version = (uint)rng.Next(5);
                return $"version {image.Version}";
            default:
            {
                // Remove a key outright.
                var (key, _) = image.Metadata.OrderBy(_ => rng.Next()).First();
                image.Set(key, null);
                return $"{key} removed";
            }
        }
    }

    private static string Vocabulary(GgufImage image, Random rng)
    {
        if (image.Get("tokenizer.ggml.tokens") is not string[] tokens || tokens.Length < 4) return "no vocabulary";
        tokens = (string[])tokens.Clone();
        var types = image.Get("tokenizer.ggml.token_type") as int[];
        types = types is null ? null : (int[])types.Clone();
        int i = rng.Next(tokens.Length), j = rng.Next(tokens.Length);
        string what;
        switch (rng.Next(9))
        {
            case 0: tokens[i] = ""; what = $"token {i} emptied"; break;
            case 1: tokens[i] = tokens[j]; what = $"token {i} = token {j}"; break;
            case 2:
            {
                // Remove the byte tokens, or some of them.
                int lo = rng.Next(256), n = 0;
                for (int k = 0; k < tokens.Length; k++)
                    if (tokens[k].Length == 6 && tokens[k].StartsWith("<0x", StringComparison.Ordinal) && Convert.ToInt32(tokens[k][3..5], 16) >= lo)
                    {
                        tokens[k] = $"nobyte{k}";
                        n++;
                    }
                what = $"{n} byte tokens from <0x{lo:X2}> renamed";
                break;
            }
            case 3: tokens[i] = "\0" + tokens[i]; what = $"token {i} starts with NUL"; break;
            case 4: tokens[i] = tokens[i] + "\uDCFF"; what = $"token {i} gets an invalid byte"; break;
            case 5:
                if (types is null) return "no token types";
                types[i] = new[] { -1, 0, 1, 2, 3, 4, 5, 6, 7, 1 << 20, int.MaxValue, int.MinValue }[rng.Next(12)];
                image.Set("tokenizer.ggml.token_type", types);
                return $"token {i} type -> {types[i]}";
            case 6:
            {
                // The lists made shorter or longer than the vocabulary.
                string key = new[] { "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type" }[rng.Next(3)];
                if (image.Get(key) is not Array a) return $"no {key}";
                int len = Math.Max(0, a.Length + rng.Next(-3, 4));
                var b = Array.CreateInstance(a.GetType().GetElementType()!, len);
                Array.Copy(a, b, Math.Min(len, a.Length));
                if (b is string[] s) for (int k = a.Length; k < len; k++) s[k] = $"extra{k}";
                image.Set(key, b);
                return $"{key} length {a.Length} -> {len}";
            }
            case 7:
                tokens = tokens[..Math.Max(1, rng.Next(tokens.Length))];
                what = $"vocabulary cut to {tokens.Length}";
                break;
            default:
                tokens[i] = new string('a', rng.Next(2) == 0 ? 1 : 300); what = $"token {i} replaced"; break;
        }
        image.Set("tokenizer.ggml.tokens", tokens);
        return what;
    }

    private static string Show(object? v) => v switch
    {
        null => "(removed)",
        string s => $"'{(s.Length > 20 ? s[..20] : s)}'",
        Array a => $"{a.GetType().GetElementType()!.Name}[{a.Length}]",
        _ => $"{v} ({v.GetType().Name})",
    };
}
