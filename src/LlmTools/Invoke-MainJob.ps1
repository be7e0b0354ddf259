#requires -Version 7.6
<#
.SYNOPSIS
    The main job: asks a small real chat model a question by its Hugging Face name, installing it on first use.
.DESCRIPTION
    Default model: Qwen/Qwen2.5-0.5B-Instruct-GGUF (Q4_K_M, about 400 MB, Apache-2.0), downloaded into the Hugging Face
    cache (shared with Python's huggingface_hub) the first time, then loaded from there. -Model also takes a local
    .gguf path, any other Hub reference, or tinystories (the model shipped with the module).
    When the Hub cannot be reached and no -Model was given, the job says so in one line and runs the model shipped with
    the module instead (tinystories: TinyStories 260K, a story model, so it continues -StoryPrompt), and exits 0.
    With an explicit -Model, a Hub failure is an error: the job says so in one line and exits 1.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Model,
    [string[]] $Prompt = @('What is the capital of France? Answer in one sentence.'),
    [int] $MaxTokens = 64,
    # What the story model continues when it runs (it is no chat model: -Prompt's questions mean nothing to it).
    [string] $StoryPrompt = 'Once upon a time'
)
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path (Resolve-Path $ModulePath) 'LlmTools.psd1')
$defaultModel = 'Qwen/Qwen2.5-0.5B-Instruct-GGUF'
$embedded = 'tinystories'
# The Hub's failures to answer (or a Hub the user took offline); anything else (a bad file, a wrong name) is the user's to see.
# HubNotCached: HF_HUB_OFFLINE is set and the model was never downloaded.
$unreachable = 'HubUnreachable', 'HubTimeout', 'HubOffline', 'HubNotCached'

function Invoke-Story {
    Write-Host $StoryPrompt -NoNewline
    # One thread: the model is so small that more only wait on each other (and on a busy machine, much longer).
    $result = Invoke-LlmCompletion $StoryPrompt -Model $embedded -MaxTokens $MaxTokens -Temperature 0 -Threads 1 -Stream
    $result | Format-Table StopReason, PromptTokens, CompletionTokens, TokensPerSecond, LoadDuration | Out-Host
}

try {
    if ($Model -and $Model -eq $embedded) {
        Invoke-Story
        exit 0
    }
    $replies = $Prompt | Invoke-LlmChat -Model $(if ($Model) { $Model } else { $defaultModel }) -MaxTokens $MaxTokens -Temperature 0 -Stream
    $replies | Format-Table StopReason, PromptTokens, CompletionTokens, TokensPerSecond, LoadDuration | Out-Host
} catch {
    $id = ($_.FullyQualifiedErrorId -split ',')[0]
    if (-not $Model -and $id -in $unreachable) {
        # One line: the Hub's failure (its first sentence; the advice after it is for a model from the Hub) and what runs.
        $message = $_.Exception.Message -replace '\s+', ' '
        $reason = if ($message -cmatch '^(.+?)\.\s+[A-Z]') { $Matches[1] } else { $message.TrimEnd('.') }
        [Console]::Error.WriteLine("LlmTools: $reason; running the model shipped with LlmTools instead (-Model $embedded, TinyStories 260K).")
        try {
            Invoke-Story
            exit 0
        } catch {
            [Console]::Error.WriteLine("LlmTools: $($_.Exception.Message)")
            exit 1
        }
    }
    [Console]::Error.WriteLine("LlmTools: $($_.Exception.Message)")
    exit 1
}
