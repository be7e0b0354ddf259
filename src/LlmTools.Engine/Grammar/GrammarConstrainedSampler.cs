using System.Runtime.InteropServices;
using System.Text;
using LLama.Native;

namespace LlmTools.Engine.Grammar;

/// <summary>
/// Grammar-constrained sampling the way llama.cpp's common/sampling.cpp does it (its default, grammar_first = false):
/// the ordinary chain (penalties, top-k/p, temperature, pick) samples from the raw logits; only the one token it picked
/// is checked against the grammar; only when the grammar rejects it are the logits reset, the grammar applied to the
/// whole vocabulary and the chain run again. The expensive full-vocabulary grammar pass (llama.cpp #4218) is paid only
/// on a rejection, and the result is the same distribution as grammar-first sampling.
/// <para>
/// Safety: the grammar is parsed in C# (<see cref="GbnfGrammar"/>) before llama.cpp sees it, and llama.cpp's own
/// result is checked for null; a token the grammar does not allow is never passed to llama.cpp's grammar accept
/// (which aborts the process), so a dead end is an <see cref="LlmException"/>, not a crash.
/// </para>
/// Not thread-safe: one sequence, one thread at a time.
/// </summary>
public sealed class GrammarConstrainedSampler : IDisposable
{
    private readonly SafeLlamaModelHandle _model;
    private readonly SafeLLamaSamplerChainHandle _grammar;
    private readonly SafeLLamaSamplerChainHandle _chain;
    private readonly bool _ownsChain;
    private readonly LLamaToken? _eos;
    private LLamaTokenData[] _candidates = [];
    private readonly LLamaTokenData[] _single = new LLamaTokenData[1];
    private readonly Pieces _pieces;
    private readonly byte[] _pending = new byte[8];
    private int _pendingLength;

    private GrammarConstrainedSampler(SafeLlamaModelHandle model, SafeLLamaSamplerChainHandle grammar, SafeLLamaSamplerChainHandle chain, bool ownsChain, GbnfGrammar parsed)
    {
        _model = model;
        _grammar = grammar;
        _chain = chain;
        _ownsChain = ownsChain;
        Grammar = parsed;
        var vocab = model.Vocab;
        _eos = vocab.EOS ?? vocab.EOT;
        _pieces = Pieces.For(model);
    }

    /// <summary>The grammar this sampler enforces.</summary>
    public GbnfGrammar Grammar { get; }

    /// <summary>Tokens the grammar has accepted.</summary>
    public int AcceptedTokens { get; private set; }

    /// <summary>Times the chain's first pick broke the grammar and the step was sampled again over the grammar's tokens.</summary>
    public int Resamples { get; private set; }

    /// <summary>
    /// Builds the sampler. <paramref name="chain"/> is the ordinary sampler chain (it must end in a picking sampler:
    /// greedy or dist) and must not contain a grammar; it is disposed with this object when <paramref name="ownsChain"/>.
    /// Throws <see cref="LlmException"/> GrammarInvalid for a grammar that does not parse (here or in llama.cpp).
    /// </summary>
    public static GrammarConstrainedSampler Create(SafeLlamaModelHandle model, string gbnf, SafeLLamaSamplerChainHandle chain,
        bool ownsChain = true, string root = "root")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(chain);
        var parsed = GbnfGrammar.Parse(gbnf, root);
        var grammar = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        try
        {
            Native.AddGrammar(grammar, model, gbnf, root);
            return new GrammarConstrainedSampler(model, grammar, chain, ownsChain, parsed);
        }
        catch
        {
            grammar.Dispose();
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
        var logits = context.GetLogitsIth(logitIndex);
        Fill(logits);
        LLamaToken token = ApplyChain(logits.Length, _chain);
        if (Allows(token)) return token;


        // Rejected: start again from the logits, cut them to the grammar's tokens, then run the chain on those.
        Resamples++;
        Fill(logits);
        int n = logits.Length;
        var arr = new LLamaTokenDataArray(_candidates.AsMemory(0, n), false);
        using (LLamaTokenDataArrayNative.Create(arr, out var native))
        {
            _grammar.Apply(ref native);
            bool any = false;
            var data = native.Data;
            for (int i = 0; i < data.Length; i++)
            {
                if (float.IsNegativeInfinity(data[i].Logit)) continue;
                if (!TextOk(data[i].ID)) data[i].Logit = float.NegativeInfinity;
                else any = true;
            }
            if (!any)
                throw new LlmException("GrammarDeadEnd", LlmErrorKind.InvalidOperation,
                    $"The grammar allows no token of this model's vocabulary after {AcceptedTokens} tokens (it may need characters the vocabulary cannot spell).");
        }
        token = ApplyChain(n, _chain, keep: true);
        if (!Allows(token))
            throw new LlmException("GrammarDeadEnd", LlmErrorKind.InvalidOperation,
                $"The sampler chain picked token {(int)token}, which the grammar forbids, from the grammar's candidates; the chain must end in a picking sampler (greedy or dist).");
        return token;
    }

    /// <summary>Advances the grammar and the chain past <paramref name="token"/> (which the grammar must allow).</summary>
    public void Accept(LLamaToken token)
    {
        if (!Allows(token))
            throw new LlmException("GrammarRejectedToken", LlmErrorKind.InvalidOperation,
                $"Token {(int)token} does not continue the grammar here; it cannot be accepted.");
        _grammar.Accept(token);
        _chain.Accept(token);
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
    public bool Allows(LLamaToken token) => TextOk(token) && GrammarAllows(token);

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
    public bool IsComplete => _eos is { } eos && Allows(eos);

    private void Fill(ReadOnlySpan<float> logits)
    {
        if (_candidates.Length < logits.Length) _candidates = new LLamaTokenData[logits.Length];
        for (int i = 0; i < logits.Length; i++) _candidates[i] = new LLamaTokenData(i, logits[i], 0f);
    }

    /// <summary>Runs a chain over the candidates (already filled, or filtered in place when <paramref name="keep"/>).</summary>
    private LLamaToken ApplyChain(int n, SafeLLamaSamplerChainHandle chain, bool keep = false)
    {
        _ = keep;
        var arr = new LLamaTokenDataArray(_candidates.AsMemory(0, n), false);
        using (LLamaTokenDataArrayNative.Create(arr, out var native))
        {
            chain.Apply(ref native);
            long selected = native.Selected;
            if (selected < 0 || selected >= native.Data.Length)
                throw new LlmException("SamplerNoSelection", LlmErrorKind.InvalidOperation,
                    "The sampler chain selected no token; it must end in a picking sampler (greedy or dist).");
            return native.Data[(int)selected].ID;
        }
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
        if (_ownsChain) _chain.Dispose();
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
