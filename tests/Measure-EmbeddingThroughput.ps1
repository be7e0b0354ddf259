#requires -Version 7.6
<#
.SYNOPSIS
    Texts per second of Get-LlmEmbedding for 256 short texts, one per decode (-BatchSize 1) against decoded together
    (issue 10, section 2). Run by hand on a built module: dotnet pwsh tests/Measure-EmbeddingThroughput.ps1
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../out/LlmTools'),
    [string] $Model = 'tinystories',
    [int[]] $BatchSizes = @(1, 8, 32, 64),
    [int] $Count = 256,
    [int] $Threads = 2,
    [int] $Repeat = 3
)
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $ModulePath 'LlmTools.psd1') -Force
$texts = 1..$Count | ForEach-Object { "Story $_ : the little dog ran around the park and found a red ball." }
Get-LlmEmbedding 'warm up' -Model $Model -Threads $Threads | Out-Null # load the model and make the context
foreach ($b in $BatchSizes) {
    $best = [double]::MaxValue
    for ($r = 0; $r -lt $Repeat; $r++) {
        $watch = [Diagnostics.Stopwatch]::StartNew()
        $n = @(Get-LlmEmbedding $texts -Model $Model -BatchSize $b -Threads $Threads).Count
        $best = [Math]::Min($best, $watch.Elapsed.TotalSeconds)
        if ($n -ne $Count) { throw "$n results for $Count texts" }
    }
    [pscustomobject]@{ BatchSize = $b; Texts = $Count; Seconds = [Math]::Round($best, 3); TextsPerSecond = [Math]::Round($Count / $best, 1) }
}
