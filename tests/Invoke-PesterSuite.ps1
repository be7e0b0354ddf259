#requires -Version 7.6
<#
.SYNOPSIS
    Runs the Pester suite against a built module and writes its counts as JSON (build.ps1 -Task Test calls this).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $SummaryPath,
    [string] $Configuration = 'Release',
    [string] $PesterVersion = '5.7.1'
)
$ErrorActionPreference = 'Stop'
$nuget = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path ([Environment]::GetFolderPath('UserProfile')) '.nuget/packages' }
$pester = Join-Path $nuget "pester/$PesterVersion/tools/Pester.psd1"
if (-not (Test-Path $pester)) { throw "Pester $PesterVersion is not in the NuGet cache ($pester): run 'dotnet restore tests/LlmTools.Engine.Tests'." }
Import-Module $pester -Force

# What the tests need to find: the built module and the test-model writer.
$env:LLMTOOLS_TEST_MODULE = (Resolve-Path $ModulePath).Path
$env:LLMTOOLS_TEST_MODELS_DLL = Join-Path $PSScriptRoot "LlmTools.TestModels/bin/$Configuration/net10.0/linux-x64/LlmTools.TestModels.dll"
$env:LLMTOOLS_TEST_NUGET = $nuget

$config = New-PesterConfiguration
$config.Run.Path = Join-Path $PSScriptRoot 'pester'
$config.Run.PassThru = $true
$config.Output.Verbosity = 'Detailed'
$result = Invoke-Pester -Configuration $config
[pscustomobject]@{
    Passed  = $result.PassedCount
    Failed  = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
    Skipped = $result.SkippedCount + $result.NotRunCount
} | ConvertTo-Json | Set-Content $SummaryPath
if ($result.Result -ne 'Passed') { exit 1 }
