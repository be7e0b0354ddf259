using System.Text.Json;
using System.Text.Json.Serialization;

namespace LlmTools;

/// <summary>
/// Values every cmdlet uses when its parameter is not given (Set-LlmDefault / Get-LlmDefault): saved for the user as
/// JSON in $XDG_CONFIG_HOME/llmtools/defaults.json (~/.config/llmtools/defaults.json), or held for this session only.
/// A session value wins over a saved one; a parameter given on the command line wins over both.
/// </summary>
public sealed class LlmDefaults
{
    /// <summary>-Model when none is given: a path, a Hub reference, or tinystories.</summary>
    public string? Model { get; set; }
    public int? ContextSize { get; set; }
    public int? Threads { get; set; }
    public int? GpuLayers { get; set; }
    /// <summary>The server to send generation to (Start-LlmServer's URL) instead of running the model here.</summary>
    public string? Endpoint { get; set; }
    /// <summary>Where these values come from: User (the saved file), Session, or Effective (both merged).</summary>
    [JsonIgnore]
    public string Scope { get; set; } = "Effective";
    /// <summary>The file the user's defaults are saved in.</summary>
    [JsonIgnore]
    public string Path { get; set; } = "";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private static LlmDefaults s_session = new() { Scope = "Session" };

    public static string FilePath
    {
        get
        {
            var config = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME");
            if (string.IsNullOrEmpty(config))
                config = System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
            return System.IO.Path.Combine(config, "llmtools", "defaults.json");
        }
    }

    /// <summary>The saved defaults; an empty set when there is no file. A broken file is an error that names it.</summary>
    public static LlmDefaults LoadUser()
    {
        var path = FilePath;
        LlmDefaults d;
        if (!File.Exists(path)) d = new();
        else
        {
            try
            {
                d = JsonSerializer.Deserialize<LlmDefaults>(File.ReadAllText(path), Json) ?? new();
            }
            catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
            {
                throw new LlmException("LlmDefaultsUnreadable", LlmErrorKind.InvalidData,
                    $"The defaults file '{path}' cannot be read ({e.Message}). Fix or delete it, or run Set-LlmDefault -Reset.", path, e)
                { RecommendedAction = $"Fix or delete '{path}', or run Set-LlmDefault -Reset." };
            }
        }
        d.Scope = "User";
        d.Path = path;
        return d;
    }

    public static void SaveUser(LlmDefaults d)
    {
        var path = FilePath;
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        File.WriteAllText(path, JsonSerializer.Serialize(d, Json));
    }

    public static void ResetUser()
    {
        if (File.Exists(FilePath)) File.Delete(FilePath);
    }

    public static LlmDefaults Session => s_session;

    public static void ResetSession() => s_session = new() { Scope = "Session" };

    /// <summary>Session values over saved ones.</summary>
    public static LlmDefaults Effective
    {
        get
        {
            var user = LoadUser();
            var s = s_session;
            return new LlmDefaults
            {
                Model = s.Model ?? user.Model,
                ContextSize = s.ContextSize ?? user.ContextSize,
                Threads = s.Threads ?? user.Threads,
                GpuLayers = s.GpuLayers ?? user.GpuLayers,
                Endpoint = s.Endpoint ?? user.Endpoint,
                Scope = "Effective",
                Path = user.Path,
            };
        }
    }
}
