namespace LlmTools.TestModels;

/// <summary>Shape and contents of a generated model.</summary>
public sealed class TinyModelOptions
{
    public int Seed { get; set; } = 1234;
    public int Embedding { get; set; } = 64;
    public int Layers { get; set; } = 2;
    public int Heads { get; set; } = 4;
    public int KvHeads { get; set; } = 2;
    public int FeedForward { get; set; } = 128;
    public int ContextLength { get; set; } = 512;
    /// <summary>Store the large matrices as Q8_0 instead of F32.</summary>
    public bool Q8 { get; set; }
    /// <summary>Use this vocabulary (tokens, scores, types) instead of the generated one.</summary>
    public (string[] Tokens, float[] Scores, int[] Types)? Vocabulary { get; set; }
    /// <summary>Extra control tokens (e.g. "&lt;|im_start|&gt;") appended to the vocabulary.</summary>
    public string[] ControlTokens { get; set; } = [];
    /// <summary>Stored as tokenizer.chat_template when set.</summary>
    public string? ChatTemplate { get; set; }
    /// <summary>Token (text) to declare as EOT/EOS instead of "&lt;/s&gt;", e.g. "&lt;|im_end|&gt;".</summary>
    public string? EndOfTurnToken { get; set; }
    /// <summary>Metadata to set after the defaults (a value of null removes the key): for malformed files.</summary>
    public Dictionary<string, object?> Overrides { get; set; } = [];
    public string Name { get; set; } = "tiny-llama-test";
}

/// <summary>A tiny chat-shaped model: ChatML special tokens, template and end-of-turn token.</summary>
public static class TinyChatModel
{
    public const string ChatMl =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// <summary>ChatML with Qwen2.5's tool block and its rendering of tool calls and tool results (written here, not copied).</summary>
    public const string HermesToolsTemplate =
        "{%- if tools %}<|im_start|>system\n{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}" +
        "# Tools\n<tools>\n{%- for tool in tools %}\n{{ tool | tojson }}\n{%- endfor %}\n</tools>\n" +
        "Call a function like this:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" +
        "{%- elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{%- endif %}\n" +
        "{%- for message in messages %}{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}" +
        "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n" +
        "{%- elif message.role == 'assistant' %}<|im_start|>assistant{% if message.content %}\n{{ message.content }}{% endif %}" +
        "{%- for tc in message.tool_calls %}\n<tool_call>\n{\"name\": \"{{ tc.function.name }}\", \"arguments\": {{ tc.function.arguments | tojson }}}\n</tool_call>{%- endfor %}<|im_end|>\n" +
        "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n{%- endif %}{%- endfor %}" +
        "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}";

    public static TinyModelOptions Options(int seed = 1234) => new()
    {
        Seed = seed,
        Name = "tiny-chat-test",
        ControlTokens = ["<|im_start|>", "<|im_end|>"],
        EndOfTurnToken = "<|im_end|>",
        ChatTemplate = ChatMl,
        ContextLength = 1024,
    };

    public static string Write(string path) => TinyModel.Write(path, Options());
}

/// <summary>
/// Writes a small llama-architecture GGUF with seeded random weights and a real SentencePiece-style vocabulary
/// (control tokens, 256 byte-fallback tokens, and merge pieces for a few hundred English words), which llama.cpp
/// loads and runs like any other llama model.
/// </summary>
public static class TinyModel
{
    private const string Words =
        "the a an and to of in is was it he she they we you i that for on with as at by from his her their this " +
        "there once upon time little girl boy named lily tom ben sue mom dad day one big small red blue green happy sad " +
        "dog cat bird ball tree park house sun sky water play played run ran walk saw see look looked went go said " +
        "say like liked love loved want wanted help helped friend friends fun toy toys car box book very so but not " +
        "all up down out into over then when what who how why good bad new old long short fast slow hot cold story " +
        "hello world user assistant system question answer yes no please thank thanks can could would will be are " +
        "had has have do did make made find found home school food eat ate sleep night morning together always";

