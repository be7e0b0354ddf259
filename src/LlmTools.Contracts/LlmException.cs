namespace LlmTools;

/// <summary>What kind of failure an <see cref="LlmException"/> is; the module maps it onto PowerShell's ErrorCategory.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))] // ConvertTo-Json writes the name (JsonShape.cs)
public enum LlmErrorKind
{
    ObjectNotFound,
    InvalidData,
    InvalidArgument,
    LimitsExceeded,
    ResourceUnavailable,
    NotImplemented,
    OperationStopped,
    InvalidOperation,
    ResourceBusy,
    NotInstalled,
    PermissionDenied,
    ConnectionError,
}

/// <summary>
/// An engine failure the user can act on. <see cref="ErrorId"/> is stable (tests and scripts match on it);
/// the message says what went wrong and what to do.
/// </summary>
public sealed class LlmException : Exception
{
    public LlmException(string errorId, LlmErrorKind kind, string message, object? target = null, Exception? inner = null)
        : base(message, inner)
    {
        ErrorId = errorId;
        Kind = kind;
        Target = target;
    }

    public string ErrorId { get; }
    public LlmErrorKind Kind { get; }
    public object? Target { get; }
    /// <summary>What the user can do about it, in one sentence (the ErrorRecord's RecommendedAction); null when the
    /// message says it already or there is nothing to do.</summary>
    public string? RecommendedAction { get; init; }
}
