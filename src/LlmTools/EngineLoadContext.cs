using System.Management.Automation;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.Loader;

namespace LlmTools;

/// <summary>
/// Loads LlmTools.Engine, LLamaSharp and their dependencies from the module's engine/ folder into a context of their
/// own, so another module that already loaded (say) an older Microsoft.Extensions.Logging.Abstractions cannot clash.
/// </summary>
internal sealed class EngineLoadContext : AssemblyLoadContext
{
    private const string EngineAssembly = "LlmTools.Engine";
    private const string ContractsAssembly = "LlmTools.Contracts";
    private static readonly string ModuleDirectory = Path.GetDirectoryName(typeof(EngineLoadContext).Assembly.Location)!;
    internal static readonly string EngineDirectory = Path.Combine(ModuleDirectory, "engine");
    private static EngineLoadContext? _instance;

    private EngineLoadContext() : base("LlmTools.Engine", isCollectible: false) { }

    private static EngineLoadContext Instance => _instance ??= new EngineLoadContext();

    protected override Assembly? Load(AssemblyName name)
    {
        // The shared contracts must be one copy, PowerShell's: defer to the default context.
        if (name.Name == ContractsAssembly) return null;
        var path = Path.Combine(EngineDirectory, name.Name + ".dll");
        if (File.Exists(path)) return LoadFromAssemblyPath(path);
        // Kestrel (Start-LlmServer) and the Microsoft.Extensions.* it shares with LLamaSharp come from the ASP.NET Core
        // shared framework beside the runtime: pwsh itself runs on Microsoft.NETCore.App alone, so its default
        // context cannot find them.
        if (AspNetCoreDirectory is { } shared && File.Exists(path = Path.Combine(shared, name.Name + ".dll")))
            return LoadFromAssemblyPath(path);
        return null;
    }

    private static readonly Lazy<string?> AspNetCore = new(FindAspNetCore);

    /// <summary>The Microsoft.AspNetCore.App folder of the running runtime's version (else the newest of its major), or null.</summary>
    internal static string? AspNetCoreDirectory => AspNetCore.Value;

    private static string? FindAspNetCore()
    {
        // .../shared/Microsoft.NETCore.App/10.0.12/System.Private.CoreLib.dll -> .../shared/Microsoft.AspNetCore.App/
        var runtimeDir = Path.GetDirectoryName(typeof(object).Assembly.Location);
        var shared = runtimeDir is null ? null : Path.GetDirectoryName(Path.GetDirectoryName(runtimeDir));
        if (shared is null) return null;
        var root = Path.Combine(shared, "Microsoft.AspNetCore.App");
        var exact = Path.Combine(root, Path.GetFileName(runtimeDir)!);
        if (Directory.Exists(exact)) return exact;
        if (!Directory.Exists(root)) return null;
        int major = Environment.Version.Major;
        return Directory.GetDirectories(root)
            .Select(d => (Dir: d, Version: Version.TryParse(Path.GetFileName(d).Split('-')[0], out var v) ? v : null))
            .Where(x => x.Version?.Major == major)
            .OrderByDescending(x => x.Version)
            .Select(x => x.Dir)
            .FirstOrDefault();
    }

    /// <summary>Runs when LlmTools.dll is first touched, before any cmdlet type (and its engine types) is reflected.</summary>
#pragma warning disable CA2255 // a module initializer is exactly what is needed: it runs before PowerShell reflects the cmdlets
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        // In the build output of the tests (no engine/ folder) the engine sits beside this assembly: nothing to do.
        if (!Directory.Exists(EngineDirectory)) return;
        Default.Resolving += (_, name) =>
            name.Name == EngineAssembly ? Instance.LoadFromAssemblyName(name) : null;
    }
}

/// <summary>Frees every loaded model when the module is removed.</summary>
public sealed class ModuleLifetime : IModuleAssemblyInitializer, IModuleAssemblyCleanup
{
    // Every runspace that imports the module shares the process's models: removing the module unloads them only when
    // no other open runspace has it (a runspace that was closed without removing it no longer counts).
    private static readonly List<WeakReference<System.Management.Automation.Runspaces.Runspace>> Importers = [];

    public void OnImport()
    {
        if (System.Management.Automation.Runspaces.Runspace.DefaultRunspace is not { } current) return;
        lock (Importers)
        {
            Prune(null);
            if (!Importers.Any(w => w.TryGetTarget(out var r) && r == current)) Importers.Add(new(current));
        }
    }

    public void OnRemove(PSModuleInfo module)
    {
        bool last;
        lock (Importers)
        {
            Prune(System.Management.Automation.Runspaces.Runspace.DefaultRunspace);
            last = Importers.Count == 0;
        }
        if (!last) return;
        LlmTools.Server.LlmServer.StopAll();
        ModelCache.Instance.UnloadAll();
    }

    private static void Prune(System.Management.Automation.Runspaces.Runspace? removing) =>
        Importers.RemoveAll(w => !w.TryGetTarget(out var r) || r == removing ||
            r.RunspaceStateInfo.State is System.Management.Automation.Runspaces.RunspaceState.Closed
                or System.Management.Automation.Runspaces.RunspaceState.Closing or System.Management.Automation.Runspaces.RunspaceState.Broken);
}
