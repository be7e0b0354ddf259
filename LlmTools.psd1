@{
    # The one source of the module's version: build.ps1 passes it to the assemblies.
    ModuleVersion        = '0.1.0'
    RootModule           = 'LlmTools.dll'
    RequiredAssemblies   = @('LlmTools.Contracts.dll')
    GUID                 = '5b7f3c1e-8a2d-4e6f-9c41-2f0d8e7a6b13'
    Author               = 'LlmTools developers'
    CompanyName          = 'LlmTools'
    Copyright            = '(c) LlmTools developers. MIT licence.'
    Description          = 'Find GGUF models on the Hugging Face Hub, download them into the cache Python shares, and run them locally through llama.cpp (LLamaSharp): completions, batched pipelines, token counts, and a session model cache that keeps models loaded across pipeline invocations.'
    PowerShellVersion    = '7.6'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('LlmTools.format.ps1xml')
    TypesToProcess       = @('LlmTools.types.ps1xml')
    CmdletsToExport      = @(
        'Invoke-LlmCompletion'
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
    )
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('LLM', 'llama.cpp', 'GGUF', 'AI', 'HuggingFace', 'Linux')
            LicenseUri = 'https://opensource.org/licenses/MIT'
        }
    }
}
