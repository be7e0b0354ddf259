#requires -Version 7.6
<#
.SYNOPSIS
    Speed of Invoke-LlmCompletion side by side with LLamaSharp called directly, in one process and one run.
.DESCRIPTION
    (a) Invoke-LlmCompletion, (b) LLamaSharp's StatelessExecutor, (c) a native decode loop (the ceiling), on the same
    model file and thread count, rounds interleaved so that the machine's noise hits all three alike. Also the
    per-call overhead of the cmdlet over 100 short prompts on a cached model. Prints a table and writes
    bench.json and bench.svg. Compare the ratios within one run, never absolute numbers across runs.
    Scheduler (issue 8's yardsticks: separate calls, concurrent runspaces, 16 runspaces x 4 prompts, next to
    llama.cpp's llama-bench and llama-batched-bench when $env:LLAMA_CPP_TOOLS names a folder with them) runs first,
    in a process of its own: tests/Invoke-SchedulerBenchmark.ps1.
.EXAMPLE
    ./build.ps1 -Task Bench -BenchArguments '-Sections', 'Scheduler'
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $OutDir,
    [string] $Configuration = 'Release',
    [int] $Threads = [Environment]::ProcessorCount,
    [int] $PromptWords = 150,
    [int] $GenerateTokens = 48,
    [int] $Rounds = 7,
    [int] $ShortPrompts = 100,
    [int[]] $BatchSizes = @(1, 2, 4, 8, 16),
    [int] $BatchPrompts = 64,
    [int] $BatchTokens = 16,
    [int] $PrefixWords = 190,
    [int] $PrefixPrompts = 32,
    [int] $StabilityCompletions = 1000,
    # Server: concurrent clients against Start-LlmServer (vs the same requests from one client), new tokens each.
    [int] $ServerClients = 8,
    [int] $ServerTokens = 32,
    # Structured: rounds of a 10-field JSON schema vs unconstrained, new tokens at most per call.
    [int] $StructuredRounds = 5,
    [int] $StructuredTokens = 160,
    # Which parts to run (all by default): Scheduler, Speed, Overhead, Batch, Prefix, Server, Structured, Stability.
    [string[]] $Sections = @('Scheduler', 'Speed', 'Overhead', 'Batch', 'Prefix', 'Server', 'Structured', 'Stability'),
    # Scheduler: rounds of separate calls interleaved with llama-bench (at least 5; ten calls are made in any case).
    [int] $SchedulerRounds = 10,
    # A smaller model and fewer rounds, to check the benchmark itself quickly.
    [switch] $Quick
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
# pwsh -File passes 'Scheduler,Speed' as one string.
$Sections = @($Sections -split ',' | ForEach-Object Trim | Where-Object { $_ })
$unknown = $Sections | Where-Object { $_ -notin 'Scheduler', 'Speed', 'Overhead', 'Batch', 'Prefix', 'Server', 'Structured', 'Stability' }
if ($unknown) { throw "Unknown section(s): $($unknown -join ', '). Use Scheduler, Speed, Overhead, Batch, Prefix, Server, Structured, Stability." }
$rid = [System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier
New-Item -ItemType Directory -Force $OutDir | Out-Null
Import-Module (Join-Path $ModulePath 'LlmTools.psd1') -Force
$backend = Get-LlmBackend   # loads the engine and llama.cpp

# The direct paths run inside the engine's AssemblyLoadContext: the same LLamaSharp and llama.cpp as the cmdlet.
Add-Type -Path (Join-Path $PSScriptRoot "LlmTools.TestModels/bin/$Configuration/net10.0/$rid/LlmTools.TestModels.dll")
$alc = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'LlmTools.Engine'
$benchAsm = $alc.LoadFromAssemblyPath((Join-Path $PSScriptRoot "LlmTools.Benchmarks/bin/$Configuration/net10.0/$rid/LlmTools.Benchmarks.dll"))
$direct = $benchAsm.GetType('LlmTools.Benchmarks.Direct')

$vocab = Join-Path $PSScriptRoot '../../shared/models/vocab/ggml-vocab-llama-spm.gguf'
if ($Quick) {
    $model = Join-Path $OutDir 'bench-quick.gguf'
    if (-not (Test-Path $model)) {
        $o = [LlmTools.TestModels.TinyModelOptions]::new()
        $o.Embedding = 256; $o.Layers = 4; $o.Heads = 4; $o.KvHeads = 2; $o.FeedForward = 768; $o.Q8 = $true; $o.ContextLength = 2048
        [LlmTools.TestModels.TinyModel]::Write($model, $o) | Out-Null
    }
    $Rounds = 2; $ShortPrompts = 20; $BatchPrompts = 16; $PrefixPrompts = 8; $StabilityCompletions = 200; $ServerTokens = 8
    $StructuredRounds = 2; $StructuredTokens = 48
} else {
    Write-Host 'Preparing the benchmark model (about 0.5B parameters, Q8_0; written once, then cached)...'
    $model = $direct::EnsureModel($OutDir, $vocab)
}
$info = Get-LlmModel -Path $model
Write-Host ("Model: {0} ({1:N0} parameters, {2}, {3:N0} MB), {4} threads, backend {5}" -f
    (Split-Path $model -Leaf), $info.ParameterCount, $info.FileType, ($info.SizeBytes / 1MB), $Threads, $backend.Variant)

$contextSize = 1024
$scheduler = $null
if ('Scheduler' -in $Sections) {
    # A process of its own: its first completion is that process's first decode, and the threads its runspaces leave
    # behind cannot slow the sections below.
    $schedulerArgs = @('-NoProfile', '-NonInteractive', '-File', (Join-Path $PSScriptRoot 'Invoke-SchedulerBenchmark.ps1'),
        '-ModulePath', $ModulePath, '-OutDir', $OutDir, '-Model', $model, '-Threads', $Threads, '-ContextSize', $contextSize,
        '-Rounds', $SchedulerRounds)
    if ($Quick) { $schedulerArgs += '-Quick' }
    $host_ = [Environment]::ProcessPath
    if ((Split-Path $host_ -LeafBase) -eq 'dotnet') { & $host_ (Join-Path $PSHOME 'pwsh.dll') @schedulerArgs } else { & $host_ @schedulerArgs }
    if ($LASTEXITCODE -ne 0) { throw "The scheduler section failed (exit $LASTEXITCODE)." }
    $scheduler = Get-Content (Join-Path $OutDir 'scheduler.json') -Raw | ConvertFrom-Json
    if (-not ($Sections -ne 'Scheduler')) {
        [ordered]@{ Date = (Get-Date).ToString('o'); Model = (Split-Path $model -Leaf); Parameters = $info.ParameterCount
            FileType = $info.FileType; Threads = $Threads; Backend = $backend.Variant; Scheduler = $scheduler } |
            ConvertTo-Json -Depth 8 | Set-Content (Join-Path $OutDir 'bench.json')
        Write-Host "Figures: $(Join-Path $OutDir 'bench.json')"
        return
    }
}
$direct::Load($model, $Threads, $contextSize)
Import-LlmModel -Model $model -Threads $Threads -ContextSize $contextSize | Out-Null

$words = 'the a little girl named lily saw big red ball in park one day she went to play with her friend dog cat ' +
         'and they were happy sun was hot so we ran home mom said good night story time tree bird sky blue green' -split ' '
$random = [Random]::new(2024)
function New-Prompt([int] $count) { (1..$count | ForEach-Object { $words[$random.Next($words.Count)] }) -join ' ' }
function Get-Median([double[]] $values) {
    $s = @($values | Sort-Object)
    if ($s.Count % 2) { $s[[int][math]::Floor($s.Count / 2)] } else { ($s[$s.Count / 2 - 1] + $s[$s.Count / 2]) / 2 }
}

# Warm-up: one of each, not measured.
$warm = New-Prompt 20
Invoke-LlmCompletion $warm -Model $model -Threads $Threads -ContextSize $contextSize -MaxTokens 4 -Temperature 0 -RepeatPenalty 1 | Out-Null
$direct::Executor($warm, 4) | Out-Null
$direct::Native($warm, 4) | Out-Null

$rows = [System.Collections.Generic.List[object]]::new()
$summary = @(); $overhead = $null; $batchRows = @(); $prefixRow = $null; $serverRow = $null; $structuredRows = $null; $stability = $null; $rss = @()
if ('Speed' -in $Sections) {
for ($r = 1; $r -le $Rounds; $r++) {
    # A different prompt per path and round: the cmdlet's prefix reuse must not make its prompt look free.
    $order = @('a', 'b', 'c')
    $order = $order[($r % 3)..2] + $order[0..(($r % 3) - 1)] | Select-Object -First 3
    foreach ($path in $order) {
        $prompt = "$(Get-Random -SetSeed ($r * 10 + [int][char]$path) -Maximum 1000) " + (New-Prompt $PromptWords)
        switch ($path) {
            'a' {
                $res = Invoke-LlmCompletion $prompt -Model $model -Threads $Threads -ContextSize $contextSize -MaxTokens $GenerateTokens -Temperature 0 -RepeatPenalty 1
                $rows.Add([pscustomobject]@{ Round = $r; Path = 'a'; PromptTokens = $res.PromptTokens - $res.CachedPromptTokens
                    PromptTps = $res.PromptTokensPerSecond; GenTokens = $res.CompletionTokens; GenTps = $res.TokensPerSecond })
            }
            default {
                $m = if ($path -eq 'b') { $direct::Executor($prompt, $GenerateTokens) } else { $direct::Native($prompt, $GenerateTokens) }
                $rows.Add([pscustomobject]@{ Round = $r; Path = $path; PromptTokens = $m.PromptTokens
                    PromptTps = $m.PromptTokensPerSecond; GenTokens = $m.GeneratedTokens; GenTps = $m.TokensPerSecond })
            }
        }
    }
}

$names = @{ a = 'Invoke-LlmCompletion'; b = 'LLamaSharp StatelessExecutor'; c = 'native decode loop (ceiling)' }
$summary = foreach ($p in 'a', 'b', 'c') {
    $mine = $rows | Where-Object Path -eq $p
    [pscustomobject]@{
        Path            = "($p) $($names[$p])"
        PromptTokens    = [int](Get-Median $mine.PromptTokens)
        'Prompt tok/s'  = [math]::Round((Get-Median $mine.PromptTps), 1)
        'Gen tok/s'     = [math]::Round((Get-Median $mine.GenTps), 1)
    }
}
$ceilingPrompt = $summary[2].'Prompt tok/s'; $ceilingGen = $summary[2].'Gen tok/s'
foreach ($s in $summary) {
    $s | Add-Member 'Prompt vs (c)' ('{0:P1}' -f ($s.'Prompt tok/s' / $ceilingPrompt))
    $s | Add-Member 'Gen vs (c)' ('{0:P1}' -f ($s.'Gen tok/s' / $ceilingGen))
}
$summary | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
}

# Per-call overhead over short prompts on a cached model: wall time per call, cmdlet vs native loop, interleaved.
if ('Overhead' -in $Sections) {
$short = 1..$ShortPrompts | ForEach-Object { New-Prompt 4 }
$cmdletMs = @(); $nativeMs = @(); $outsideMs = @()
for ($i = 0; $i -lt 3; $i++) {
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $results = $short | Invoke-LlmCompletion -Model $model -Threads $Threads -ContextSize $contextSize -MaxTokens 1 -Temperature 0 -RepeatPenalty 1 -BatchSize 1
    $wall = $sw.Elapsed.TotalMilliseconds
    $cmdletMs += $wall / $short.Count
    # What the call costs beyond the engine's own work (tokenize, decode, sample): PowerShell, binding, the pump, objects.
    $outsideMs += ($wall - ($results | ForEach-Object { $_.TotalDuration.TotalMilliseconds } | Measure-Object -Sum).Sum) / $short.Count
    $nativeMs += $direct::NativeMillisecondsPerCall([string[]]$short)
}
$overhead = [pscustomobject]@{
    Prompts                    = $short.Count
    'Cmdlet ms/call'           = [math]::Round((Get-Median $cmdletMs), 2)
    'Native ms/call'           = [math]::Round((Get-Median $nativeMs), 2)
    'Cmdlet - native ms'       = [math]::Round((Get-Median $cmdletMs) - (Get-Median $nativeMs), 2)
    'Outside the engine ms'    = [math]::Round((Get-Median $outsideMs), 2)
}
$overhead | Format-Table -AutoSize | Out-String | Write-Host
}

if ('Batch' -in $Sections) {
# Throughput of piped prompts at several batch sizes: (a) the cmdlet, (c) the native batched loop, interleaved.
$directBatched = $benchAsm.GetType('LlmTools.Benchmarks.DirectBatched')
$pipedPrompts = 1..$BatchPrompts | ForEach-Object { New-Prompt 8 }
$batchRows = foreach ($n in $BatchSizes) {
    # Twice each, alternating (a) and (c); the faster run of each counts (transient load only ever slows a run down).
    $aBest = 0.0; $cBest = 0.0; $same = $true
    for ($repeat = 0; $repeat -lt 2; $repeat++) {
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $res = $pipedPrompts | Invoke-LlmCompletion -Model $model -Threads $Threads -ContextSize 128 -MaxTokens $BatchTokens -Temperature 0 -RepeatPenalty 1 -BatchSize $n
        $aSeconds = $sw.Elapsed.TotalSeconds
        $aBest = [Math]::Max($aBest, ($res | Measure-Object CompletionTokens -Sum).Sum / $aSeconds)
        $c = $directBatched::Run($model, [string[]]$pipedPrompts, $n, $BatchTokens, $Threads, 128)
        $cBest = [Math]::Max($cBest, $c.Item1 / $c.Item2)
        $same = $same -and ($null -eq (Compare-Object @($res.Text) @($c.Item3) -SyncWindow 0))
    }
    [pscustomobject]@{
        BatchSize         = $n
        '(a) tok/s'       = [math]::Round($aBest, 1)
        '(c) tok/s'       = [math]::Round($cBest, 1)
        '(a) vs (c)'      = '{0:P1}' -f ($aBest / $cBest)
        'same texts'      = $same
    }
}
$base = $batchRows[0].'(a) tok/s'
foreach ($row in $batchRows) { $row | Add-Member '(a) vs batch 1' ('{0:N2}x' -f ($row.'(a) tok/s' / $base)) }
Write-Host "Generated tokens per second (prompt evaluation included) for $BatchPrompts piped prompts, $BatchTokens new tokens each:"
$batchRows | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
}

if ('Prefix' -in $Sections) {
# A shared prefix (instructions or examples in front of every prompt): -Prefix evaluates it once.
$prefixText = (New-Prompt $PrefixWords) + '. '
$prefixCount = (Measure-LlmToken $prefixText -Model $model).Count
$endings = 1..$PrefixPrompts | ForEach-Object { New-Prompt 4 }
$sw = [Diagnostics.Stopwatch]::StartNew()
$without = $endings | ForEach-Object { $prefixText + $_ } | Invoke-LlmCompletion -Model $model -Threads $Threads -ContextSize 512 -MaxTokens 4 -Temperature 0 -RepeatPenalty 1 -BatchSize 8
$withoutSeconds = $sw.Elapsed.TotalSeconds
$sw.Restart()
$with = $endings | Invoke-LlmCompletion -Model $model -Prefix $prefixText -Threads $Threads -ContextSize 512 -MaxTokens 4 -Temperature 0 -RepeatPenalty 1 -BatchSize 8
$withSeconds = $sw.Elapsed.TotalSeconds
$prefixRow = [pscustomobject]@{
    PrefixTokens             = $prefixCount
    Prompts                  = $PrefixPrompts
    'Evaluated, no -Prefix'  = ($without | ForEach-Object { $_.PromptTokens - $_.CachedPromptTokens } | Measure-Object -Sum).Sum
    'Evaluated, -Prefix'     = $prefixCount + ($with | ForEach-Object { $_.PromptTokens - $_.CachedPromptTokens } | Measure-Object -Sum).Sum
    'Seconds, no -Prefix'    = [math]::Round($withoutSeconds, 2)
    'Seconds, -Prefix'       = [math]::Round($withSeconds, 2)
    Speedup                  = '{0:N1}x' -f ($withoutSeconds / $withSeconds)
}
Write-Host "A $prefixCount-token shared prefix in front of $PrefixPrompts prompts (batch 8):"
$prefixRow | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
}

if ('Server' -in $Sections) {
# Issue 11: $ServerClients clients at once against Start-LlmServer (the scheduler batches their requests) vs the same
# requests from one client, one after another; aggregate generated tokens/s, best of two alternating rounds.
$server = Start-LlmServer -Model $model -Alias bench -Port 0 -MaxConcurrency $ServerClients -Threads $Threads -ContextSize $contextSize -WarningAction SilentlyContinue
$http = [System.Net.Http.HttpClient]::new(); $http.Timeout = [timespan]::FromMinutes(30)
try {
    $serverPrompts = 1..$ServerClients | ForEach-Object { New-Prompt 20 }
    function Send-Completion([string] $p) {
        $body = @{ model = 'bench'; prompt = $p; max_tokens = $ServerTokens; temperature = 0 } | ConvertTo-Json
        $http.PostAsync("$($server.Endpoint)/completions", [System.Net.Http.StringContent]::new($body, [Text.Encoding]::UTF8, 'application/json'))
    }
    function Get-Texts($responses) { $responses | ForEach-Object { ($_.Content.ReadAsStringAsync().Result | ConvertFrom-Json) } }
    $null = (Send-Completion 'warm up').Result
    $oneBest = 0.0; $manyBest = 0.0; $same = $true
    for ($repeat = 0; $repeat -lt 2; $repeat++) {
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $one = Get-Texts @(foreach ($p in $serverPrompts) { (Send-Completion $p).Result })
        $oneBest = [Math]::Max($oneBest, ($one.usage.completion_tokens | Measure-Object -Sum).Sum / $sw.Elapsed.TotalSeconds)
        $sw.Restart()
        $tasks = @(foreach ($p in $serverPrompts) { Send-Completion $p })
        [Threading.Tasks.Task]::WaitAll([Threading.Tasks.Task[]]$tasks)
        $many = Get-Texts @($tasks | ForEach-Object Result)
        $manyBest = [Math]::Max($manyBest, ($many.usage.completion_tokens | Measure-Object -Sum).Sum / $sw.Elapsed.TotalSeconds)
        $same = $same -and ($null -eq (Compare-Object @($one.choices.text) @($many.choices.text) -SyncWindow 0))
    }
    $serverRow = [pscustomobject]@{
        Clients                  = $ServerClients
        'One client tok/s'       = [math]::Round($oneBest, 1)
        "$ServerClients clients tok/s" = [math]::Round($manyBest, 1)
        Ratio                    = '{0:N2}x' -f ($manyBest / $oneBest)
        'same texts'             = $same
    }
    Write-Host "Start-LlmServer, $ServerClients greedy /v1/completions of $ServerTokens tokens: one client (one after another) vs $ServerClients at once:"
    $serverRow | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
}
finally {
    $http.Dispose()
    $server | Stop-LlmServer
}
}

if ('Structured' -in $Sections) {
# Issue 10: generation speed held to a 10-field JSON schema vs unconstrained, same prompt and length limit, on the
# benchmark model and on the shipped TinyStories model (neither was trained on JSON: the grammar rejects the chain's
# pick often, the costly case). Rounds alternate which goes first; the figure is the median of per-round ratios.
$structuredSchema = [ordered]@{
    type = 'object'
    properties = [ordered]@{
        name = @{ type = 'string'; maxLength = 16 }; city = @{ type = 'string'; maxLength = 16 }
        age = @{ type = 'integer'; minimum = 0; maximum = 120 }; score = @{ type = 'number' }
        active = @{ type = 'boolean' }; colour = @{ enum = @('red', 'green', 'blue') }
        tags = @{ type = 'array'; items = @{ type = 'string'; maxLength = 8 }; maxItems = 3 }
        id = @{ type = 'integer'; minimum = 1; maximum = 99999 }; note = @{ type = 'string'; maxLength = 24 }
        level = @{ enum = @('low', 'mid', 'high') }
    }
    required = @('name', 'city', 'age', 'score', 'active', 'colour', 'tags', 'id', 'note', 'level')
    additionalProperties = $false
}
$structuredRows = [System.Collections.Generic.List[object]]::new()
# TinyStories' vocabulary is 512 mostly one-character tokens: its JSON takes about three times the tokens.
foreach ($target in @(@{ Name = (Split-Path $model -Leaf); Model = $model; MaxTokens = $StructuredTokens }
                      @{ Name = 'tinystories (shipped)'; Model = 'tinystories'; MaxTokens = 3 * $StructuredTokens })) {
    $opts = @{ Model = $target.Model; Threads = $Threads; ContextSize = $contextSize; MaxTokens = $target.MaxTokens; Temperature = 0; RepeatPenalty = 1 }
    Invoke-LlmCompletion 'warm up' @opts -JsonSchema $structuredSchema | Out-Null
    for ($r = 1; $r -le $StructuredRounds; $r++) {
        $prompt = "Record $r as JSON: " + (New-Prompt 8)
        $first = if ($r % 2) { 'plain', 'json' } else { 'json', 'plain' }
        $res = @{}
        foreach ($kind in $first) {
            $res[$kind] = if ($kind -eq 'json') { Invoke-LlmCompletion $prompt @opts -JsonSchema $structuredSchema } else { Invoke-LlmCompletion $prompt @opts }
        }
        $valid = $false; try { $null = $res.json.Text | ConvertFrom-Json; $valid = $res.json.StopReason -eq 'EndOfText' } catch { }
        $structuredRows.Add([pscustomobject]@{
            Model = $target.Name; Round = $r
            'Plain tok/s' = [math]::Round($res.plain.TokensPerSecond, 1); 'Plain tokens' = $res.plain.CompletionTokens
            'Schema tok/s' = [math]::Round($res.json.TokensPerSecond, 1); 'Schema tokens' = $res.json.CompletionTokens
            Ratio = [math]::Round($res.json.TokensPerSecond / $res.plain.TokensPerSecond, 3); 'Complete JSON' = $valid
        })
    }
}
$structured = foreach ($name in ($structuredRows.Model | Select-Object -Unique)) {
    $mine = $structuredRows | Where-Object Model -eq $name
    [pscustomobject]@{ Model = $name; 'Median ratio (schema / plain)' = [math]::Round((Get-Median $mine.Ratio), 3)
        'Complete JSON' = "$(@($mine | Where-Object 'Complete JSON').Count) of $(@($mine).Count)" }
}
Write-Host "A 10-field JSON schema vs unconstrained, greedy, at most $StructuredTokens new tokens (TinyStories: $(3 * $StructuredTokens)), $StructuredRounds alternating rounds:"
$structuredRows | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
$structured | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
}

# Stability: resident memory over many completions, and what unloading gives back.
if ('Stability' -in $Sections) {
function Get-Rss { [GC]::Collect(); [GC]::WaitForPendingFinalizers(); [Math]::Round([System.Diagnostics.Process]::GetCurrentProcess().WorkingSet64 / 1MB, 1) }
$small = Join-Path $OutDir 'bench-stability.gguf'
if (-not (Test-Path $small)) {
    $o = [LlmTools.TestModels.TinyModelOptions]::new(); $o.Embedding = 256; $o.Layers = 4; $o.Heads = 4; $o.KvHeads = 2; $o.FeedForward = 768; $o.Q8 = $true
    [LlmTools.TestModels.TinyModel]::Write($small, $o) | Out-Null
}
$rss = [System.Collections.Generic.List[object]]::new()
$step = [Math]::Max(1, [int]($StabilityCompletions / 10))
for ($done = 0; $done -lt $StabilityCompletions; $done += $step) {
    1..$step | ForEach-Object { New-Prompt 6 } | Invoke-LlmCompletion -Model $small -MaxTokens 4 -ContextSize 128 -BatchSize 8 | Out-Null
    $rss.Add([pscustomobject]@{ Completions = $done + $step; RssMB = Get-Rss })
}
$loadedRss = Get-Rss
Remove-LlmModel -All
$direct::Unload()
$unloadedRss = Get-Rss
$stability = [pscustomobject]@{
    'RSS after first batch MB' = $rss[0].RssMB
    'RSS after all MB'         = $rss[-1].RssMB
    Completions                = $rss[-1].Completions
    'RSS loaded MB'            = $loadedRss
    'RSS after Remove-LlmModel MB' = $unloadedRss
}
Write-Host 'Resident memory:'
$stability | Format-List | Out-String | Write-Host
}
$direct::Unload()

$report = [ordered]@{
    Date = (Get-Date).ToString('o'); Model = (Split-Path $model -Leaf); Parameters = $info.ParameterCount
    FileType = $info.FileType; Threads = $Threads; Backend = $backend.Variant; Rounds = $rows; Summary = $summary
    Overhead = $overhead; Batches = $batchRows; SharedPrefix = $prefixRow; Server = $serverRow; Structured = $structuredRows; Stability = $stability; RssSeries = $rss
    Scheduler = $scheduler
}
$report | ConvertTo-Json -Depth 8 | Set-Content (Join-Path $OutDir 'bench.json')

if ($summary.Count -eq 0) { return }
# A bar chart a person can open: tokens per second of each path, prompt and generation.
$w = 720; $h = 360; $left = 70; $barW = 60; $maxV = [math]::Max(1, ($summary | ForEach-Object { $_.'Prompt tok/s'; $_.'Gen tok/s' } | Measure-Object -Maximum).Maximum)
$colors = @{ a = '#1f77b4'; b = '#ff7f0e'; c = '#2ca02c' }
$svg = [System.Text.StringBuilder]::new()
[void]$svg.AppendLine("<svg xmlns='http://www.w3.org/2000/svg' width='$w' height='$h' font-family='sans-serif' font-size='12'>")
[void]$svg.AppendLine("<rect width='100%' height='100%' fill='white'/><text x='$left' y='20' font-size='14'>LlmTools benchmark: tokens/s ($($info.FileType), $Threads threads, $(Split-Path $model -Leaf))</text>")
$groups = @('Prompt tok/s', 'Gen tok/s')
for ($g = 0; $g -lt 2; $g++) {
    $x0 = $left + 40 + $g * 300
    [void]$svg.AppendLine("<text x='$($x0 + 60)' y='$($h - 10)'>$($groups[$g])</text>")
    for ($i = 0; $i -lt 3; $i++) {
        $v = $summary[$i].($groups[$g]); $bh = [int](($h - 90) * $v / $maxV); $x = $x0 + $i * ($barW + 10); $y = $h - 40 - $bh
        $key = 'a', 'b', 'c' | Select-Object -Index $i
        [void]$svg.AppendLine("<rect x='$x' y='$y' width='$barW' height='$bh' fill='$($colors[$key])'/><text x='$($x + 5)' y='$($y - 4)'>$v</text>")
    }
}
for ($i = 0; $i -lt 3; $i++) {
    $key = 'a', 'b', 'c' | Select-Object -Index $i
    [void]$svg.AppendLine("<rect x='$($w - 250)' y='$(35 + $i * 18)' width='12' height='12' fill='$($colors[$key])'/><text x='$($w - 232)' y='$(46 + $i * 18)'>($key) $($names[$key])</text>")
}
[void]$svg.AppendLine('</svg>')
Set-Content (Join-Path $OutDir 'bench.svg') $svg.ToString()
Write-Host "Figures: $(Join-Path $OutDir 'bench.json'); chart: $(Join-Path $OutDir 'bench.svg')"
