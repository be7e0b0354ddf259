using System.Diagnostics;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;
using LLama.Sampling;
using LlmTools.Engine.Gguf;
using LlmTools.TestModels;

namespace LlmTools.Benchmarks;

/// <summary>One timed completion.</summary>
public sealed record Measurement(int PromptTokens, double PromptSeconds, int GeneratedTokens, double GenerationSeconds, string Text)
{
    public double PromptTokensPerSecond => PromptTokens / PromptSeconds;
    public double TokensPerSecond => GeneratedTokens / GenerationSeconds;
}

/// <summary>The paths the benchmark compares the cmdlet with.</summary>
public static class Direct
{
    private static LLamaWeights? _weights;
    private static ModelParams? _params;
    private static SafeLLamaContextHandle? _context;
    private static SafeLLamaSamplerChainHandle? _greedy;

    /// <summary>
    /// Writes (once) a llama-architecture model of about 0.5B parameters, random weights in Q8_0, with the real llama
    /// SentencePiece vocabulary when <paramref name="vocabPath"/> exists (a generated one otherwise).
    /// </summary>
    public static string EnsureModel(string folder, string? vocabPath)
    {
        Directory.CreateDirectory(folder);
        bool realVocab = vocabPath is not null && File.Exists(vocabPath);
        var path = Path.Combine(folder, realVocab ? "bench-0.5b-q8_0-llama-spm.gguf" : "bench-0.5b-q8_0.gguf");
        if (File.Exists(path)) return path;
        var options = new TinyModelOptions
        {
            Name = "bench-0.5B-Q8_0",
            Embedding = 896, Layers = 24, Heads = 14, KvHeads = 2, FeedForward = 4864, ContextLength = 4096, Q8 = true,
        };
        if (realVocab)
        {
            var v = GgufFile.Read(vocabPath!);
            options.Vocabulary = ((string[])v.GetArray("tokenizer.ggml.tokens")!, (float[])v.GetArray("tokenizer.ggml.scores")!,
                (int[])v.GetArray("tokenizer.ggml.token_type")!);
        }
        var tmp = path + ".partial";
        TinyModel.Write(tmp, options);
        File.Move(tmp, path, overwrite: true);
        return path;
    }

    public static void Load(string path, int threads, int contextSize)
    {
        _params = new ModelParams(path)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)contextSize,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
            LoadMode = LLamaLoadMode.MemoryMap,
        };
        _weights = LLamaWeights.LoadFromFile(_params);
        var p = LLamaContextParams.Default();
        p.n_ctx = (uint)contextSize; p.n_batch = (uint)contextSize; p.n_ubatch = 512;
        p.n_threads = threads; p.n_threads_batch = threads;
        _context = SafeLLamaContextHandle.Create(_weights.NativeHandle, p);
        _greedy = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        _greedy.AddGreedySampler();
    }

    public static void Unload()
    {
        _greedy?.Dispose();
        _context?.Dispose();
        _weights?.Dispose();
        _greedy = null; _context = null; _weights = null;
    }

    /// <summary>(b) LLamaSharp as its README shows it: StatelessExecutor with greedy sampling.</summary>
    public static Measurement Executor(string prompt, int maxTokens)
    {
        var executor = new StatelessExecutor(_weights!, _params!);
        var inference = new InferenceParams { MaxTokens = maxTokens, SamplingPipeline = new GreedySamplingPipeline() };
        int promptTokens = _weights!.NativeHandle.Tokenize(prompt, true, true, Encoding.UTF8).Length;
        var text = new StringBuilder();
        var sw = Stopwatch.StartNew();
        double first = 0;
        int pieces = 0;
        var e = executor.InferAsync(prompt, inference).GetAsyncEnumerator();
        while (e.MoveNextAsync().AsTask().GetAwaiter().GetResult())
        {
            if (pieces++ == 0) first = sw.Elapsed.TotalSeconds;
            text.Append(e.Current);
        }
        double total = sw.Elapsed.TotalSeconds;
        // Time to the first piece is context creation + prompt + first sample; the rest is generation.
        return new Measurement(promptTokens, first, Math.Max(0, pieces - 1), total - first, text.ToString());
    }

    /// <summary>(c) The ceiling: a native decode loop on a kept context, greedy sampler, nothing else.</summary>
    public static Measurement Native(string prompt, int maxTokens)
    {
        var ctx = _context!;
        var model = _weights!.NativeHandle;
        ctx.MemoryClear(false);
        var tokens = model.Tokenize(prompt, model.Vocab.ShouldAddBOS, true, Encoding.UTF8);
        var batch = new LLamaBatch();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, LLamaSeqId.Zero, i == tokens.Length - 1);
        if (ctx.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("decode failed");
        double promptSeconds = sw.Elapsed.TotalSeconds;
        sw.Restart();
        int generated = 0, pos = tokens.Length;
        var bytes = new List<byte>();
        var buf = new byte[64];
        int index = batch.TokenCount - 1;
        while (true)
        {
            var token = _greedy!.Sample(ctx, index);
            if (token.IsEndOfGeneration(model.Vocab)) break;
            generated++;
            int n = (int)model.TokenToSpan(token, buf, 0, false);
            bytes.AddRange(buf.AsSpan(0, Math.Min(n, buf.Length)).ToArray());
            if (generated >= maxTokens) break;
            batch.Clear();
            batch.Add(token, pos++, LLamaSeqId.Zero, true);
            if (ctx.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("decode failed");
            index = 0;
        }
        return new Measurement(tokens.Length, promptSeconds, generated, sw.Elapsed.TotalSeconds, Encoding.UTF8.GetString(bytes.ToArray()));
    }

    /// <summary>Wall-clock milliseconds per call of the native loop over short prompts (one new token each).</summary>
    public static double NativeMillisecondsPerCall(string[] prompts)
    {
        var sw = Stopwatch.StartNew();
        foreach (var p in prompts) Native(p, 1);
        return sw.Elapsed.TotalMilliseconds / prompts.Length;
    }
}

