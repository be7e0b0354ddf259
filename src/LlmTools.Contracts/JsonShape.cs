namespace LlmTools;

/// <summary>
/// How the module's objects look in ConvertTo-Json without -EnumsAsStrings: enums as their names, durations as
/// numbers of milliseconds (PromptDurationMs: 12.5), while PowerShell code keeps the enum and TimeSpan values
/// ($r.StopReason -eq 'EndOfText', $r.PromptDuration.TotalSeconds).
/// </summary>
/// <remarks>
/// ConvertTo-Json (PowerShell 7.6, JsonObject.ProcessValue) reflects every public property of a .NET object except
/// those marked with Newtonsoft's [JsonIgnore], then adds the object's PowerShell properties whose names are not
/// there yet, adapted .NET properties included, except hidden ones; the values end in Newtonsoft's serializer. So:
/// enums carry Newtonsoft's [JsonConverter(StringEnumConverter)] (it applies wherever the value is, nested too), and
/// each TimeSpan property is [JsonIgnore] and [Hidden] (left out of Get-Member and Format-List * too, but read as
/// usual) beside a public XxxMs double that is serialised. A types.ps1xml member cannot do this: a script property of
/// the same name changes what PowerShell shows but not the JSON, and a TimeSpan value always becomes 15 fields.
/// </remarks>
public static class JsonShape
{
    /// <summary>A duration as milliseconds, the unit JSON consumers expect (rounded to the microsecond).</summary>
    public static double Milliseconds(TimeSpan duration) => Math.Round(duration.TotalMilliseconds, 3);
}
