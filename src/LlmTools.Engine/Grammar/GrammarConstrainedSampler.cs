using System.Runtime.InteropServices;
using System.Text;
using LLama.Native;

namespace LlmTools.Engine.Grammar;

/// <summary>
/// Grammar-constrained sampling with the grammar applied after the other samplers have cut the candidates (llama.cpp
/// #4218: a grammar pass over the whole vocabulary costs ~10 ms a token at 32k tokens). As llama.cpp's
/// common/sampling.cpp does (grammar_first = false), the ordinary chain samples from the raw logits and only the one
/// token it picked is checked against the grammar. When the grammar rejects it, this goes one step further than
/// llama.cpp before its full pass: the grammar is applied to the candidates the chain's cutting samplers (top-k, top-p,
/// min-p; for greedy, the 64 best) kept, and the pick is made among the valid ones. Only when none of those is valid
/// are the logits reset, the grammar applied to the whole vocabulary and the chain run again (llama.cpp's resampling).
/// Greedy results equal grammar-first greedy exactly; with top-k/top-p the cut is taken before the grammar.
/// <para>
/// Safety: the grammar is parsed in C# (<see cref="GbnfGrammar"/>) before llama.cpp sees it, and llama.cpp's own
/// result is checked for null; a token the grammar does not allow is never passed to llama.cpp's grammar accept
/// (which aborts the process), so a dead end is an <see cref="LlmException"/>, not a crash.
/// </para>
/// <para>
/// Lazy mode (a grammar made by <see cref="LazyGrammar.Make"/>): the text is free until one of the trigger strings (or a
/// token that is one, such as a control token [TOOL_CALLS]) has been generated, and from there it must follow the
/// grammar, which describes what comes after the trigger. A token that completes a trigger and carries text beyond it
/// gives that text to the grammar, byte by byte (through the vocabulary's one-byte tokens); such a token is taken only
/// when the grammar accepts its rest, so the text after the trigger always follows the grammar.
/// </para>
/// Not thread-safe: one sequence, one thread at a time.
/// </summary>
public sealed class GrammarConstrainedSampler : IDisposable
{
    private readonly SafeLlamaModelHandle _model;
    private readonly SafeLLamaSamplerChainHandle _grammar;
    private readonly SafeLLamaSamplerChainHandle _cut;
    private readonly SafeLLamaSamplerChainHandle _pick;
    private readonly bool _greedy;
    private readonly bool _hasCut;
    private LLamaTokenData[] _cutSet = new LLamaTokenData[64];
    private LLamaTokenData[] _scratch = new LLamaTokenData[64];
    /// <summary>Candidates the grammar is tried on first when no sampler cuts them (greedy): the best this many.</summary>
    private const int GreedyWindow = 64;
    /// <summary>
    /// Below this vocabulary size the grammar goes first over every token (llama.cpp's grammar-first): a pass over a
    /// few thousand tokens costs less than the extra steps of trying the cut first. Tests set 0 to exercise the cut path.
    /// </summary>
    internal int GrammarFirstBelowVocabulary { get; set; } = 4096;

    /// <summary>The token Sample returned, already checked: Accept need not ask llama.cpp again.</summary>
    private LLamaToken? _verified;
    private readonly LLamaToken? _eos;
    private LLamaTokenData[] _candidates = [];
    private readonly LLamaTokenData[] _single = new LLamaTokenData[1];
    private readonly Pieces _pieces;
    private readonly byte[] _pending = new byte[8];
    private int _pendingLength;

    // Lazy mode: the triggers (as UTF-8 and as single tokens), and the last bytes generated while waiting for one.
    private readonly byte[][] _triggers = [];
    private readonly HashSet<int> _triggerTokens = [];
    private byte[] _recent = [];
    private bool _awaiting;
    /// <summary>For each byte, a token whose text is that one byte (-1: none); feeds a trigger token's rest to the grammar.</summary>
    private int[] _byteTokens = [];