    public static (string[] Tokens, float[] Scores, int[] Types) BuildVocabulary(IEnumerable<string>? controlTokens = null)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 }; // UNKNOWN, CONTROL, CONTROL
        foreach (var c in controlTokens ?? [])
        {
            tokens.Add(c);
            types.Add(3);
        }
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(6); // BYTE
        }
        var pieces = new List<string>();
        var seen = new HashSet<string>(tokens);
        void AddPiece(string p)
        {
            if (seen.Add(p)) pieces.Add(p);
        }
        AddPiece("\u2581");
        foreach (var ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\":;-()")
            AddPiece(ch.ToString());
        foreach (var word in Words.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            foreach (var form in new[] { word, char.ToUpperInvariant(word[0]) + word[1..] })
            {
                var piece = "\u2581" + form;
                // Every prefix is a piece too, so SentencePiece's pairwise merges can reach the whole word.
                for (int len = 2; len <= piece.Length; len++) AddPiece(piece[..len]);
            }
        }
        foreach (var p in new[] { ".\u2581", ",\u2581", "\u2581\u2581", "\n" }) AddPiece(p);
        var scores = new List<float>(new float[tokens.Count]);
        foreach (var p in pieces)
        {
            tokens.Add(p);
            types.Add(1); // NORMAL
            scores.Add(-1000f + p.Length); // longer pieces win merges
        }
        return (tokens.ToArray(), scores.ToArray(), types.ToArray());
    }

    /// <summary>Writes a GGUF with only the tokenizer (no tensors), like llama.cpp's ggml-vocab-*.gguf files.</summary>
    public static string WriteVocabularyOnly(string path)
    {
        var (tokens, scores, types) = BuildVocabulary();
        new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("llama.context_length", 512u)
            .Set("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", tokens)
            .Set("tokenizer.ggml.scores", scores)
            .Set("tokenizer.ggml.token_type", types)
            .Set("tokenizer.ggml.bos_token_id", 1u)
            .Set("tokenizer.ggml.eos_token_id", 2u)
            .Write(path);
        return path;
    }

    /// <summary>Writes the model and returns its path.</summary>
    public static string Write(string path, TinyModelOptions? options = null)
    {
        var o = options ?? new TinyModelOptions();
        var (tokens, scores, types) = o.Vocabulary ?? BuildVocabulary(o.ControlTokens);
        var rng = new Random(o.Seed);
        int nVocab = tokens.Length, nEmbd = o.Embedding, nFf = o.FeedForward;
        int headDim = nEmbd / o.Heads, nEmbdKv = headDim * o.KvHeads;

        var w = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("general.name", o.Name)
            .Set("general.file_type", o.Q8 ? 7u : 0u)
            .Set("llama.context_length", (uint)o.ContextLength)
            .Set("llama.embedding_length", (uint)nEmbd)
            .Set("llama.block_count", (uint)o.Layers)
            .Set("llama.feed_forward_length", (uint)nFf)
            .Set("llama.attention.head_count", (uint)o.Heads)
            .Set("llama.attention.head_count_kv", (uint)o.KvHeads)
            .Set("llama.attention.layer_norm_rms_epsilon", 1e-5f)
            .Set("llama.rope.dimension_count", (uint)headDim)
            .Set("llama.rope.freq_base", 10000f)
            .Set("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", tokens)
            .Set("tokenizer.ggml.scores", scores)
            .Set("tokenizer.ggml.token_type", types)
            .Set("tokenizer.ggml.bos_token_id", 1u)
            .Set("tokenizer.ggml.eos_token_id", 2u)
            .Set("tokenizer.ggml.unknown_token_id", 0u)
            .Set("tokenizer.ggml.add_bos_token", true)
            .Set("tokenizer.ggml.add_eos_token", false);
        if (o.EndOfTurnToken is { } eot)
        {
            int id = Array.IndexOf(tokens, eot);
            if (id < 0) throw new ArgumentException($"end-of-turn token {eot} is not in the vocabulary");
            w.Set("tokenizer.ggml.eos_token_id", (uint)id).Set("tokenizer.ggml.eot_token_id", (uint)id);
        }
        if (o.ChatTemplate is { } template) w.Set("tokenizer.chat_template", template);
        foreach (var (k, v) in o.Overrides)
        {
            if (v is null) w.Remove(k);
            else w.Set(k, v);
        }

        float[] Random(int count, float scale)
        {
            var a = new float[count];
            for (int i = 0; i < a.Length; i++)
            {
                // Box-Muller: normal weights, like an initialised network.
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                a[i] = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2) * scale);
            }
            return a;
        }
        float[] Ones(int count) => Enumerable.Repeat(1f, count).ToArray();
        void Matrix(string name, int cols, int rows, float scale)
        {
            ulong[] dims = [(ulong)cols, (ulong)rows];
            if (o.Q8 && cols % 32 == 0) w.AddQ8_0(name, dims, Random(cols * rows, scale));
            else w.AddF32(name, dims, Random(cols * rows, scale));
        }

        float s = 1f / MathF.Sqrt(nEmbd);
        w.AddF32("token_embd.weight", [(ulong)nEmbd, (ulong)nVocab], Random(nEmbd * nVocab, 1f));
        for (int l = 0; l < o.Layers; l++)
        {
            w.AddF32($"blk.{l}.attn_norm.weight", [(ulong)nEmbd], Ones(nEmbd));
            Matrix($"blk.{l}.attn_q.weight", nEmbd, nEmbd, s);
            Matrix($"blk.{l}.attn_k.weight", nEmbd, nEmbdKv, s);
            Matrix($"blk.{l}.attn_v.weight", nEmbd, nEmbdKv, s);
            Matrix($"blk.{l}.attn_output.weight", nEmbd, nEmbd, s);
            w.AddF32($"blk.{l}.ffn_norm.weight", [(ulong)nEmbd], Ones(nEmbd));
            Matrix($"blk.{l}.ffn_gate.weight", nEmbd, nFf, s);
            Matrix($"blk.{l}.ffn_up.weight", nEmbd, nFf, s);
            Matrix($"blk.{l}.ffn_down.weight", nFf, nEmbd, 1f / MathF.Sqrt(nFf));
        }
        w.AddF32("output_norm.weight", [(ulong)nEmbd], Ones(nEmbd));
        Matrix("output.weight", nEmbd, nVocab, s * 4);
        w.Write(path);
        return path;
    }
}
