using System.Diagnostics;
using System.Text;
using LLama.Native;

namespace LlmTools.Engine.Inference;

/// <summary>
/// One completion in progress: its tokens, sampler, text and timings. Turns sampled tokens into text (whole UTF-8
/// characters only), applies stop strings, MaxTokens and the context limit, and builds the result. Shared by the
/// one-at-a-time path and the batched path, so both produce the same result for the same tokens.
/// </summary>
internal sealed class Sequence : IDisposable
{
    private readonly LoadedModel _model;
    private readonly CompletionOptions _options;
    private readonly int _contextSize;
    private readonly Decoder _decoder = Encoding.UTF8.GetDecoder();
    private readonly StringBuilder _text = new();
    private readonly Stopwatch _watch = Stopwatch.StartNew();
    private readonly int _maxStop;
    private byte[] _pieceBytes = new byte[64];
    private char[] _chars = new char[64];
    private int _emitted;
    private TimeSpan _promptDone, _firstToken;

    /// <param name="tokens">The prompt already tokenized (a chat whose message content must not become control tokens).</param>
    public Sequence(LoadedModel model, string prefix, string prompt, CompletionOptions options, int contextSize, TimeSpan loadDuration,
        LLamaToken[]? tokens = null)
    {
        _model = model;
        _options = options;
        _contextSize = contextSize;
        Prefix = prefix;
        Prompt = prompt;
        LoadDuration = loadDuration;
        Tokens = tokens is null ? Tokenize(model, prefix + prompt, contextSize, options.AddBos) : CheckFit(model, tokens, prefix + prompt, contextSize);
        Seed = options.Temperature > 0 ? options.Seed ?? (uint)Random.Shared.Next() : null;
        Sampler = BuildSampler(options, Seed);
        foreach (var t in Tokens.AsSpan(Math.Max(0, Tokens.Length - options.RepeatLastN)))
            Sampler.Accept(t);
        if (options.Grammar is { } gbnf)
        {
            // The grammar is checked after the other samplers cut the candidates (llama.cpp #4218); it owns a clone of the chain.
            _grammar = Grammar.GrammarConstrainedSampler.Create(model.Handle, gbnf, Sampler, ownsChain: false);
        }
        _maxStop = options.Stop.Count == 0 ? 0 : options.Stop.Max(s => s.Length);
        Position = Tokens.Length;
    }

    public string Prefix { get; }
    public string Prompt { get; }
    /// <summary>New tokens this sequence may generate at most.</summary>
    public int MaxNewTokens => _options.MaxTokens;
    public TimeSpan LoadDuration { get; }
    public LLamaToken[] Tokens { get; }
    public uint? Seed { get; }
    public SafeLLamaSamplerChainHandle Sampler { get; }
    private readonly Grammar.GrammarConstrainedSampler? _grammar;

    /// <summary>Picks the next token from the logits of the last decode (within the grammar, when there is one).</summary>
    public LLamaToken Sample(SafeLLamaContextHandle context, int logitIndex)
    {
        if (_grammar is null) return Sampler.Sample(context, logitIndex);
        var token = _grammar.Sample(context, logitIndex);
        _grammar.Accept(token);
        return token;
    }
    /// <summary>Prompt tokens whose KV state was reused rather than evaluated.</summary>
    public int Reused { get; set; }
    /// <summary>Position the next generated token takes in the sequence.</summary>
    public int Position { get; set; }
    public int CompletionTokens { get; private set; }
    public LlmStopReason? StopReason { get; private set; }
    public string? StopString { get; private set; }

    /// <summary>Tokenizes as generation does (BOS when the metadata says so, special tokens parsed) and checks the fit.</summary>
    public static LLamaToken[] Tokenize(LoadedModel model, string text, int contextSize, bool? addBos = null) =>
        CheckFit(model, model.Handle.Tokenize(text, addBos ?? model.Handle.Vocab.ShouldAddBOS, true, Encoding.UTF8), text, contextSize);

    /// <summary>
    /// Tokenizes a rendered chat: the template's markers as special tokens, message content as plain text, so a
    /// message that contains "&lt;|im_end|&gt;" cannot end its turn or forge another. Where no content holds special-token
    /// text, this is exactly the whole-prompt tokenization (nothing changes for ordinary messages).
    /// </summary>
    public static LLamaToken[] TokenizeChat(LoadedModel model, PromptSegments segments, bool? addBos)
    {
        var handle = model.Handle;
        bool bos = addBos ?? handle.Vocab.ShouldAddBOS;
        bool hostile = segments.ContentMarked && segments.Segments.Any(x => x.IsContent &&
            !handle.Tokenize(x.Text, false, true, Encoding.UTF8).SequenceEqual(handle.Tokenize(x.Text, false, false, Encoding.UTF8)));
        if (!hostile) return handle.Tokenize(segments.Text, bos, true, Encoding.UTF8);
        var tokens = new List<LLamaToken>();
        bool first = true;
        foreach (var x in segments.Segments)
        {
            tokens.AddRange(handle.Tokenize(x.Text, first && bos, !x.IsContent, Encoding.UTF8));
            first = false;
        }
        return [.. tokens];
    }