    private GrammarConstrainedSampler(SafeLlamaModelHandle model, SafeLLamaSamplerChainHandle grammar, SafeLLamaSamplerChainHandle chain, GbnfGrammar parsed,
        IReadOnlyList<string> triggers)
    {
        _model = model;
        _grammar = grammar;
        // Split the chain into its cutting samplers and its final pick (clones carry their state: penalty history, RNG).
        int count = chain.Count;
        if (count == 0) throw new ArgumentException("The sampler chain is empty; it must end in a picking sampler (greedy or dist).", nameof(chain));
        _cut = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        _pick = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        for (int i = 0; i < count - 1; i++)
        {
            _cut.AddClone(chain, i);
            _hasCut |= chain.GetName(i) is "top-k" or "top-p" or "min-p" or "typical" or "top-n-sigma" or "xtc";
        }
        _pick.AddClone(chain, count - 1);
        _greedy = chain.GetName(count - 1) == "greedy";
        Grammar = parsed;
        var vocab = model.Vocab;
        _eos = vocab.EOS ?? vocab.EOT;
        _pieces = Pieces.For(model);
        if (triggers.Count > 0)
        {
            _awaiting = true;
            _triggers = [.. triggers.Select(t => Encoding.UTF8.GetBytes(t))];
            _byteTokens = new int[256];
            Array.Fill(_byteTokens, -1);
            for (int i = _pieces.Bytes.Length - 1; i >= 0; i--)
                if (_pieces.Bytes[i].Length == 1 && !_pieces.EndOfGeneration[i]) _byteTokens[_pieces.Bytes[i][0]] = i;
            foreach (var t in triggers)
            {
                // A trigger that is one token of the vocabulary (e.g. a control token, whose text the output does not show).
                var ids = model.Tokenize(t, false, true, Encoding.UTF8);
                if (ids.Length == 1) _triggerTokens.Add((int)ids[0]);
            }
        }
    }

    /// <summary>Lazy mode: true until a trigger has been generated (the text is free until then).</summary>
    public bool IsAwaitingTrigger => _awaiting;

    /// <summary>The grammar this sampler enforces.</summary>
    public GbnfGrammar Grammar { get; }

    /// <summary>Tokens the grammar has accepted.</summary>
    public int AcceptedTokens { get; private set; }

    /// <summary>Times the chain's first pick broke the grammar and the step was sampled again over the grammar's tokens.</summary>
    public int Resamples { get; private set; }

