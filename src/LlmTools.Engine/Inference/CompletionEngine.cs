using System.Text;
using LlmTools.Engine.Inference;
using LLama.Native;

namespace LlmTools;

/// <summary>Text completion and tokenization on a model from the <see cref="ModelCache"/>.</summary>
public static class CompletionEngine
{
    /// <summary>
    /// Continues <paramref name="prefix"/> + <paramref name="prompt"/>. Reuses the KV state of the longest prefix the
    /// context already holds; stops at end of text, MaxTokens, a stop string, a full context, or cancellation (the
    /// model stays usable).
    /// </summary>
    public static LlmCompletionResult Complete(ModelLease lease, string prompt, CompletionOptions options,
        ContextOptions contextOptions, IEngineEvents events, CancellationToken cancel, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ValidateOptions(options);
        var model = lease.Model;
        RequireWeights(model);
        var resolved = model.Resolve(contextOptions);
        using var sequence = new Sequence(model, prefix, prompt, options, resolved.ContextSize, lease.TakeLoadDuration());
        var ctx = model.RentContext(resolved, events);
        try
        {
            Run(ctx, sequence, events, cancel);
            return sequence.ToResult(resolved.ContextSize, resolved.Threads);
        }
        finally
        {
            model.ReturnContext(ctx);
        }
    }

    internal static void RequireWeights(LoadedModel model)
    {
        if (model.VocabularyOnly)
            throw new LlmException("VocabularyOnlyModel", LlmErrorKind.InvalidArgument,
                $"'{model.Info.Path}' is loaded as a vocabulary only; it cannot generate text.", model.Info.Path);
    }

    /// <summary>Throws <see cref="LlmException"/> for an out-of-range option, saying the allowed range.</summary>
    public static void ValidateOptions(CompletionOptions o)
    {
        static LlmException Bad(string name, object value, string range) =>
            new($"{name}OutOfRange", LlmErrorKind.InvalidArgument, $"{name} {value} is out of range: {range}.", value);
        if (o.MaxTokens < 1) throw Bad("MaxTokens", o.MaxTokens, "use 1 or more (new tokens, the prompt never counts)");
        if (!float.IsFinite(o.Temperature) || o.Temperature < 0) throw Bad("Temperature", o.Temperature, "use 0 (greedy) or more");
        if (o.TopK < 0) throw Bad("TopK", o.TopK, "use 0 (off) or more");
        if (!(o.TopP is > 0 and <= 1)) throw Bad("TopP", o.TopP, "use more than 0 up to 1 (1 is off)");
        if (!(o.MinP is >= 0 and < 1)) throw Bad("MinP", o.MinP, "use 0 (off) up to less than 1");
        if (!float.IsFinite(o.RepeatPenalty) || o.RepeatPenalty <= 0) throw Bad("RepeatPenalty", o.RepeatPenalty, "use more than 0 (1 is off)");
        if (o.RepeatLastN < 0) throw Bad("RepeatLastN", o.RepeatLastN, "use 0 or more");
        foreach (var s in o.Stop)
            if (string.IsNullOrEmpty(s))
                throw new LlmException("EmptyStopString", LlmErrorKind.InvalidArgument, "A stop string is empty; every -Stop value must have at least one character.");
    }