/// <summary>(c) for batches: the native decode loop over parallel sequences of one context, greedy, refilling free sequences.</summary>
public static class DirectBatched
{
    /// <summary>Completes every prompt with <paramref name="parallel"/> sequences decoded together; returns total generated tokens and seconds.</summary>
    public static (int Generated, double Seconds, string[] Texts) Run(string modelPath, string[] prompts, int parallel, int maxTokens, int threads, int contextPerSequence)
    {
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(modelPath) { GpuLayerCount = 0, LoadMode = LLamaLoadMode.MemoryMap });
        var model = weights.NativeHandle;
        var p = LLamaContextParams.Default();
        p.n_ctx = (uint)(contextPerSequence * parallel); p.n_batch = (uint)Math.Min(2048, contextPerSequence * parallel); p.n_ubatch = 512;
        p.n_seq_max = (uint)parallel; p.kv_unified = true; p.n_threads = threads; p.n_threads_batch = threads;
        using var ctx = SafeLLamaContextHandle.Create(model, p);
        var samplers = Enumerable.Range(0, parallel).Select(_ =>
        {
            var c = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
            c.AddGreedySampler();
            return c;
        }).ToArray();
        var texts = new StringBuilder[prompts.Length];
        var slotPrompt = new int[parallel]; var slotPos = new int[parallel]; var slotGen = new int[parallel];
        var slotToken = new LLamaToken?[parallel]; var slotTokens = new LLamaToken[]?[parallel]; var slotDone = new int[parallel];
        var logit = new int[parallel];
        Array.Fill(slotPrompt, -1);
        int next = 0, generated = 0;
        var batch = new LLamaBatch();
        var buf = new byte[64];
        var sw = Stopwatch.StartNew();
        while (true)
        {
            for (int s = 0; s < parallel; s++)
                if (slotPrompt[s] < 0 && next < prompts.Length)
                {
                    slotPrompt[s] = next; texts[next] = new StringBuilder();
                    slotTokens[s] = model.Tokenize(prompts[next++], model.Vocab.ShouldAddBOS, true, Encoding.UTF8);
                    slotDone[s] = 0; slotGen[s] = 0; slotToken[s] = null; slotPos[s] = slotTokens[s]!.Length;
                    ctx.MemorySequenceRemove((LLamaSeqId)s, 0, -1);
                }
            batch.Clear();
            Array.Fill(logit, -1);
            for (int s = 0; s < parallel; s++)
            {
                if (slotPrompt[s] < 0) continue;
                if (slotToken[s] is { } t) { logit[s] = batch.Add(t, slotPos[s]++, (LLamaSeqId)s, true); slotToken[s] = null; }
                else if (slotDone[s] < slotTokens[s]!.Length)
                {
                    var toks = slotTokens[s]!;
                    for (int i = 0; i < toks.Length; i++) { int ix = batch.Add(toks[i], i, (LLamaSeqId)s, i == toks.Length - 1); if (i == toks.Length - 1) logit[s] = ix; }
                    slotDone[s] = toks.Length;
                }
            }
            if (batch.TokenCount == 0) break;
            if (ctx.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("decode failed");
            for (int s = 0; s < parallel; s++)
            {
                if (logit[s] < 0) continue;
                var token = samplers[s].Sample(ctx, logit[s]);
                bool end = token.IsEndOfGeneration(model.Vocab);
                if (!end)
                {
                    generated++; slotGen[s]++;
                    int n = (int)model.TokenToSpan(token, buf, 0, false);
                    texts[slotPrompt[s]].Append(Encoding.UTF8.GetString(buf, 0, Math.Min(n, buf.Length)));
                }
                if (end || slotGen[s] >= maxTokens) { slotPrompt[s] = -1; continue; }
                slotToken[s] = token;
            }
        }
        double seconds = sw.Elapsed.TotalSeconds;
        foreach (var c in samplers) c.Dispose();
        return (generated, seconds, texts.Select(t => t.ToString()).ToArray());
    }
}