    /// <summary>
    /// Builds the sampler. <paramref name="chain"/> is the ordinary sampler chain (it must end in a picking sampler:
    /// greedy or dist, and hold no grammar), already given the prompt tokens its penalties look at; its samplers are
    /// cloned, so it is no longer needed (disposed here when <paramref name="ownsChain"/>).
    /// Throws <see cref="LlmException"/> GrammarInvalid for a grammar that does not parse (here or in llama.cpp).
    /// </summary>
    public static GrammarConstrainedSampler Create(SafeLlamaModelHandle model, string gbnf, SafeLLamaSamplerChainHandle chain,
        bool ownsChain = true, string root = "root")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(chain);
        var parsed = GbnfGrammar.Parse(gbnf, root);
        var triggers = LazyGrammar.Triggers(gbnf);
        var grammar = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        try
        {
            Native.AddGrammar(grammar, model, gbnf, root);
            var sampler = new GrammarConstrainedSampler(model, grammar, chain, parsed, triggers);
            if (ownsChain) chain.Dispose();
            return sampler;
        }
        catch
        {
            grammar.Dispose();
            if (ownsChain) chain.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Samples the token for the <paramref name="logitIndex"/>-th output of the last decode, within the grammar. Does not
    /// accept it: call <see cref="Accept"/> with the token that is kept. Throws GrammarDeadEnd when the grammar allows
    /// no token of this vocabulary here.
    /// </summary>
    public LLamaToken Sample(SafeLLamaContextHandle context, int logitIndex)
    {
        if (_awaiting) return SampleFree(context, logitIndex);
        var logits = context.GetLogitsIth(logitIndex);
        int n = logits.Length;
        _verified = null;
        var arr = new LLamaTokenDataArray(_candidates.AsMemory(0, Math.Min(n, _candidates.Length)), false);
        if (n < GrammarFirstBelowVocabulary) goto full;

        // 1. The ordinary chain on the raw logits: cut, then pick; the grammar looks at the picked token only.
        Fill(logits);
        int m;
        arr = new LLamaTokenDataArray(_candidates.AsMemory(0, n), false);
        using (LLamaTokenDataArrayNative.Create(arr, out var native))
        {
            _cut.Apply(ref native);
            m = (int)native.Size;
            if (!_hasCut && m > GreedyWindow && _greedy) m = TopByLogit(native.Data, GreedyWindow);
            else
            {
                if (_cutSet.Length < m) _cutSet = new LLamaTokenData[m];
                native.Data[..m].CopyTo(_cutSet);
            }
        }
        var token = Pick(_cutSet, m, grammar: false, out _);
        if (Allows(token)) return Verified(token);
        Resamples++;

        // 2. The grammar on the cut candidates (greedy: the best 64), the pick among the valid ones. With dist and
        // nothing cut, this would sample from a different distribution: go to the full pass.
        if (_hasCut || _greedy)
        {
            token = Pick(_cutSet, m, grammar: true, out bool any);
            if (any) return Verified(token); // picked among candidates the grammar and the text check allow
        }

        // 3. llama.cpp's resampling: the grammar over the whole vocabulary, then the chain.
    full:
        Fill(logits);
        arr = new LLamaTokenDataArray(_candidates.AsMemory(0, n), false);
        using (LLamaTokenDataArrayNative.Create(arr, out var native))
        {
            if (!Constrain(native.Data))
                throw new LlmException("GrammarDeadEnd", LlmErrorKind.InvalidOperation,
                    $"The grammar allows no token of this model's vocabulary after {AcceptedTokens} tokens (it may need characters the vocabulary cannot spell).");
            _cut.Apply(ref native);
            _pick.Apply(ref native);
            token = Selected(ref native, requireAllowed: true);
        }
        return Verified(token);
    }

    /// <summary>Lazy mode before the trigger: the chain's own pick, except a token that would run past a trigger.</summary>
    private LLamaToken SampleFree(SafeLLamaContextHandle context, int logitIndex)
    {
        var logits = context.GetLogitsIth(logitIndex);
        int n = logits.Length;
        List<int>? refused = null;
        for (int attempt = 0; ; attempt++)
        {
            Fill(logits);
            if (refused is not null)
                foreach (var id in refused) _candidates[id].Logit = float.NegativeInfinity;
            LLamaToken token;
            var arr = new LLamaTokenDataArray(_candidates.AsMemory(0, n), false);
            using (LLamaTokenDataArrayNative.Create(arr, out var native))
            {
                _cut.Apply(ref native);
                _pick.Apply(ref native);
                token = Selected(ref native);
            }
            if (!Overshoots(token)) return Verified(token);
            // Rare (a token that runs past a trigger into text the grammar refuses): refuse it and pick again; after a
            // few, refuse every such token at once.
            refused ??= [];
            if (attempt < 4) refused.Add((int)token);
            else if (attempt == 4)
            {
                for (int i = 0; i < n; i++)
                    if (Overshoots(i)) refused.Add(i);
            }
            else throw new LlmException("GrammarDeadEnd", LlmErrorKind.InvalidOperation,
                "Every likely token would run past the tool-call trigger into text its grammar refuses; the sampler found nothing to pick.");
        }
    }

    /// <summary>Where the earliest trigger completed by <paramref name="piece"/> ends in recent+piece; -1 when none.</summary>
    private int TriggerEnd(ReadOnlySpan<byte> piece)
    {
        Span<byte> all = _recent.Length + piece.Length <= 512 ? stackalloc byte[_recent.Length + piece.Length] : new byte[_recent.Length + piece.Length];
        _recent.CopyTo(all);
        piece.CopyTo(all[_recent.Length..]);
        int best = -1;
        foreach (var t in _triggers)
        {
            // Only an occurrence that ends inside the new piece is new.
            int from = Math.Max(0, _recent.Length - t.Length + 1);
            int i = all[from..].IndexOf(t);
            if (i < 0) continue;
            int end = from + i + t.Length;
            if (best < 0 || end < best) best = end;
        }
        return best < 0 ? -1 : best - _recent.Length;
    }

    /// <summary>A token that completes a trigger with text beyond it that the grammar does not accept.</summary>
    private bool Overshoots(LLamaToken token)
    {
        int id = (int)token;
        if (_triggerTokens.Contains(id) || (uint)id >= (uint)_pieces.Bytes.Length) return false;
        var piece = _pieces.Bytes[id];
        int end = piece.Length == 0 ? -1 : TriggerEnd(piece);
        return end >= 0 && end < piece.Length && !FeedRest(piece.AsSpan(end), commit: false);
    }

    /// <summary>
    /// Gives the grammar the bytes that follow a trigger inside one token, each as the one-byte token that spells it;
    /// false (and nothing changed) when a byte has no such token or the grammar refuses it. Checked on a clone first:
    /// llama.cpp aborts on a token its grammar refuses.
    /// </summary>
    private bool FeedRest(ReadOnlySpan<byte> rest, bool commit)
    {
        using var probe = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        probe.AddClone(_grammar, 0);
        foreach (var b in rest)
        {
            int t = _byteTokens[b];
            if (t < 0) return false;
            _single[0] = new LLamaTokenData(t, 1f, 0f);
            var arr = new LLamaTokenDataArray(_single.AsMemory(), false);
            using (LLamaTokenDataArrayNative.Create(arr, out var native))
            {
                probe.Apply(ref native);
                if (float.IsNegativeInfinity(native.Data[0].Logit)) return false;
            }
            probe.Accept(t);
        }
        if (!commit) return true;
        foreach (var b in rest)
        {
            _grammar.Accept(_byteTokens[b]);
            AcceptedTokens++;
        }
        _pendingLength = Utf8.IncompleteTail(rest, out int tail);
        rest[^tail..].CopyTo(_pending);
        _pendingLength = tail;
        return true;
    }

    /// <summary>Lazy mode before the trigger: the chain takes the token; the trigger, once complete, switches the grammar on.</summary>
    private void AcceptFree(LLamaToken token)
    {
        _verified = null;
        _cut.Accept(token);
        _pick.Accept(token);
        int id = (int)token;
        var piece = (uint)id < (uint)_pieces.Bytes.Length ? _pieces.Bytes[id] : [];
        int end = _triggerTokens.Contains(id) ? piece.Length : piece.Length == 0 ? -1 : TriggerEnd(piece);
        if (end >= 0)
        {
            _awaiting = false;
            _recent = [];
            _pendingLength = 0;
            if (end < piece.Length && !FeedRest(piece.AsSpan(end), commit: true))
                throw new LlmException("GrammarRejectedToken", LlmErrorKind.InvalidOperation,
                    $"Token {id} runs past the grammar's trigger with text the grammar refuses; it cannot be accepted.");
            return;
        }
        int keep = _triggers.Max(t => t.Length) - 1;
        var all = new byte[_recent.Length + piece.Length];
        _recent.CopyTo(all, 0);
        piece.CopyTo(all, _recent.Length);
        _recent = all.Length <= keep ? all : all[^keep..];
    }

    private LLamaToken Verified(LLamaToken token)
    {
        _verified = token;
        return token;
    }

    /// <summary>Runs the pick on a copy of the first <paramref name="m"/> candidates, after the grammar when asked.</summary>
    private LLamaToken Pick(LLamaTokenData[] set, int m, bool grammar, out bool any)
    {
        if (_scratch.Length < m) _scratch = new LLamaTokenData[Math.Max(m, _scratch.Length * 2)];
        set.AsSpan(0, m).CopyTo(_scratch);
        var arr = new LLamaTokenDataArray(_scratch.AsMemory(0, m), false);
        using (LLamaTokenDataArrayNative.Create(arr, out var native))
        {
            any = true;
            if (grammar && !(any = Constrain(native.Data))) return default;
            _pick.Apply(ref native);
            return Selected(ref native, requireAllowed: grammar);
        }
    }

    /// <summary>Applies the grammar and the text check to candidates in place; false when none is left.</summary>
    private unsafe bool Constrain(Span<LLamaTokenData> data)
    {
        fixed (LLamaTokenData* p = data)
        {
            var native = new NativeArray { Data = p, Size = (nuint)data.Length, Selected = -1, Sorted = false };
            Native.Apply(_grammar, ref native);
        }
        bool any = false;
        for (int i = 0; i < data.Length; i++)
        {
            if (float.IsNegativeInfinity(data[i].Logit)) continue;
            if (!TextOk(data[i].ID)) data[i].Logit = float.NegativeInfinity;
            else any = true;
        }
        return any;
    }

    /// <summary>Copies the <paramref name="k"/> candidates with the highest logits into the cut set; returns k.</summary>
    private int TopByLogit(Span<LLamaTokenData> data, int k)
    {
        var heap = new PriorityQueue<int, float>(k + 1);
        for (int i = 0; i < data.Length; i++)
        {
            if (heap.Count < k) heap.Enqueue(i, data[i].Logit);
            else if (data[i].Logit > data[heap.Peek()].Logit) heap.EnqueueDequeue(i, data[i].Logit);
        }
        if (_cutSet.Length < k) _cutSet = new LLamaTokenData[k];
        int c = 0;
        while (heap.TryDequeue(out int i, out _)) _cutSet[c++] = data[i];
        return c;
    }

    private static LLamaToken Selected(ref LLamaTokenDataArrayNative native, bool requireAllowed = false)
    {
        long selected = native.Selected;
        if (selected < 0 || selected >= native.Data.Length)
            throw new LlmException("SamplerNoSelection", LlmErrorKind.InvalidOperation,
                "The sampler chain selected no token; it must end in a picking sampler (greedy or dist).");
        var d = native.Data[(int)selected];
        // Candidates the grammar refused carry -inf; a pick among them would make llama.cpp abort on accept.
        if (requireAllowed && float.IsNegativeInfinity(d.Logit))
            throw new LlmException("GrammarDeadEnd", LlmErrorKind.InvalidOperation,
                $"The sampler chain picked token {(int)d.ID}, which the grammar forbids; the chain must end in a picking sampler (greedy or dist).");
        return d.ID;
    }

    /// <summary>llama_token_data_array as llama.h lays it out.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct NativeArray
    {
        public LLamaTokenData* Data;
        public nuint Size;
        public long Selected;
        [MarshalAs(UnmanagedType.I1)] public bool Sorted;
    }

    /// <summary>Advances the grammar and the chain past <paramref name="token"/> (which the grammar must allow).</summary>
    public void Accept(LLamaToken token)
    {
        if (_awaiting)
        {
            if (_verified != token && Overshoots(token))
                throw new LlmException("GrammarRejectedToken", LlmErrorKind.InvalidOperation,
                    $"Token {(int)token} runs past the grammar's trigger; it cannot be accepted.");
            AcceptFree(token);
            return;
        }
        if (_verified != token && !Allows(token))
            throw new LlmException("GrammarRejectedToken", LlmErrorKind.InvalidOperation,
                $"Token {(int)token} does not continue the grammar here; it cannot be accepted.");
        _verified = null;
        _grammar.Accept(token);
        _cut.Accept(token);
        _pick.Accept(token);
        AcceptedTokens++;
        // Keep the bytes of a character still incomplete, to check the next token's bytes continue it validly.
        var piece = _pieces.Bytes[(int)token];
        var all = new byte[_pendingLength + piece.Length];
        _pending.AsSpan(0, _pendingLength).CopyTo(all);
        piece.CopyTo(all, _pendingLength);
        _pendingLength = Utf8.IncompleteTail(all, out int tail);
        all.AsSpan(all.Length - tail).CopyTo(_pending);
        _pendingLength = tail;
    }

    /// <summary>
    /// Whether <paramref name="token"/> may come next: the grammar allows it (for an end-of-generation token: the grammar
    /// is complete), and its bytes continue the text as valid UTF-8. llama.cpp's grammar decodes bytes leniently
    /// (surrogates, code points above U+10FFFF and some overlong forms pass), which would put U+FFFD into the text and
    /// break length limits; and it matches a control token by its name, which the text does not show.
    /// </summary>
    public bool Allows(LLamaToken token) => _awaiting ? !Overshoots(token) : TextOk(token) && GrammarAllows(token);

    private bool TextOk(LLamaToken token)
    {
        int id = (int)token;
        if ((uint)id >= (uint)_pieces.Bytes.Length) return false;
        var piece = _pieces.Bytes[id];
        if (piece.Length == 0) return _pieces.EndOfGeneration[id];
        if (_pendingLength == 0 && _pieces.Ascii[id]) return true;
        Span<byte> all = stackalloc byte[_pendingLength + piece.Length];
        _pending.AsSpan(0, _pendingLength).CopyTo(all);
        piece.CopyTo(all[_pendingLength..]);
        return Utf8.IsValidPrefix(all);
    }

    private bool GrammarAllows(LLamaToken token)
    {
        _single[0] = new LLamaTokenData(token, 1f, 0f);
        var arr = new LLamaTokenDataArray(_single.AsMemory(), false);
        using (LLamaTokenDataArrayNative.Create(arr, out var native))
        {
            _grammar.Apply(ref native);
            return !float.IsNegativeInfinity(native.Data[0].Logit);
        }
    }

    /// <summary>
    /// True when the text so far is a complete sentence of the grammar (the model may end here). False when the model
    /// has no end-of-text token to ask with.
    /// </summary>
    public bool IsComplete => _awaiting || (_eos is { } eos && Allows(eos));

    private void Fill(ReadOnlySpan<float> logits)
    {
        if (_candidates.Length < logits.Length) _candidates = new LLamaTokenData[logits.Length];
        for (int i = 0; i < logits.Length; i++) _candidates[i] = new LLamaTokenData(i, logits[i], 0f);
    }

    /// <summary>Each token's bytes as the text shows them (special tokens unrendered), per model, built once.</summary>
    private sealed class Pieces
    {
        private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<SafeLlamaModelHandle, Pieces> Cache = new();

        public required byte[][] Bytes { get; init; }
        public required bool[] Ascii { get; init; }
        public required bool[] EndOfGeneration { get; init; }

        public static Pieces For(SafeLlamaModelHandle model) => Cache.GetValue(model, m =>
        {
            var vocab = m.Vocab;
            int n = vocab.Count;
            var bytes = new byte[n][];
            var ascii = new bool[n];
            var eog = new bool[n];
            var buf = new byte[256];
            for (int i = 0; i < n; i++)
            {
                int len = (int)m.TokenToSpan(i, buf, 0, false);
                if (len > buf.Length) { buf = new byte[len]; len = (int)m.TokenToSpan(i, buf, 0, false); }
                bytes[i] = buf.AsSpan(0, len).ToArray();
                ascii[i] = System.Text.Ascii.IsValid(bytes[i]);
                eog[i] = ((LLamaToken)i).IsEndOfGeneration(vocab);
            }
            return new Pieces { Bytes = bytes, Ascii = ascii, EndOfGeneration = eog };
        });
    }

    /// <summary>Strict UTF-8 (as .NET decodes it) on byte streams cut at token boundaries.</summary>
    internal static class Utf8
    {
        /// <summary>True when the bytes are valid UTF-8, possibly ending inside a character that can still be completed.</summary>
        public static bool IsValidPrefix(ReadOnlySpan<byte> bytes)
        {
            while (!bytes.IsEmpty)
            {
                var status = System.Text.Rune.DecodeFromUtf8(bytes, out _, out int used);
                if (status == System.Buffers.OperationStatus.NeedMoreData) return true;
                if (status != System.Buffers.OperationStatus.Done) return false;
                bytes = bytes[used..];
            }
            return true;
        }

        /// <summary>Length of the incomplete character at the end of valid bytes (0 when they end on a boundary).</summary>
        public static int IncompleteTail(ReadOnlySpan<byte> bytes, out int tail)
        {
            tail = 0;
            while (!bytes.IsEmpty)
            {
                var status = System.Text.Rune.DecodeFromUtf8(bytes, out _, out int used);
                if (status == System.Buffers.OperationStatus.NeedMoreData) { tail = bytes.Length; break; }
                bytes = bytes[Math.Max(1, used)..];
            }
            return tail;
        }
    }

    public void Dispose()
    {
        _grammar.Dispose();
        _cut.Dispose();
        _pick.Dispose();
    }

    /// <summary>
    /// llama.cpp's grammar sampler, created directly so a null result (a grammar llama.cpp refuses) is seen before it
    /// goes into a chain: LLamaSharp's AddGrammar adds it unchecked, and the chain would then dereference null.
    /// </summary>
    private static unsafe class Native
    {
        private static readonly Lazy<IntPtr> Library = new(() =>
        {
            foreach (var name in new[] { "libllama.so", "llama", "libllama.dylib", "llama.dll" })
                if (NativeLibrary.TryLoad(name, out var h) && NativeLibrary.TryGetExport(h, "llama_sampler_init_grammar", out _))
                    return h;
            return IntPtr.Zero;
        });

        private static IntPtr Export(string name)
        {
            var lib = Library.Value;
            if (lib == IntPtr.Zero || !NativeLibrary.TryGetExport(lib, name, out var f))
                throw new LlmException("GrammarUnavailable", LlmErrorKind.ResourceUnavailable,
                    $"llama.cpp's {name} could not be found in the loaded native library.");
            return f;
        }

        public static void Apply(SafeLLamaSamplerChainHandle chain, ref NativeArray candidates)
        {
            var apply = (delegate* unmanaged[Cdecl]<IntPtr, NativeArray*, void>)ApplyExport.Value;
            bool added = false;
            try
            {
                chain.DangerousAddRef(ref added);
                fixed (NativeArray* p = &candidates) apply(chain.DangerousGetHandle(), p);
            }
            finally
            {
                if (added) chain.DangerousRelease();
            }
        }

        private static readonly Lazy<IntPtr> ApplyExport = new(() => Export("llama_sampler_apply"));

        public static void AddGrammar(SafeLLamaSamplerChainHandle chain, SafeLlamaModelHandle model, string gbnf, string root)
        {
            var getVocab = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr>)Export("llama_model_get_vocab");
            var init = (delegate* unmanaged[Cdecl]<IntPtr, byte*, byte*, IntPtr>)Export("llama_sampler_init_grammar");
            var add = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, void>)Export("llama_sampler_chain_add");
            byte[] g = NulTerminated(gbnf), r = NulTerminated(root);
            bool addedModel = false, addedChain = false;
            try
            {
                model.DangerousAddRef(ref addedModel);
                chain.DangerousAddRef(ref addedChain);
                IntPtr sampler;
                fixed (byte* gp = g)
                fixed (byte* rp = r)
                {
                    var vocab = getVocab(model.DangerousGetHandle());
                    sampler = init(vocab, gp, rp);
                }
                if (sampler == IntPtr.Zero)
                    throw GbnfGrammar.Invalid("llama.cpp refused it (run with -Verbose for llama.cpp's message)");
                add(chain.DangerousGetHandle(), sampler); // the chain owns it from here
            }
            finally
            {
                if (addedChain) chain.DangerousRelease();
                if (addedModel) model.DangerousRelease();
            }
        }

        private static byte[] NulTerminated(string s)
        {
            var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
            Encoding.UTF8.GetBytes(s, bytes);
            return bytes;
        }
    }
}