    /// <summary>One sequence on sequence 0 of a context, reusing what the context already holds.</summary>
    internal static void Run(InferenceContext ctx, Sequence seq, IEngineEvents events, CancellationToken cancel)
    {
        var tokens = seq.Tokens;
        using var register = cancel.Register(() => ctx.AbortRequested = true);
        ctx.AbortRequested = cancel.IsCancellationRequested;

        // Reuse the longest prefix already in the KV cache; the last prompt token is always evaluated for its logits.
        int reuse = 0;
        if (!ctx.Model.Handle.IsRecurrent)
        {
            int max = Math.Min(ctx.CachedTokens.Count, tokens.Length - 1);
            while (reuse < max && ctx.CachedTokens[reuse] == tokens[reuse]) reuse++;
        }
        if (reuse == 0) ctx.Clear();
        else if (reuse < ctx.CachedTokens.Count)
        {
            ctx.Handle.MemorySequenceRemove(LLamaSeqId.Zero, reuse, -1);
            ctx.CachedTokens.RemoveRange(reuse, ctx.CachedTokens.Count - reuse);
        }
        seq.Reused = reuse;

        var batch = ctx.Batch;
        int batchSize = ctx.Options.BatchSize;
        try
        {
            for (int start = reuse; start < tokens.Length; start += batchSize)
            {
                int end = Math.Min(tokens.Length, start + batchSize);
                batch.Clear();
                for (int i = start; i < end; i++)
                    batch.Add(tokens[i], i, LLamaSeqId.Zero, i == tokens.Length - 1);
                if (!Decode(ctx, batch, cancel)) { Cancelled(); return; }
                for (int i = start; i < end; i++) ctx.CachedTokens.Add(tokens[i]);
                if (tokens.Length - reuse > batchSize)
                    events.Progress("Reading prompt", $"{end} of {tokens.Length} tokens", (double)end / tokens.Length);
            }
            if (tokens.Length - reuse > batchSize) events.Progress("Reading prompt", "done", -1);
            seq.PromptEvaluated();

            int logitIndex = batch.TokenCount - 1;
            while (true)
            {
                if (cancel.IsCancellationRequested) { Cancelled(); return; }
                var token = seq.Sampler.Sample(ctx.Handle, logitIndex);
                if (!seq.Accept(token, events)) return;
                batch.Clear();
                batch.Add(token, seq.Position, LLamaSeqId.Zero, true);
                if (!Decode(ctx, batch, cancel)) { Cancelled(); return; }
                ctx.CachedTokens.Add(token);
                seq.Position++;
                logitIndex = 0;
            }
        }
        catch (LlmException)
        {
            ctx.Clear();
            throw;
        }

        void Cancelled()
        {
            // An aborted decode leaves the KV cache in an unknown state: start clean next time.
            ctx.Clear();
            seq.Stop(LlmStopReason.Cancelled, events);
        }
    }

    /// <summary>Decodes a batch; false when it was aborted by cancellation.</summary>
    internal static bool Decode(InferenceContext ctx, LLamaBatch batch, CancellationToken cancel)
    {
        var r = ctx.Handle.Decode(batch);
        if (r == DecodeResult.Ok) return true;
        if (r == DecodeResult.ComputeAborted || cancel.IsCancellationRequested) return false;
        throw new LlmException("DecodeFailed", r == DecodeResult.NoKvSlot ? LlmErrorKind.LimitsExceeded : LlmErrorKind.InvalidOperation,
            $"llama.cpp failed to evaluate a batch of {batch.TokenCount} tokens ({r}). Run with -Verbose for llama.cpp's messages; a smaller -ContextSize may help.");
    }

    /// <summary>Creates (or finds) the context these options describe, so the first completion does not pay for it.</summary>
    public static void Prepare(ModelLease lease, ContextOptions contextOptions, IEngineEvents events)
    {
        if (lease.Model.VocabularyOnly) return;
        var resolved = lease.Model.Resolve(contextOptions);
        lease.Model.ReturnContext(lease.Model.RentContext(resolved, events));
    }

    /// <summary>Tokenizes text as generation would (BOS added when the model's metadata says so, special tokens parsed).</summary>
    public static LlmTokenization Tokenize(ModelLease lease, string text, bool addSpecial = true)
    {
        var model = lease.Model;
        var handle = model.Handle;
        var tokens = handle.Tokenize(text, addSpecial && handle.Vocab.ShouldAddBOS, true, Encoding.UTF8);
        var pieces = new string[tokens.Length];
        var buffer = new byte[64];
        for (int i = 0; i < tokens.Length; i++)
        {
            int n = (int)handle.TokenToSpan(tokens[i], buffer, 0, true);
            if (n > buffer.Length) { buffer = new byte[n]; n = (int)handle.TokenToSpan(tokens[i], buffer, 0, true); }
            pieces[i] = Encoding.UTF8.GetString(buffer, 0, n);
        }
        return new LlmTokenization
        {
            Text = text,
            Model = model.Info.Name,
            Count = tokens.Length,
            Ids = tokens.Select(t => (int)t).ToArray(),
            Pieces = pieces,
            ContextLength = model.Info.ContextLength,
        };
    }
}
