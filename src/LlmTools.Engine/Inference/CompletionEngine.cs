using System.Text;
using LlmTools.Engine.Inference;
using LLama.Native;

namespace LlmTools.Engine;

/// <summary>Text completion and tokenization on a model from the <see cref="ModelCache"/>.</summary>
public static class CompletionEngine
{
    /// <summary>
    /// Continues <paramref name="prefix"/> + <paramref name="prompt"/> (<paramref name="chat"/>: the same text as a rendered
    /// chat, whose message content is tokenized as plain text). Reuses the KV state of the longest prefix the
    /// context already holds; stops at end of text, MaxTokens, a stop string, a full context, or cancellation (the
    /// model stays usable).
    /// </summary>
    public static LlmCompletionResult Complete(ModelLease lease, string prompt, CompletionOptions options,
        ContextOptions contextOptions, IEngineEvents events, CancellationToken cancel, string prefix = "", PromptSegments? chat = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ValidateOptions(options);
        var model = lease.Model;
        RequireWeights(model);
        var resolved = model.Resolve(contextOptions);
        LoadedModel.WarnAboutThreads(resolved.Threads, events);
        // A rendered chat (prefix + prompt) is tokenized with its message content as plain text.
        Sequence sequence;
        try
        {
            var tokens = chat is null ? null : Sequence.TokenizeChat(model, chat, options.AddBos);
            sequence = new Sequence(model, prefix, prompt, options, resolved.ContextSize, lease.TakeLoadDuration(), tokens);
        }
        catch (ObjectDisposedException e)
        {
            throw new LlmException("ModelUnloaded", LlmErrorKind.InvalidOperation,
                $"'{model.Info.Path}' was removed from the session (Remove-LlmModel). Run the command again to load it.", model.Info.Path, e);
        }
        return model.Scheduler.Run(new ModelScheduler.Job(model.Scheduler, sequence, resolved.ContextSize, resolved.Threads, events, cancel));
    }

    internal static void RequireWeights(LoadedModel model)
    {
        // A lease kept past Remove-LlmModel and the end of its last call: the weights are gone, say so plainly.
        if (model.IsDisposed)
            throw new LlmException("ModelUnloaded", LlmErrorKind.InvalidOperation,
                $"'{model.Info.Path}' was removed from the session (Remove-LlmModel). Run the command again to load it.", model.Info.Path);
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
        // OpenAI's range, so a value means the same here and on any server.
        if (!(o.FrequencyPenalty is >= -2 and <= 2)) throw Bad("FrequencyPenalty", o.FrequencyPenalty, "use -2 to 2 (0 is off)");
        if (!(o.PresencePenalty is >= -2 and <= 2)) throw Bad("PresencePenalty", o.PresencePenalty, "use -2 to 2 (0 is off)");
        foreach (var s in o.Stop ?? [])
            if (string.IsNullOrEmpty(s))
                throw new LlmException("EmptyStopString", LlmErrorKind.InvalidArgument, "A stop string is empty; every -Stop value must have at least one character.");
    }

    /// <summary>Creates (or finds) the context these options describe, so the first completion does not pay for it.</summary>
    /// <remarks>The options given become the model's defaults until it is removed (Import-LlmModel -ContextSize 8192).</remarks>
    public static void Prepare(ModelLease lease, ContextOptions contextOptions, IEngineEvents events)
    {
        if (lease.Model.VocabularyOnly) return;
        var model = lease.Model;
        var resolved = model.Resolve(contextOptions);
        LoadedModel.WarnAboutThreads(resolved.Threads, events);
        model.Defaults = new ContextOptions
        {
            ContextSize = contextOptions.ContextSize ?? model.Defaults.ContextSize,
            Threads = contextOptions.Threads ?? model.Defaults.Threads,
            BatchSize = contextOptions.BatchSize ?? model.Defaults.BatchSize,
        };
        model.Scheduler.Prepare(resolved.ContextSize, events);
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
            ModelName = model.Info.Name,
            Count = tokens.Length,
            Ids = tokens.Select(t => (int)t).ToArray(),
            Pieces = pieces,
            ContextLength = model.Info.ContextLength,
        };
    }
}
