using System.Management.Automation;
using LlmTools.Hub;

namespace LlmTools.Commands;

/// <summary>Searches the Hugging Face Hub for GGUF models; with -Files lists a repository's GGUF files.</summary>
/// <remarks>
/// <para>Results are objects (Id, Downloads, Likes, Gated, LastModified). With -Files (or piped into
/// Find-LlmModel -Files) each repository's GGUF models are listed with size and quantization; split models are one
/// entry with all their parts.</para>
/// </remarks>
/// <example>
/// <code>Find-LlmModel -Name qwen2.5 -Author Qwen -First 5</code>
/// <para>The five most downloaded GGUF repositories of Qwen matching "qwen2.5".</para>
/// </example>
/// <example>
/// <code>Find-LlmModel -Name Qwen/Qwen2.5-0.5B-Instruct-GGUF -Files | Sort-Object Size</code>
/// <para>The repository's GGUF files, smallest first; pass one's Reference to Install-LlmModel.</para>
/// </example>
[Cmdlet(VerbsCommon.Find, "LlmModel", DefaultParameterSetName = SearchSet)]
[OutputType(typeof(HubModel), ParameterSetName = [SearchSet])]
[OutputType(typeof(HubModelFile), ParameterSetName = [FilesSet])]
public sealed class FindLlmModelCommand : LlmCmdlet
{
    private const string SearchSet = "Search";
    private const string FilesSet = "Files";

    /// <summary>Text to search for in model names; with -Files, the repository (org/name).</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("Id", "Repository")]
    public string? Name { get; set; }

    /// <summary>Only models of this user or organization.</summary>
    [Parameter(ParameterSetName = SearchSet)]
    public string? Author { get; set; }

    /// <summary>Order of the results, most first.</summary>
    [Parameter(ParameterSetName = SearchSet)]
    [ValidateSet("downloads", "likes", "modified")]
    public string Sort { get; set; } = "downloads";

    /// <summary>How many results at most (1 to 500).</summary>
    [Parameter(ParameterSetName = SearchSet)]
    [ValidateRange(1, 500)]
    public int First { get; set; } = 20;

    /// <summary>List the GGUF files of the repository named by -Name.</summary>
    [Parameter(Mandatory = true, ParameterSetName = FilesSet)]
    public SwitchParameter Files { get; set; }

    /// <summary>Branch, tag or commit to list files at (default main).</summary>
    [Parameter(ParameterSetName = FilesSet)]
    public string Revision { get; set; } = "main";

    protected override void ProcessRecord()
    {
        try
        {
            var settings = HubSettings.FromEnvironment();
            var (token, _) = HubSession.Resolve(settings);
            if (Files)
            {
                if (string.IsNullOrEmpty(Name) || !HubReference.TryParse(Name, out var reference))
                    throw new LlmException("HubRepositoryExpected", LlmErrorKind.InvalidArgument,
                        $"-Files needs a repository as org/name (got '{Name}').", Name);
                var models = RunEngine((_, cancel) =>
                {
                    using var client = new HubClient(settings, token);
                    var info = client.GetRepoInfo(reference!.RepoId, reference.Revision ?? Revision, cancel);
                    return HubModels.GgufModels(reference.RepoId, info.Files);
                });
                WriteObject(models, enumerateCollection: true);
                return;
            }
            var sort = Sort == "modified" ? "lastModified" : Sort;
            var results = RunEngine((_, cancel) =>
            {
                using var client = new HubClient(settings, token);
                return client.Search(Name, Author, sort, First, cancel);
            });
            WriteObject(results, enumerateCollection: true);
        }
        catch (LlmException e)
        {
            WriteLlmError(e);
        }
    }
}
