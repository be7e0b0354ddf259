#requires -Version 7.6
<#
.SYNOPSIS
    Builds, tests and benchmarks LlmTools.
.DESCRIPTION
    Build: out/LlmTools/ is the importable module (manifest, LlmTools.dll, engine/ with LLamaSharp and the native
           llama.cpp libraries of this platform, format and type files).
    Test:  builds and packages, runs the C# unit tests and the Pester suite (against the built module, in a child pwsh), prints
           one line 'N passed, M failed, K skipped' and exits non-zero on any failure.
    Bench: builds, then measures completion speed side by side with LLamaSharp called directly.
    Run:   builds, then runs the main job (src/LlmTools/Invoke-MainJob.ps1).
    Package: builds, then writes out/LlmTools.<version>.nupkg, which PSResourceGet installs from a folder repository
           (Register-PSResourceRepository -Uri <folder>; Install-PSResource LlmTools). It holds this platform's native
           libraries only.
    Fuzz:  mutates GGUF files (-Count, -Seed) and runs every mutant the validator accepts in real llama.cpp, in a
           child process; prints mutants run, accepted, refused, crashes, hangs, raw exceptions; exit 1 on findings.
.EXAMPLE
    dotnet pwsh ./build.ps1 -Task Test
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Bench', 'Run', 'Package', 'Fuzz', 'Clean')]
    [string] $Task = 'Build',
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',
    # Adds LLamaSharp.Backend.Cuda12 (where the NuGet registry serves it).
    [switch] $Cuda,
    # Extra arguments for tests/Invoke-Benchmark.ps1 (e.g. '-Quick', or '-Sections Scheduler' for issue 8's yardsticks).
    [string[]] $BenchArguments = @(),
    # Run: the model to run, a Hub reference or a .gguf path (default Qwen/Qwen2.5-0.5B-Instruct-GGUF, from the Hub).
    [string] $Model,
    # Run: the message(s) to send to the chat model.
    [string[]] $Prompt = @('What is the capital of France? Answer in one sentence.'),
    # Run: new tokens per prompt.
    [int] $MaxTokens = 64,
    # Fuzz: how many GGUF mutants to try, and the seed that makes the run repeatable.
    [int] $Count = 2000,
    [int] $Seed = 1
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$root = $PSScriptRoot
$out = Join-Path $root 'out'
$moduleDir = Join-Path $out 'LlmTools'
$rid = [System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier
$version = (Import-PowerShellDataFile (Join-Path $root 'LlmTools.psd1')).ModuleVersion
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

function Invoke-Dotnet {
    & dotnet @args
    if ($LASTEXITCODE -ne 0) { throw "dotnet $($args -join ' ') failed with exit code $LASTEXITCODE" }
}

function Invoke-Build {
    if (Test-Path $moduleDir) { Remove-Item $moduleDir -Recurse -Force }
    $common = @('-c', $Configuration, '-r', $rid, '--self-contained', 'false', "-p:Version=$version", '-nologo', '-v', 'q')
    if ($Cuda) { $common += '-p:LlmToolsCuda=true' }
    # The engine and its dependencies go to engine/, loaded in their own AssemblyLoadContext.
    Invoke-Dotnet publish (Join-Path $root 'src/LlmTools.Engine') @common -o (Join-Path $moduleDir 'engine')
    $staging = Join-Path $out 'staging'
    Invoke-Dotnet publish (Join-Path $root 'src/LlmTools') @common -o $staging
    Copy-Item (Join-Path $staging 'LlmTools.dll'), (Join-Path $staging 'LlmTools.pdb') $moduleDir
    # The contracts live once, beside the module, in PowerShell's default context.
    Move-Item (Join-Path $moduleDir 'engine/LlmTools.Contracts.dll'), (Join-Path $moduleDir 'engine/LlmTools.Contracts.pdb') $moduleDir -Force
    Copy-Item (Join-Path $root 'src/LlmTools/LlmTools.format.ps1xml'), (Join-Path $root 'src/LlmTools/LlmTools.types.ps1xml') $moduleDir
    Copy-Item (Join-Path $root 'LlmTools.psd1') $moduleDir
    # The embedded default model (-Model tinystories) with its licence and provenance.
    Copy-Item (Join-Path $root 'src/LlmTools/models') $moduleDir -Recurse
    # Help: MAML written from the cmdlets' doc comments (in a child pwsh: it imports the module just built).
    & dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $root 'src/LlmTools/New-MamlHelp.ps1') `
        -ModuleDir $moduleDir -DocumentationFile (Join-Path $staging 'LlmTools.xml')
    if ($LASTEXITCODE -ne 0) { throw 'Writing the help failed.' }
    Copy-Item (Join-Path $root 'src/LlmTools/en-US/about_LlmTools.help.txt') (Join-Path $moduleDir 'en-US')
    Remove-Item $staging -Recurse -Force
    # Only this platform's native libraries are kept (LLamaSharp ships seven platforms' worth).
    Get-ChildItem (Join-Path $moduleDir 'engine/runtimes') -Directory -ErrorAction SilentlyContinue |
        Where-Object Name -ne $rid | Remove-Item -Recurse -Force
    $size = (Get-ChildItem $moduleDir -Recurse -File | Measure-Object Length -Sum).Sum
    Write-Host ("Built LlmTools {0} for {1} at {2} ({3:N1} MB)" -f $version, $rid, $moduleDir, ($size / 1MB))
}

function Invoke-Test {
    # The package too: the suite installs it with PSResourceGet (tests/pester/Package.Tests.ps1).
    Invoke-Package
    $results = Join-Path $out 'test-results'
    if (Test-Path $results) { Remove-Item $results -Recurse -Force }
    New-Item -ItemType Directory $results | Out-Null

    # C# unit tests (engine): counted from their TRX report.
    $trx = Join-Path $results 'engine.trx'
    & dotnet test (Join-Path $root 'tests/LlmTools.Engine.Tests') -c $Configuration -nologo -v q `
        --logger "trx;LogFileName=$trx" --logger 'console;verbosity=normal'
    $unitExit = $LASTEXITCODE
    $passed = 0; $failed = 0; $skipped = 0
    if (Test-Path $trx) {
        $report = ([xml](Get-Content $trx -Raw)).TestRun
        $counters = $report.ResultSummary.Counters
        $passed += [int]$counters.passed
        $failed += [int]$counters.failed + [int]$counters.error + [int]$counters.timeout + [int]$counters.aborted
        # A skipped test is a result 'NotExecuted'; the summary's notExecuted counter stays 0 for xunit's skips.
        $skipped += @($report.Results.UnitTestResult | Where-Object outcome -eq 'NotExecuted').Count
    } else {
        $failed += 1
        Write-Host 'The C# unit tests produced no report.'
    }
    if ($unitExit -ne 0 -and $failed -eq 0) { $failed += 1; Write-Host "dotnet test exited with $unitExit." }

    # Pester, in a child pwsh, against the built module.
    Invoke-Dotnet build (Join-Path $root 'tests/LlmTools.TestModels') -c $Configuration -nologo -v q
    $summary = Join-Path $results 'pester.json'
    & dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $root 'tests/Invoke-PesterSuite.ps1') `
        -ModulePath $moduleDir -Configuration $Configuration -SummaryPath $summary
    $pesterExit = $LASTEXITCODE
    if (Test-Path $summary) {
        $p = Get-Content $summary -Raw | ConvertFrom-Json
        $passed += $p.Passed; $failed += $p.Failed; $skipped += $p.Skipped
    } else {
        $failed += 1
        Write-Host 'The Pester suite produced no summary.'
    }
    if ($pesterExit -ne 0 -and $failed -eq 0) { $failed += 1; Write-Host "The Pester run exited with $pesterExit." }

    Write-Host ''
    Write-Host "$passed passed, $failed failed, $skipped skipped"
    if ($failed -gt 0) { exit 1 }
}

function Invoke-Bench {
    Invoke-Build
    Invoke-Dotnet build (Join-Path $root 'tests/LlmTools.Benchmarks') -c $Configuration -nologo -v q
    # pwsh -File binds each argument as given: '-Sections Scheduler' in one string must become two.
    $benchArgs = @($BenchArguments | ForEach-Object { $_ -split '\s+' } | Where-Object { $_ })
    & dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $root 'tests/Invoke-Benchmark.ps1') `
        -ModulePath $moduleDir -OutDir (Join-Path $out 'bench') -Configuration $Configuration @benchArgs
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}

