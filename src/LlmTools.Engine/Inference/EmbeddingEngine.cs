using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Text;
using LlmTools.Engine.Gguf;
using LlmTools.Engine.Inference;
using LLama.Native;

namespace LlmTools.Engine;

/// <summary>One input of an embeddings call: its embedding, or the error that ended it (that input only).</summary>
public readonly record struct EmbeddingItem(LlmEmbedding? Embedding, LlmException? Error);

/// <summary>
/// Text embeddings on a model from the <see cref="ModelCache"/>. Each model gets an embeddings context of its own
/// (not the generation one: pooling is fixed per context), made on the model's scheduler thread and kept there until
/// the model is unloaded. Several texts are decoded together as sequences of one batch, unlike LLamaSharp's
/// LLamaEmbedder, which makes a context per text.
/// </summary>
public static class EmbeddingEngine
{
    private static readonly ConditionalWeakTable<LoadedModel, Holder> Holders = new();

    /// <summary>The pooling a model asks for in its {arch}.pooling_type metadata; Mean when it names none (or None).</summary>
    public static LlmPooling DefaultPooling(LlmModelInfo info)
    {
        if (info.Metadata.TryGetValue($"{info.Architecture}.pooling_type", out var v) && v is IConvertible c)
        {
            try
            {
                long n = Convert.ToInt64(c);
                if (n is >= 1 and <= 4) return (LlmPooling)n; // llama_pooling_type: 1 mean, 2 cls, 3 last, 4 rank
            }
            catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException) { }
        }
        return LlmPooling.Mean;
    }

    /// <summary>
    /// Embeds <paramref name="texts"/>, results in input order. A text longer than the context fails with TextTooLong
    /// (unless Truncate); the others go on. Errors of the whole call (a vocabulary-only model, bad options) throw.
    /// </summary>
    public static IReadOnlyList<EmbeddingItem> Embed(ModelLease lease, IReadOnlyList<string> texts, EmbeddingOptions options,
        ContextOptions contextOptions, IEngineEvents events, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var model = lease.Model;
        var plan = Plan(model, options, contextOptions, events);
        var results = new EmbeddingItem[texts.Count];
        var ready = new List<(int Index, LLamaToken[] Tokens, bool Truncated)>();
        for (int i = 0; i < texts.Count; i++)
        {
            try
            {
                var (tokens, truncated) = TokensOf(model, texts[i] ?? "", plan.ContextSize, options.Truncate);
                ready.Add((i, tokens, truncated));
            }
            catch (LlmException e)
            {
                results[i] = new EmbeddingItem(null, e);
            }
        }
        // Greedy packing in input order: a decode holds at most BatchSize texts and ContextSize tokens in all.
        int next = 0;
        while (next < ready.Count)
        {
            cancel.ThrowIfCancellationRequested();
            int count = 0, tokens = 0;
            while (next + count < ready.Count && count < plan.BatchSize && tokens + ready[next + count].Tokens.Length <= plan.ContextSize)
                tokens += ready[next + count++].Tokens.Length;
            var group = ready.GetRange(next, count);
            next += count;
            float[][] vectors;
            try
            {
                vectors = model.Scheduler.Invoke(() => DecodeGroup(model, plan, group.Select(g => g.Tokens).ToList(), events), events);
            }
            catch (LlmException e)
            {
                foreach (var g in group) results[g.Index] = new EmbeddingItem(null, e);
                continue;
            }
            for (int k = 0; k < group.Count; k++)
            {
                var g = group[k];
                if (plan.Normalize == LlmNormalize.L2) NormalizeL2(vectors[k]);
                results[g.Index] = new EmbeddingItem(new LlmEmbedding
                {
                    Text = texts[g.Index] ?? "",
                    Vector = vectors[k],
                    TokenCount = g.Tokens.Length,
                    Truncated = g.Truncated,
                    Model = model.Info.Name,
                    Pooling = plan.Pooling,
                    Normalize = plan.Normalize,
                }, null);
            }
        }
        return results;
    }

    /// <summary>Cosine similarity of two vectors of the same length; throws DimensionMismatch otherwise.</summary>
    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length || a.Length == 0)
            throw new LlmException("DimensionMismatch", LlmErrorKind.InvalidArgument,
                $"The vectors have {a.Length} and {b.Length} dimensions: cosine similarity needs two non-empty vectors of the same length " +
                "(embeddings of the same model).", b.Length);
        if (TensorPrimitives.Norm(a) == 0 || TensorPrimitives.Norm(b) == 0) return 0; // a zero vector has no direction
        return TensorPrimitives.CosineSimilarity(a, b);
    }

    private static void NormalizeL2(float[] v)
    {
        float norm = TensorPrimitives.Norm(v);
        if (norm > 0) TensorPrimitives.Divide(v, norm, v);
    }

    // ------------------------------------------------------------------------------------------------ planning

    private sealed record EmbedPlan(LlmPooling Pooling, LlmNormalize Normalize, int ContextSize, int BatchSize, int Threads, int Dimensions, bool Encoder);

    private static EmbedPlan Plan(LoadedModel model, EmbeddingOptions options, ContextOptions contextOptions, IEngineEvents events)
    {
        var info = model.Info;
        if (model.VocabularyOnly)
            throw new LlmException("VocabularyOnlyModel", LlmErrorKind.InvalidArgument,
                $"'{info.Path}' has a vocabulary but no weights; it cannot compute embeddings.", info.Path);
        var handle = model.Handle;
        if (handle.HasEncoder && handle.HasDecoder)
            throw new LlmException("EmbeddingsNotSupported", LlmErrorKind.InvalidArgument,
                $"'{info.Path}' is an encoder-decoder model ({info.Architecture}); llama.cpp computes embeddings of encoder-only or decoder-only models.", info.Path);
        if (options.BatchSize is < 1 or > EmbeddingOptions.MaxBatchSize)
            throw new LlmException("BatchSizeOutOfRange", LlmErrorKind.InvalidArgument,
                $"BatchSize {options.BatchSize} is out of range: use 1 to {EmbeddingOptions.MaxBatchSize} texts decoded together.", options.BatchSize);
        var pooling = options.Pooling ?? DefaultPooling(info);
        if (!Enum.IsDefined(pooling) || pooling == LlmPooling.Unknown)
            throw new LlmException("PoolingOutOfRange", LlmErrorKind.InvalidArgument, $"Pooling {pooling} is not one of Mean, Cls, Last, Rank.", pooling);
        var normalize = options.Normalize ?? (pooling == LlmPooling.Rank ? LlmNormalize.None : LlmNormalize.L2);
        if (!Enum.IsDefined(normalize))
            throw new LlmException("NormalizeOutOfRange", LlmErrorKind.InvalidArgument, $"Normalize {normalize} is not one of L2, None.", normalize);
        int dimensions = pooling == LlmPooling.Rank ? RankOutputs(model) : handle.EmbeddingSize;
        if (dimensions < 1)
            throw new LlmException("EmbeddingsNotSupported", LlmErrorKind.InvalidArgument,
                $"'{info.Path}' reports an embedding length of {dimensions}; it cannot compute embeddings.", info.Path);
        // The whole of a text is decoded in one micro-batch (llama.cpp pools per micro-batch), so the per-text limit is
        // also the batch size. Default 2048 at most, as llama-embedding's n_batch: a larger one costs compute memory.
        int trained = info.ContextLength > 0 ? info.ContextLength : 2048;
        var withDefault = contextOptions.ContextSize is null && model.Defaults.ContextSize is null
            ? contextOptions with { ContextSize = Math.Min(trained, 2048) }
            : contextOptions;
        var resolved = model.Resolve(withDefault);
        LoadedModel.WarnAboutThreads(resolved.Threads, events);
        return new EmbedPlan(pooling, normalize, resolved.ContextSize, options.BatchSize, resolved.Threads, dimensions,
            handle.HasEncoder && !handle.HasDecoder);
    }

    /// <summary>
    /// Outputs of the classification head Rank pooling runs. llama.cpp aborts the process when a model has none, so
    /// this is checked from the file's tensor list before any decode.
    /// </summary>
    private static int RankOutputs(LoadedModel model)
    {
        var tensors = GgufFile.Read(model.Info.Path).Tensors;
        var clsOut = tensors.FirstOrDefault(t => t.Name == "cls.output.weight");
        bool cls = tensors.Any(t => t.Name == "cls.weight");
        if (clsOut is null && !cls)
            throw new LlmException("RankPoolingNotSupported", LlmErrorKind.InvalidArgument,
                $"'{model.Info.Path}' has no classification head (cls.weight or cls.output.weight), so it cannot rank: Rank pooling is for " +
                "reranker models. Use -Pooling Mean, Cls or Last.", model.Info.Path);
        return clsOut is { Dimensions.Length: >= 2 } ? (int)clsOut.Dimensions[1] : 1;
    }

    private static (LLamaToken[] Tokens, bool Truncated) TokensOf(LoadedModel model, string text, int contextSize, bool truncate)
    {
        // As llama-embedding: the model's BOS/EOS added, special tokens parsed.
        var tokens = model.Handle.Tokenize(text, true, true, Encoding.UTF8);
        if (tokens.Length == 0)
            throw new LlmException("EmptyText", LlmErrorKind.InvalidArgument,
                "The text is empty and this model adds no BOS token, so there is nothing to embed.", text);
        if (tokens.Length <= contextSize) return (tokens, false);
        if (!truncate)
            throw new LlmException("TextTooLong", LlmErrorKind.LimitsExceeded,
                $"The text is {tokens.Length} tokens but the context holds {contextSize}. Raise -ContextSize (this model was trained for " +
                $"{model.Info.ContextLength}), shorten the text, or add -Truncate to embed only its first {contextSize} tokens.", text);
        return (tokens[..contextSize], true);
    }

    // ------------------------------------------------------------------------------------------------ on the scheduler thread

    private static float[][] DecodeGroup(LoadedModel model, EmbedPlan plan, List<LLamaToken[]> group, IEngineEvents events)
    {
        var holder = Holders.GetValue(model, _ => new Holder());
        if (!holder.Owned)
        {
            model.Scheduler.Own(holder);
            holder.Owned = true;
        }
        var ctx = holder.Get(model, plan, events);
        ctx.SetThreads(plan.Threads);
        var batch = ctx.Batch;
        batch.Clear();
        for (int s = 0; s < group.Count; s++)
        {
            var tokens = group[s];
            for (int p = 0; p < tokens.Length; p++) batch.Add(tokens[p], p, (LLamaSeqId)s, true);
        }
        try
        {
            var status = plan.Encoder ? ctx.Handle.Encode(batch) : ctx.Handle.Decode(batch);
            if (status != DecodeResult.Ok)
                throw new LlmException("EmbeddingFailed", LlmErrorKind.InvalidOperation,
                    $"llama.cpp could not decode {group.Count} text(s) of {group.Sum(g => g.Length)} tokens for embeddings ({status}).", model.Info.Path);
            var vectors = new float[group.Count][];
            for (int s = 0; s < group.Count; s++)
            {
                var span = ctx.Handle.GetEmbeddingsSeq((LLamaSeqId)s);
                if (span.Length < plan.Dimensions)
                    throw new LlmException("EmbeddingFailed", LlmErrorKind.InvalidOperation,
                        $"llama.cpp returned no pooled embedding for '{model.Info.Path}'.", model.Info.Path);
                vectors[s] = span[..plan.Dimensions].ToArray();
            }
            return vectors;
        }
        finally
        {
            batch.Clear();
            ctx.Handle.MemoryClear(true); // every call starts from empty cells; nothing is shared between texts
        }
    }

    /// <summary>A model's embeddings context, replaced when a call needs another pooling or more room; freed with the model.</summary>
    private sealed class Holder : IDisposable
    {
        private EmbeddingContext? _ctx;
        public bool Owned;

        public EmbeddingContext Get(LoadedModel model, EmbedPlan plan, IEngineEvents events)
        {
            if (_ctx is { } c && c.Pooling == plan.Pooling && c.Cells >= plan.ContextSize && c.Sequences >= plan.BatchSize) return c;
            int cells = Math.Max(plan.ContextSize, _ctx?.Pooling == plan.Pooling ? _ctx.Cells : 0);
            int sequences = Math.Max(plan.BatchSize, _ctx?.Pooling == plan.Pooling ? _ctx.Sequences : 0);
            _ctx?.Dispose();
            _ctx = null;
            events.Verbose($"Creating an embeddings context of {cells} tokens for up to {sequences} texts ({plan.Pooling} pooling).");
            _ctx = new EmbeddingContext(model, plan.Pooling, cells, sequences);
            return _ctx;
        }

        public void Dispose()
        {
            _ctx?.Dispose();
            _ctx = null;
        }
    }

    private sealed class EmbeddingContext : IDisposable
    {
        private int _threads;

        public EmbeddingContext(LoadedModel model, LlmPooling pooling, int cells, int sequences)
        {
            Pooling = pooling;
            Cells = cells;
            Sequences = sequences;
            var p = LLamaContextParams.Default();
            p.embeddings = true;
            p.llama_pooling_type = (LLamaPoolingType)(int)pooling;
            p.n_ctx = (uint)cells;
            // A text is pooled within one micro-batch, so the micro-batch is the whole batch.
            p.n_batch = (uint)cells;
            p.n_ubatch = (uint)cells;
            p.n_seq_max = (uint)sequences;
            p.kv_unified = true; // every sequence may take up to all cells, not n_ctx / n_seq_max
            _threads = Native.NativeRuntime.DefaultThreadCount;
            p.n_threads = _threads;
            p.n_threads_batch = _threads;
            try
            {
                Handle = SafeLLamaContextHandle.Create(model.Handle, p);
            }
            catch (Exception e)
            {
                throw new LlmException("ContextCreationFailed", LlmErrorKind.ResourceUnavailable,
                    $"llama.cpp could not create an embeddings context of {cells} tokens for '{model.Info.Path}': {e.Message} Try a smaller -ContextSize.",
                    model.Info.Path, e);
            }
            if (Handle is null || Handle.IsInvalid)
                throw new LlmException("ContextCreationFailed", LlmErrorKind.ResourceUnavailable,
                    $"llama.cpp could not create an embeddings context of {cells} tokens for '{model.Info.Path}'. Try a smaller -ContextSize.", model.Info.Path);
            Batch = new LLamaBatch();
        }

        public LlmPooling Pooling { get; }
        public int Cells { get; }
        public int Sequences { get; }
        public SafeLLamaContextHandle Handle { get; } = null!;
        public LLamaBatch Batch { get; } = null!;

        public void SetThreads(int threads)
        {
            if (threads == _threads) return;
            Handle.GenerationThreads = threads;
            Handle.BatchThreads = threads;
            _threads = threads;
        }

        public void Dispose() => Handle.Dispose();
    }
}