    private static LLamaToken[] CheckFit(LoadedModel model, LLamaToken[] tokens, string text, int contextSize)
    {
        if (tokens.Length == 0)
            throw new LlmException("EmptyPrompt", LlmErrorKind.InvalidArgument,
                "The prompt is empty and this model adds no BOS token, so there is nothing to continue.", text);
        if (tokens.Length >= contextSize)
            throw new LlmException("PromptTooLong", LlmErrorKind.LimitsExceeded,
                $"The prompt is {tokens.Length} tokens but the context holds {contextSize} (the prompt plus at least one new token). " +
                $"Shorten the prompt or raise -ContextSize (this model was trained for {model.Info.ContextLength}).", text);
        return tokens;
    }

    public void PromptEvaluated() => _promptDone = _watch.Elapsed;

    /// <summary>Takes a sampled token. Returns true when generation goes on (the token is to be decoded next).</summary>
    public bool Accept(LLamaToken token, IEngineEvents events)
    {
        if (CompletionTokens == 0) _firstToken = _watch.Elapsed;
        if (token.IsEndOfGeneration(_model.Handle.Vocab) || (_options.StopTokenIds.Count > 0 && _options.StopTokenIds.Contains((int)token)))
            return Stop(LlmStopReason.EndOfText, events);
        CompletionTokens++;

        // Detokenize; the decoder keeps partial UTF-8 sequences until their last byte arrives.
        var handle = _model.Handle;
        int n = (int)handle.TokenToSpan(token, _pieceBytes, 0, false);
        if (n > _pieceBytes.Length)
        {
            _pieceBytes = new byte[n];
            n = (int)handle.TokenToSpan(token, _pieceBytes, 0, false);
        }
        int charCount = _decoder.GetCharCount(_pieceBytes, 0, n, flush: false);
        if (charCount > _chars.Length) _chars = new char[charCount * 2];
        charCount = _decoder.GetChars(_pieceBytes, 0, n, _chars, 0, flush: false);
        _text.Append(_chars, 0, charCount);

        if (_maxStop > 0 && FindStop(Math.Max(0, _emitted - _maxStop + 1)) is var (at, which) && at >= 0)
        {
            _text.Length = at;
            StopString = which;
            return Stop(LlmStopReason.StopString, events);
        }
        // Hold back text that could be the start of a stop string, so it is never shown and then taken back.
        int safe = _text.Length - HeldBack();
        if (safe > _emitted)
        {
            events.Text(_text.ToString(_emitted, safe - _emitted));
            _emitted = safe;
        }
        if (CompletionTokens >= _options.MaxTokens) return Stop(LlmStopReason.MaxTokens, events);
        if (Position >= _contextSize) return Stop(LlmStopReason.ContextFull, events);
        return true;
    }

    public bool Stop(LlmStopReason reason, IEngineEvents events)
    {
        StopReason = reason;
        if (_text.Length > _emitted) events.Text(_text.ToString(_emitted, _text.Length - _emitted));
        _emitted = _text.Length;
        return false;
    }

    public LlmCompletionResult ToResult(int contextSize, int threads)
    {
        var total = _watch.Elapsed;
        if (_promptDone == TimeSpan.Zero) _promptDone = total;
        var generation = total - _promptDone;
        int evaluated = Tokens.Length - Reused;
        return new LlmCompletionResult
        {
            Text = _text.ToString(),
            Prompt = Prompt,
            Prefix = Prefix,
            ModelName = _model.Info.Name,
            ModelPath = _model.Info.Path,
            PromptTokens = Tokens.Length,
            CachedPromptTokens = Reused,
            CompletionTokens = CompletionTokens,
            StopReason = StopReason ?? LlmStopReason.Cancelled,
            StopString = StopString,
            LoadDuration = LoadDuration,
            PromptDuration = _promptDone,
            TimeToFirstToken = _firstToken,
            GenerationDuration = generation,
            TotalDuration = total + LoadDuration,
            PromptTokensPerSecond = _promptDone > TimeSpan.Zero ? evaluated / _promptDone.TotalSeconds : 0,
            TokensPerSecond = generation > TimeSpan.Zero ? CompletionTokens / generation.TotalSeconds : 0,
            Seed = Seed,
            ContextSize = contextSize,
            Threads = threads,
        };
    }

    public void Dispose()
    {
        _grammar?.Dispose();
        Sampler.Dispose();
    }

    private static SafeLLamaSamplerChainHandle BuildSampler(CompletionOptions o, uint? seed)
    {
        // The order llama.cpp's own tools use: penalties, top-k, top-p, min-p, temperature, then the pick.
        var chain = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        if ((o.RepeatPenalty != 1f || o.FrequencyPenalty != 0f || o.PresencePenalty != 0f) && o.RepeatLastN > 0)
            chain.AddPenalties(o.RepeatLastN, o.RepeatPenalty, o.FrequencyPenalty, o.PresencePenalty);
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

    private (int At, string? Which) FindStop(int from)
    {
        var s = _text.ToString(from, _text.Length - from);
        int best = -1;
        string? which = null;
        foreach (var stop in _options.Stop)
        {
            int i = s.IndexOf(stop, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) { best = i; which = stop; }
        }
        return (best < 0 ? -1 : from + best, which);
    }

    /// <summary>Length of the longest end of the text that is the start of some stop string.</summary>
    private int HeldBack()
    {
        for (int len = Math.Min(_maxStop - 1, _text.Length); len > 0; len--)
        {
            foreach (var stop in _options.Stop)
            {
                if (stop.Length <= len) continue;
                bool match = true;
                for (int i = 0; i < len && match; i++)
                    match = _text[_text.Length - len + i] == stop[i];
                if (match) return len;
            }
        }
        return 0;
    }
}