function Invoke-Run {
    Invoke-Build
    $arguments = @('-ModulePath', $moduleDir, '-MaxTokens', $MaxTokens, '-Prompt') + $Prompt
    if ($Model) { $arguments += @('-Model', $Model) }
    & dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $root 'src/LlmTools/Invoke-MainJob.ps1') @arguments
    exit $LASTEXITCODE
}

function Invoke-Package {
    Invoke-Build
    $package = Join-Path $out "LlmTools.$version.nupkg"
    if (Test-Path $package) { Remove-Item $package -Force }
    # PowerShell's own packer (PSResourceGet, shipped with pwsh 7.4+): it writes the nuspec from the manifest.
    Import-Module Microsoft.PowerShell.PSResourceGet
    Compress-PSResource -Path $moduleDir -DestinationPath $out
    if (-not (Test-Path $package)) { throw "Compress-PSResource wrote no $package." }
    Write-Host ("Packaged {0} ({1:N1} MB)" -f $package, ((Get-Item $package).Length / 1MB))
}

function Invoke-Fuzz {
    # Mutants of the tests' tiny models (and ../shared/models/stories260K.gguf when present): the validator either
    # refuses each one, or real llama.cpp loads it and decodes in a child process. Exit 1 on any crash, hang or
    # exception that is not the module's own.
    $project = Join-Path $root 'tests/LlmTools.Fuzz'
    Invoke-Dotnet build $project -c $Configuration -nologo -v q
    $dll = Join-Path $project "bin/$Configuration/net10.0/$rid/LlmTools.Fuzz.dll"
    $work = Join-Path $out 'fuzz'
    if (Test-Path $work) { Remove-Item $work -Recurse -Force }
    & dotnet $dll -count $Count -seed $Seed -out $work
    if ($LASTEXITCODE -ne 0) { Write-Host "Findings are kept in $work/findings."; exit 1 }
}

switch ($Task) {
    'Build' { Invoke-Build }
    'Test' { Invoke-Test }
    'Bench' { Invoke-Bench }
    'Run' { Invoke-Run }
    'Package' { Invoke-Package }
    'Fuzz' { Invoke-Fuzz }
    'Clean' { if (Test-Path $out) { Remove-Item $out -Recurse -Force } }
}
