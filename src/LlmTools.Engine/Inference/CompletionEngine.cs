using System.Diagnostics;
using System.Text;
using LlmTools.Engine.Inference;
using LLama.Native;

namespace LlmTools;

/// <summary>Text completion and tokenization on a model from the <see cref="ModelCache"/>.</summary>
public static class CompletionEngine
{
    /// <summary>
    /// Continues <paramref name="prompt"/>. Reuses the KV state of the longest prefix the context already holds;
    /// stops at end of text, MaxTokens, a stop string, a full context, or cancellation (the model stays usable).
    /// </summary>
    public static LlmCompletionResult Complete(ModelLease lease, string prompt, CompletionOptions options,
        ContextOptions contextOptions, IEngineEvents events, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ValidateOptions(options);
        var model = lease.Model;
        if (model.VocabularyOnly)
            throw new LlmException("VocabularyOnlyModel", LlmErrorKind.InvalidArgument,
                $"'{model.Info.Path}' is loaded as a vocabulary only; it cannot generate text.", model.Info.Path);
        var resolved = model.Resolve(contextOptions);
        var total = Stopwatch.StartNew();
        var ctx = model.RentContext(resolved, events);
        try
        {
            return Run(lease, ctx, prompt, options, events, cancel, total);
        }
        finally
        {
            model.ReturnContext(ctx);
        }
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

    private static LlmCompletionResult Run(ModelLease lease, InferenceContext ctx, string prompt, CompletionOptions options,
        IEngineEvents events, CancellationToken cancel, Stopwatch total)
    {
        var model = lease.Model;
        var vocab = model.Handle.Vocab;
        int contextSize = ctx.Options.ContextSize;
        var tokens = model.Handle.Tokenize(prompt, vocab.ShouldAddBOS, true, Encoding.UTF8);
        if (tokens.Length == 0)
            throw new LlmException("EmptyPrompt", LlmErrorKind.InvalidArgument,
                "The prompt is empty and this model adds no BOS token, so there is nothing to continue.", prompt);
        if (tokens.Length >= contextSize)
            throw new LlmException("PromptTooLong", LlmErrorKind.LimitsExceeded,
                $"The prompt is {tokens.Length} tokens but the context holds {contextSize} (the prompt plus at least one new token). " +
                $"Shorten the prompt or raise -ContextSize (this model was trained for {model.Info.ContextLength}).", prompt);

        using var register = cancel.Register(() => ctx.AbortRequested = true);
        ctx.AbortRequested = cancel.IsCancellationRequested;

        // Reuse the longest prefix already in the KV cache; the last prompt token is always evaluated for its logits.
        int reuse = 0;
        if (!model.Handle.IsRecurrent)
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

        uint? seed = options.Temperature > 0 ? options.Seed ?? (uint)Random.Shared.Next() : null;
        using var sampler = BuildSampler(options, seed);
        foreach (var t in tokens.AsSpan(Math.Max(0, tokens.Length - options.RepeatLastN)))
            sampler.Accept(t);

        var batch = ctx.Batch;
        var promptWatch = Stopwatch.StartNew();
        int logitIndex = 0;
        var stopReason = LlmStopReason.MaxTokens;
        string? stopString = null;
        var text = new StringBuilder();
        int completionTokens = 0;
        TimeSpan promptDuration = TimeSpan.Zero, ttft = TimeSpan.Zero;
        var genWatch = new Stopwatch();
        try
        {
            for (int start = reuse; start < tokens.Length; start += ctx.Options.BatchSize)
            {
                int end = Math.Min(tokens.Length, start + ctx.Options.BatchSize);
                batch.Clear();
                for (int i = start; i < end; i++)
                    batch.Add(tokens[i], i, LLamaSeqId.Zero, i == tokens.Length - 1);
                if (!Decode(ctx, batch, cancel))
                    return Cancelled();
                for (int i = start; i < end; i++) ctx.CachedTokens.Add(tokens[i]);
                logitIndex = batch.TokenCount - 1;
                events.Progress("Reading prompt", $"{end} of {tokens.Length} tokens", (double)end / tokens.Length);
            }
            if (tokens.Length - reuse > ctx.Options.BatchSize) events.Progress("Reading prompt", "done", -1);
            promptDuration = promptWatch.Elapsed;
            genWatch.Start();

            var decoder = Encoding.UTF8.GetDecoder();
            var pieceBytes = new byte[64];
            var chars = new char[64];
            int emitted = 0; // characters of text already handed to events.Text
            int maxStop = options.Stop.Count == 0 ? 0 : options.Stop.Max(s => s.Length);
            int position = tokens.Length;
            while (true)
            {
                if (cancel.IsCancellationRequested) return Cancelled();
                var token = sampler.Sample(ctx.Handle, logitIndex);
                if (completionTokens == 0) ttft = total.Elapsed;
                if (token.IsEndOfGeneration(vocab))
                {
                    stopReason = LlmStopReason.EndOfText;
                    break;
                }
                completionTokens++;

                // Detokenize; the decoder keeps partial UTF-8 sequences until their last byte arrives.
                int n = (int)model.Handle.TokenToSpan(token, pieceBytes, 0, false);
                if (n > pieceBytes.Length)
                {
                    pieceBytes = new byte[n];
                    n = (int)model.Handle.TokenToSpan(token, pieceBytes, 0, false);
                }
                int charCount = decoder.GetCharCount(pieceBytes, 0, n, flush: false);
                if (charCount > chars.Length) chars = new char[charCount * 2];
                charCount = decoder.GetChars(pieceBytes, 0, n, chars, 0, flush: false);
                text.Append(chars, 0, charCount);

                if (maxStop > 0 && FindStop(text, options.Stop, Math.Max(0, emitted - maxStop + 1)) is var (at, which) && at >= 0)
                {
                    text.Length = at;
                    stopReason = LlmStopReason.StopString;
                    stopString = which;
                    break;
                }
                // Hold back text that could be the start of a stop string, so it is never shown and then taken back.
                int safe = text.Length - HeldBack(text, options.Stop, maxStop);
                if (safe > emitted)
                {
                    events.Text(text.ToString(emitted, safe - emitted));
                    emitted = safe;
                }

                if (completionTokens >= options.MaxTokens)
                {
                    stopReason = LlmStopReason.MaxTokens;
                    break;
                }
                if (position >= contextSize)
                {
                    stopReason = LlmStopReason.ContextFull;
                    break;
                }
                batch.Clear();
                batch.Add(token, position, LLamaSeqId.Zero, true);
                if (!Decode(ctx, batch, cancel))
                    return Cancelled();
                ctx.CachedTokens.Add(token);
                position++;
                logitIndex = 0;
            }
            if (text.Length > emitted) events.Text(text.ToString(emitted, text.Length - emitted));
        }
        catch (LlmException)
        {
            ctx.Clear();
            throw;
        }
        genWatch.Stop();
        return Result(stopReason);

        LlmCompletionResult Cancelled()
        {
            // An aborted decode leaves the KV cache in an unknown state: start clean next time.
            ctx.Clear();
            genWatch.Stop();
            if (promptDuration == TimeSpan.Zero) promptDuration = promptWatch.Elapsed;
            return Result(LlmStopReason.Cancelled);
        }

        LlmCompletionResult Result(LlmStopReason reason)
        {
            int evaluated = tokens.Length - reuse;
            return new LlmCompletionResult
            {
                Text = text.ToString(),
                Prompt = prompt,
                Model = model.Info.Name,
                ModelPath = model.Info.Path,
                PromptTokens = tokens.Length,
                CachedPromptTokens = reuse,
                CompletionTokens = completionTokens,
                StopReason = reason,
                StopString = stopString,
                LoadDuration = lease.LoadDuration,
                PromptDuration = promptDuration,
                TimeToFirstToken = ttft,
                GenerationDuration = genWatch.Elapsed,
                TotalDuration = total.Elapsed + lease.LoadDuration,
                PromptTokensPerSecond = promptDuration > TimeSpan.Zero ? evaluated / promptDuration.TotalSeconds : 0,
                TokensPerSecond = genWatch.Elapsed > TimeSpan.Zero ? completionTokens / genWatch.Elapsed.TotalSeconds : 0,
                Seed = seed,
                ContextSize = ctx.Options.ContextSize,
                Threads = ctx.Options.Threads,
            };
        }
    }

    /// <summary>Decodes a batch; false when it was aborted by cancellation.</summary>
    private static bool Decode(InferenceContext ctx, LLamaBatch batch, CancellationToken cancel)
    {
        var r = ctx.Handle.Decode(batch);
        if (r == DecodeResult.Ok) return true;
        if (r == DecodeResult.ComputeAborted || cancel.IsCancellationRequested) return false;
        throw new LlmException("DecodeFailed", r == DecodeResult.NoKvSlot ? LlmErrorKind.LimitsExceeded : LlmErrorKind.InvalidOperation,
            $"llama.cpp failed to evaluate a batch of {batch.TokenCount} tokens ({r}). Run with -Verbose for llama.cpp's messages; a smaller -ContextSize may help.");
    }

    private static SafeLLamaSamplerChainHandle BuildSampler(CompletionOptions o, uint? seed)
    {
        // The order llama.cpp's own tools use: penalties, top-k, top-p, min-p, temperature, then the pick.
        var chain = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        if (o.RepeatPenalty != 1f && o.RepeatLastN > 0)
            chain.AddPenalties(o.RepeatLastN, o.RepeatPenalty, 0f, 0f);
        if (seed is null)
        {
            chain.AddGreedySampler();
            return chain;
        }
        if (o.TopK > 0) chain.AddTopK(o.TopK);
        if (o.TopP < 1f) chain.AddTopP(o.TopP, 1);
        if (o.MinP > 0f) chain.AddMinP(o.MinP, 1);
        chain.AddTemperature(o.Temperature);
        chain.AddDistributionSampler(seed.Value);
        return chain;
    }

    private static (int At, string? Which) FindStop(StringBuilder text, IReadOnlyList<string> stops, int from)
    {
        var s = text.ToString(from, text.Length - from);
        int best = -1;
        string? which = null;
        foreach (var stop in stops)
        {
            int i = s.IndexOf(stop, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) { best = i; which = stop; }
        }
        return (best < 0 ? -1 : from + best, which);
    }

    /// <summary>Length of the longest end of the text that is the start of some stop string.</summary>
    private static int HeldBack(StringBuilder text, IReadOnlyList<string> stops, int maxStop)
    {
        for (int len = Math.Min(maxStop - 1, text.Length); len > 0; len--)
        {
            foreach (var stop in stops)
            {
                if (stop.Length <= len) continue;
                bool match = true;
                for (int i = 0; i < len && match; i++)
                    match = text[text.Length - len + i] == stop[i];
                if (match) return len;
            }
        }
        return 0;
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
