@{
    # The one source of the module's version: build.ps1 passes it to the assemblies.
    ModuleVersion        = '0.1.0'
    RootModule           = 'LlmTools.dll'
    RequiredAssemblies   = @('LlmTools.Contracts.dll')
    GUID                 = '5b7f3c1e-8a2d-4e6f-9c41-2f0d8e7a6b13'
    Author               = 'LlmTools developers'
    CompanyName          = 'LlmTools'
    Copyright            = '(c) LlmTools developers. MIT licence.'
    Description          = 'Run GGUF language models locally through llama.cpp (LLamaSharp 0.30.0) from PowerShell: completions and chat with the model''s own template, batched pipelines, token counts, and a session model cache that keeps models loaded across pipeline invocations. Finds GGUF models on the Hugging Face Hub and downloads them into the cache Python shares. Ships a tiny real model (TinyStories 260K, MIT) so -Model tinystories works with no network. Linux x64 (CPU; CUDA 12 when built with it). Get-Help about_LlmTools.'
    PowerShellVersion    = '7.6'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('LlmTools.format.ps1xml')
    TypesToProcess       = @('LlmTools.types.ps1xml')
    CmdletsToExport      = @(
        'Invoke-LlmCompletion'
        'Set-LlmDefault'
        'Get-LlmDefault'
        'Get-LlmModel'
        'Import-LlmModel'
        'Remove-LlmModel'
        'Measure-LlmToken'
        'Get-LlmBackend'
        'Connect-HuggingFace'
        'Disconnect-HuggingFace'
        'Get-HuggingFaceUser'
        'Find-LlmModel'
        'Install-LlmModel'
        'Uninstall-LlmModel'
        'ConvertTo-LlmPrompt'
        'New-LlmChatSession'
        'Invoke-LlmChat'
        'Start-LlmChat'
        'Start-LlmServer'
        'Get-LlmServer'
        'Stop-LlmServer'
        'Get-LlmEmbedding'
        'Measure-LlmSimilarity'
        'Find-LlmSimilar'
        'Connect-LlmEndpoint'
        'Disconnect-LlmEndpoint'
    )
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    # Help: MAML (en-US/LlmTools.dll-Help.xml, written from the doc comments) and the about_LlmTools topic, both in
    # the module; there is no online help to update from, so no HelpInfoURI.
    PrivateData          = @{
        PSData = @{
            Tags         = @('LLM', 'llama.cpp', 'llama', 'GGUF', 'AI', 'HuggingFace', 'LocalLLM', 'Offline', 'TinyStories', 'Linux', 'PSEdition_Core')
            LicenseUri   = 'https://opensource.org/licenses/MIT'
            # ProjectUri: the repository's public address, once it has one (none is published yet).
            ReleaseNotes = @'
0.1.0
- Run GGUF models through llama.cpp (LLamaSharp 0.30.0): Invoke-LlmCompletion (batched over piped prompts, shared
  -Prefix), Invoke-LlmChat / New-LlmChatSession / Start-LlmChat with the model's own Jinja chat template,
  Measure-LlmToken, ConvertTo-LlmPrompt.
- A session model cache: Import-LlmModel, Get-LlmModel, Remove-LlmModel; Get-LlmBackend says which llama.cpp runs.
- The Hugging Face Hub: Connect-/Disconnect-HuggingFace, Get-HuggingFaceUser, Find-LlmModel, Install-/Uninstall-LlmModel
  into the cache Python's huggingface_hub shares (resumable, sha256-verified).
- Ships TinyStories 260K (karpathy/tinyllamas, MIT) as -Model tinystories: works with no network.
'@
        }
    }
}
