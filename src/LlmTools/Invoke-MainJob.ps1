#requires -Version 7.6
<#
.SYNOPSIS
    The main job: asks a small real chat model a question by its Hugging Face name, installing it on first use.
.DESCRIPTION
    Default model: Qwen/Qwen2.5-0.5B-Instruct-GGUF (Q4_K_M, about 400 MB, Apache-2.0), downloaded into the Hugging Face
    cache (shared with Python's huggingface_hub) the first time, then loaded from there. -Model also takes a local
    .gguf path or any other Hub reference. When the Hub cannot be reached the job says so in one line and exits 1.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Model = 'Qwen/Qwen2.5-0.5B-Instruct-GGUF',
    [string[]] $Prompt = @('What is the capital of France? Answer in one sentence.'),
    [int] $MaxTokens = 64
)
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $ModulePath 'LlmTools.psd1')
try {
    $replies = $Prompt | Invoke-LlmChat -Model $Model -MaxTokens $MaxTokens -Temperature 0 -Stream
    $replies | Format-Table StopReason, PromptTokens, CompletionTokens, TokensPerSecond, LoadDuration | Out-Host
} catch {
    [Console]::Error.WriteLine("LlmTools: $($_.Exception.Message)")
    exit 1
}
