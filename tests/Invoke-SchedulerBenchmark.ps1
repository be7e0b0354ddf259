#requires -Version 7.6
<#
.SYNOPSIS
    The yardsticks of issue 8 (one inference scheduler): the module next to llama.cpp's own tools, in one run.
.DESCRIPTION
    Runs in a process of its own (tests/Invoke-Benchmark.ps1 starts it), so that its first completion is the
    process's first decode and nothing measured before leaves threads behind.
    (a) Separate Invoke-LlmCompletion calls, 64 new tokens each, interleaved with llama-bench -pg 2,64 (and -pg N,1
        for prompt speed) on the same file and threads: median of the per-round ratios; generation speed of every
        call in order (1st vs 10th).
    (b) 8 runspaces (ForEach-Object -Parallel), one prompt each, started together, vs the same 8 one after another:
        aggregate generated tokens per second; next to llama-batched-bench -npp 8 -ntg 32 -npl 1,8 (its 1 -> 8 gain).
    (c) 16 runspaces x 4 piped prompts: every result returned, resident memory before, at peak, after; and, when
        ../shared/models/stories260K.gguf exists, the same shape on that trained model compared with one-at-a-time
        greedy texts.
    llama.cpp's tools come from the folder in $env:LLAMA_CPP_TOOLS (llama-bench, llama-batched-bench built at commit
    815a2a59); they run on the native libraries this module loaded (LD_LIBRARY_PATH), never on their own. Without
    that folder the llama.cpp comparison is skipped and the module's own figures are still measured.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $OutDir,
    [Parameter(Mandatory)] [string] $Model,
    [int] $Threads = [Environment]::ProcessorCount,
    [int] $ContextSize = 1024,
    [int] $Rounds = 10,
    [int] $GenerateTokens = 64,
    [int] $PromptWords = 150,
    [int] $ParallelRounds = 3,
    [int] $ParallelCallers = 8,
    [int] $ParallelTokens = 32,
    [int] $StressRunspaces = 16,
    [int] $StressPrompts = 4,
    [int] $StressTokens = 16,
    [string] $ToolsDir = $env:LLAMA_CPP_TOOLS,
    [switch] $Quick
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
# Quick checks the benchmark itself: every part runs, on fewer and smaller requests.
if ($Quick) { $Rounds = 3; $ParallelRounds = 1; $ParallelCallers = 4; $StressRunspaces = 4; $StressPrompts = 2; $StressTokens = 8 }
$calls = [Math]::Max(10, $Rounds)   # the 1st vs 10th call needs ten calls
New-Item -ItemType Directory -Force $OutDir | Out-Null
# Full paths: the runspaces below and llama.cpp's tools do not share this one's location.
$ModulePath = (Resolve-Path $ModulePath).Path; $OutDir = (Resolve-Path $OutDir).Path; $Model = (Resolve-Path $Model).Path
$psd1 = Join-Path $ModulePath 'LlmTools.psd1'
Import-Module $psd1 -Force
$backend = Get-LlmBackend

function Get-Median([double[]] $values) {
    $s = @($values | Sort-Object)
    if ($s.Count -eq 0) { return [double]::NaN }
    if ($s.Count % 2) { $s[[int][math]::Floor($s.Count / 2)] } else { ($s[$s.Count / 2 - 1] + $s[$s.Count / 2]) / 2 }
}
function Get-RssMB { [Math]::Round([Diagnostics.Process]::GetCurrentProcess().WorkingSet64 / 1MB, 1) }
# OS threads of this process: llama.cpp's OpenMP keeps a team of workers per thread that ever called llama_decode.
function Get-ThreadCount { [int]((Get-Content /proc/self/status | Where-Object { $_ -like 'Threads:*' }) -replace '\D', '') }

# --- llama.cpp's tools, on this module's native libraries ---
$tools = $null
$toolNames = 'llama-bench', 'llama-batched-bench'
if ($ToolsDir -and ($toolNames | ForEach-Object { Test-Path -PathType Leaf (Join-Path $ToolsDir $_) }) -notcontains $false) {
    $libDir = Split-Path $backend.LibraryPath
    # The tools ask for libllama.so.0 and friends; the module's folder holds libllama.so: a folder of links to them.
    $links = Join-Path $OutDir 'llama-libs'
    New-Item -ItemType Directory -Force $links | Out-Null
    foreach ($lib in Get-ChildItem $libDir -Filter 'lib*.so') {
        foreach ($name in $lib.Name, "$($lib.Name).0") {
            $link = Join-Path $links $name
            if (Test-Path $link) { Remove-Item $link -Force }
            New-Item -ItemType SymbolicLink -Path $link -Target $lib.FullName | Out-Null
        }
    }
    # Libraries of the tools' own that LLamaSharp does not ship (libllama-common) may sit in a lib folder beside bin.
    $ownLibs = Join-Path (Split-Path $ToolsDir) 'lib'
    $env:LD_LIBRARY_PATH = if (Test-Path $ownLibs) { "$links`:$ownLibs" } else { $links }
    $bench = Join-Path $ToolsDir 'llama-bench'
    # Which files the loader picks: the record shows that the tools ran on the module's libraries.
    $resolved = @(& ldd $bench | Where-Object { $_ -match 'lib(llama|ggml[-a-z]*)\.so' } | ForEach-Object {
        $p = ($_ -split '=>')[1].Trim() -replace '\s*\(0x[0-9a-f]+\)$', ''
        "$($_.Trim().Split(' ')[0]) -> $((Get-Item $p).ResolveLinkTarget($true) ?? $p)" })
    $tools = [pscustomobject]@{ Dir = $ToolsDir; Libraries = $libDir; Resolved = $resolved }
    Write-Host "llama.cpp tools: $ToolsDir, on the module's libraries in $libDir"
    $resolved | ForEach-Object { Write-Host "  $_" }
} else {
    Write-Host "The llama.cpp comparison is skipped: set LLAMA_CPP_TOOLS to a folder with $($toolNames -join ' and ') (llama.cpp 815a2a59); the module's own figures are still measured."
}

function Invoke-LlamaBench([int] $promptTokens) {
    $json = & (Join-Path $ToolsDir 'llama-bench') -m $Model -t $Threads -pg "2,$GenerateTokens" -pg "$promptTokens,1" -p 0 -n 0 -r 1 -o json 2>$null
    if ($LASTEXITCODE -ne 0) { throw "llama-bench failed (exit $LASTEXITCODE)" }
    $runs = ($json -join "`n") | ConvertFrom-Json
    $gen = $runs | Where-Object { $_.n_gen -eq $GenerateTokens }; $pp = $runs | Where-Object { $_.n_gen -eq 1 }
    # -pg N,1 counts N+1 tokens over N prompt tokens and one more decode; a 2-token decode costs about one step, so
    # one step is the -pg 2,64 time over 65. Taking that step off gives the prompt speed alone, as the cmdlet reports it.
    $step = $gen.avg_ns / ($GenerateTokens + 1)
    [pscustomobject]@{
        GenTps       = $gen.avg_ts
        PromptTpsRaw = $pp.avg_ts
        PromptTps    = $promptTokens / (($pp.avg_ns - $step) / 1e9)
    }
}
function Invoke-BatchedBench {
    $lines = & (Join-Path $ToolsDir 'llama-batched-bench') -m $Model -npp 8 -ntg $ParallelTokens -npl "1,$ParallelCallers" -t $Threads --output-format jsonl 2>$null
    if ($LASTEXITCODE -ne 0) { throw "llama-batched-bench failed (exit $LASTEXITCODE)" }
    $rows = $lines | ForEach-Object { "$_" } | Where-Object { $_.StartsWith('{') } | ConvertFrom-Json
    $one = $rows | Where-Object pl -eq 1; $many = $rows | Where-Object pl -eq $ParallelCallers
    # speed = all tokens (prompt and generated) over the whole time; per sequence the mix is the same at 1 and 8.
    [pscustomobject]@{ Speed1 = $one.speed; SpeedN = $many.speed; Gain = $many.speed / $one.speed; TgGain = $many.speed_tg / $one.speed_tg }
}

$words = 'the a little girl named lily saw big red ball in park one day she went to play with her friend dog cat ' +
         'and they were happy sun was hot so we ran home mom said good night story time tree bird sky blue green' -split ' '
$random = [Random]::new(8)
function New-Prompt([int] $count) { (1..$count | ForEach-Object { $words[$random.Next($words.Count)] }) -join ' ' }
$common = @{ Model = $Model; Threads = $Threads; ContextSize = $ContextSize; Temperature = 0; RepeatPenalty = 1 }
$threadsAtStart = Get-ThreadCount
# Other work on the machine invalidates these figures, and not evenly: libgomp spins while a process has no more
# OpenMP threads than cores (llama-bench), and yields once it has more (the cmdlet after a few calls), so on a busy
# machine llama.cpp's tools fall far behind. The load is recorded next to each part; above the core count, a warning.
function Get-Load {
    $load = [double]((Get-Content /proc/loadavg) -split ' ')[0]
    if ($load -gt [Environment]::ProcessorCount) {
        Write-Warning "Load average $load on $([Environment]::ProcessorCount) cores: other work is running, the figures below do not hold; measure on a quiet machine."
    }
    $load
}
$loadAtStart = Get-Load

# --- (a) separate calls vs llama-bench, interleaved ---
$callRows = [System.Collections.Generic.List[object]]::new()
$roundRows = [System.Collections.Generic.List[object]]::new()
for ($i = 1; $i -le $calls; $i++) {
    $compare = $tools -and $i -le $Rounds
    $lb = $null
    $promptText = "$i $(New-Prompt $PromptWords)"
    $nPrompt = (Measure-LlmToken $promptText -Model $Model).Count
    # llama-bench before the calls in even rounds, after them in odd ones.
    if ($compare -and $i % 2 -eq 0) { $lb = Invoke-LlamaBench $nPrompt }
    # A short prompt of its own per call (BOS and a word or two, as -pg 2,64), so no call reuses another's KV cells.
    $gen = Invoke-LlmCompletion "$($words[$i % $words.Count]) $i" @common -MaxTokens $GenerateTokens
    $pp = Invoke-LlmCompletion $promptText @common -MaxTokens 1
    if ($compare -and $i % 2 -eq 1) { $lb = Invoke-LlamaBench $nPrompt }
    $callRows.Add([pscustomobject]@{
        Call = $i; GenTokens = $gen.CompletionTokens; 'Gen tok/s' = [Math]::Round($gen.TokensPerSecond, 2)
        PromptTokens = $pp.PromptTokens - $pp.CachedPromptTokens; 'Prompt tok/s' = [Math]::Round($pp.PromptTokensPerSecond, 1)
        ProcessThreads = Get-ThreadCount
    })
    if ($lb) {
        $roundRows.Add([pscustomobject]@{
            Round = $i; 'Gen tok/s' = [Math]::Round($gen.TokensPerSecond, 2); 'llama-bench gen tok/s' = [Math]::Round($lb.GenTps, 2)
            'Gen ratio' = [Math]::Round($gen.TokensPerSecond / $lb.GenTps, 3)
            'Prompt tok/s' = [Math]::Round($pp.PromptTokensPerSecond, 1); 'llama-bench prompt tok/s' = [Math]::Round($lb.PromptTps, 1)
            'Prompt ratio' = [Math]::Round($pp.PromptTokensPerSecond / $lb.PromptTps, 3)
            'llama-bench pg N,1 t/s (raw)' = [Math]::Round($lb.PromptTpsRaw, 1)
        })
    }
}
Write-Host "(a) Separate Invoke-LlmCompletion calls in call order: $GenerateTokens new tokens from a short prompt (Gen), then one from a ~$PromptWords-word prompt (Prompt); ProcessThreads: OS threads of this pwsh after both:"
$callRows | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
$first = $callRows[0].'Gen tok/s'; $tenth = $callRows[9].'Gen tok/s'
$separate = [ordered]@{
    Calls = $callRows; FirstCallGenTps = $first; TenthCallGenTps = $tenth; TenthVsFirst = [Math]::Round($tenth / $first, 3)
    Rounds = $roundRows; GenRatioMedian = $null; PromptRatioMedian = $null
}
if ($roundRows.Count -gt 0) {
    $separate.GenRatioMedian = [Math]::Round((Get-Median $roundRows.'Gen ratio'), 3)
    $separate.PromptRatioMedian = [Math]::Round((Get-Median $roundRows.'Prompt ratio'), 3)
    Write-Host "Interleaved with llama-bench -t $Threads -pg 2,$GenerateTokens -pg N,1 -r 1 on the same file (one round per call; llama-bench's prompt tok/s is N over the -pg N,1 time less one generation step):"
    $roundRows | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
}
Write-Host ("10th call vs 1st: {0:N1} vs {1:N1} tok/s ({2:N2}x); median of per-round ratios vs llama-bench: generation {3}, prompt {4}" -f
    $tenth, $first, ($tenth / $first), ($separate.GenRatioMedian ?? 'skipped'), ($separate.PromptRatioMedian ?? 'skipped'))

$loadAfterSeparate = Get-Load
# --- (b) 8 runspaces at once vs the same 8 one after another ---
function Invoke-Concurrent([string[]] $prompts, [int] $maxTokens, [string] $model) {
    $barrier = [Threading.Barrier]::new($prompts.Count)
    $out = $prompts | ForEach-Object -ThrottleLimit $prompts.Count -Parallel {
        $ErrorActionPreference = 'Stop'
        Import-Module $using:psd1
        $b = $using:barrier; $c = $using:common
        # Every runspace has the module imported before any starts: the clock measures completions only.
        [void]$b.SignalAndWait(300000)
        $t0 = [Diagnostics.Stopwatch]::GetTimestamp()
        try {
            $r = Invoke-LlmCompletion $_ -Model $using:model -Threads $c.Threads -ContextSize $c.ContextSize -Temperature 0 -RepeatPenalty 1 -MaxTokens $using:maxTokens
            [pscustomobject]@{ Prompt = $_; Start = $t0; End = [Diagnostics.Stopwatch]::GetTimestamp(); Result = $r; Error = $null }
        } catch {
            [pscustomobject]@{ Prompt = $_; Start = $t0; End = [Diagnostics.Stopwatch]::GetTimestamp(); Result = $null; Error = "$_" }
        }
    }
    $seconds = (($out.End | Measure-Object -Maximum).Maximum - ($out.Start | Measure-Object -Minimum).Minimum) / [Diagnostics.Stopwatch]::Frequency
    [pscustomobject]@{ Items = $out; Seconds = $seconds; Tokens = ($out.Result | Measure-Object CompletionTokens -Sum).Sum }
}
$parallelRows = [System.Collections.Generic.List[object]]::new()
for ($r = 1; $r -le $ParallelRounds; $r++) {
    $prompts = [string[]](1..$ParallelCallers | ForEach-Object { "$r $_ $(New-Prompt 5)" })
    $order = if ($r % 2) { 'seq', 'par', 'lcpp' } else { 'lcpp', 'par', 'seq' }
    $seq = $par = $lcpp = $null
    foreach ($step in $order) {
        switch ($step) {
            'seq' {
                $sw = [Diagnostics.Stopwatch]::StartNew()
                $res = foreach ($p in $prompts) { Invoke-LlmCompletion $p @common -MaxTokens $ParallelTokens }
                $seq = [pscustomobject]@{ Seconds = $sw.Elapsed.TotalSeconds; Tokens = ($res | Measure-Object CompletionTokens -Sum).Sum; Texts = $res.Text }
            }
            'par' { $par = Invoke-Concurrent $prompts $ParallelTokens $Model }
            'lcpp' { if ($tools) { $lcpp = Invoke-BatchedBench } }
        }
    }
    $errors = @($par.Items | Where-Object Error)
    if ($errors) { Write-Warning "(b) $($errors.Count) concurrent call(s) failed: $($errors[0].Error)" }
    $seqTps = $seq.Tokens / $seq.Seconds; $parTps = $par.Tokens / $par.Seconds
    $row = [pscustomobject]@{
        Round = $r; 'One after another tok/s' = [Math]::Round($seqTps, 2); "$ParallelCallers at once tok/s" = [Math]::Round($parTps, 2)
        Gain = [Math]::Round($parTps / $seqTps, 3); Failed = $errors.Count
        'llama-batched-bench gain' = if ($lcpp) { [Math]::Round($lcpp.Gain, 3) } else { $null }
        'llama-batched-bench TG gain' = if ($lcpp) { [Math]::Round($lcpp.TgGain, 3) } else { $null }
        'Gain vs llama.cpp' = if ($lcpp) { [Math]::Round(($parTps / $seqTps) / $lcpp.Gain, 3) } else { $null }
    }
    $parallelRows.Add($row)
}
Write-Host "(b) $ParallelCallers prompts of ~8 tokens, $ParallelTokens new tokens each: $ParallelCallers runspaces at once vs one after another (generated tokens per second of wall time):"
$parallelRows | Format-Table -AutoSize | Out-String -Width 220 | Write-Host
$concurrent = [ordered]@{
    Rounds = $parallelRows; GainMedian = [Math]::Round((Get-Median $parallelRows.Gain), 3)
    LlamaCppGainMedian = $null; GainVsLlamaCppMedian = $null
}
if ($tools) {
    $concurrent.LlamaCppGainMedian = [Math]::Round((Get-Median $parallelRows.'llama-batched-bench gain'), 3)
    $concurrent.GainVsLlamaCppMedian = [Math]::Round((Get-Median $parallelRows.'Gain vs llama.cpp'), 3)
}
Write-Host ("{0} runspaces at once: {1:N2}x of one after another; llama-batched-bench 1 -> {0}: {2}; ratio {3}" -f
    $ParallelCallers, $concurrent.GainMedian, ($concurrent.LlamaCppGainMedian ?? 'skipped'), ($concurrent.GainVsLlamaCppMedian ?? 'skipped'))

$loadAfterConcurrent = Get-Load
# --- (c) 16 runspaces x 4 piped prompts ---
function Invoke-Stress([string] $model, [int] $maxTokens, [int] $ctx) {
    $sets = 1..$StressRunspaces | ForEach-Object { $k = $_; , [string[]](1..$StressPrompts | ForEach-Object { "$k $_ $(New-Prompt 5)" }) }
    [GC]::Collect(); [GC]::WaitForPendingFinalizers()
    $before = Get-RssMB; $threadsBefore = Get-ThreadCount; $peak = $before
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $job = $sets | ForEach-Object -ThrottleLimit $StressRunspaces -AsJob -Parallel {
        $ErrorActionPreference = 'Stop'
        Import-Module $using:psd1
        $set = $_
        try {
            $r = @($set | Invoke-LlmCompletion -Model $using:model -Threads ($using:common).Threads -ContextSize $using:ctx -Temperature 0 -RepeatPenalty 1 -MaxTokens $using:maxTokens)
            [pscustomobject]@{ Prompts = $set; Results = $r; Error = $null }
        } catch { [pscustomobject]@{ Prompts = $set; Results = @(); Error = "$_" } }
    }
    while ($job.State.ToString() -in 'NotStarted', 'Running') { $peak = [Math]::Max($peak, (Get-RssMB)); Start-Sleep -Milliseconds 100 }
    $out = @(Receive-Job $job -Wait -AutoRemoveJob)
    $seconds = $sw.Elapsed.TotalSeconds
    $peak = [Math]::Max($peak, (Get-RssMB))
    [GC]::Collect(); [GC]::WaitForPendingFinalizers()
    $expected = $StressRunspaces * $StressPrompts
    # A result counts when it answers one of its runspace's prompts (each once), whatever order they came back in.
    $returned = @($out | ForEach-Object { $set = $_; $_.Results | Where-Object { $set.Prompts -ccontains $_.Prompt -and $_.CompletionTokens -gt 0 } |
        Sort-Object Prompt -Unique })
    [pscustomobject]@{
        Sets = $sets; Out = $out; Expected = $expected; Returned = $returned.Count
        Failed = @($out | Where-Object Error).Count; Errors = @($out | Where-Object Error | ForEach-Object Error | Select-Object -Unique)
        Seconds = [Math]::Round($seconds, 1); RssBeforeMB = $before; RssPeakMB = $peak; RssAfterMB = Get-RssMB
        ThreadsBefore = $threadsBefore; ThreadsAfter = Get-ThreadCount
    }
}
$stress = Invoke-Stress $Model $StressTokens $ContextSize
$stressRow = [ordered]@{
    Runspaces = $StressRunspaces; PromptsEach = $StressPrompts; Expected = $stress.Expected; Returned = $stress.Returned; Failed = $stress.Failed
    Seconds = $stress.Seconds; RssBeforeMB = $stress.RssBeforeMB; RssPeakMB = $stress.RssPeakMB; RssAfterMB = $stress.RssAfterMB
    ThreadsBefore = $stress.ThreadsBefore; ThreadsAfter = $stress.ThreadsAfter; Errors = $stress.Errors
    Stories260K = $null
}
# On a trained model greedy texts are well separated, so concurrent results must equal one-at-a-time results.
$stories = Join-Path $PSScriptRoot '../../shared/models/stories260K.gguf'
if (Test-Path $stories) {
    $s = Invoke-Stress $stories 16 256
    $same = 0; $compared = 0
    foreach ($o in $s.Out) {
        foreach ($res in $o.Results) {
            $alone = Invoke-LlmCompletion $res.Prompt -Model $stories -Threads $Threads -ContextSize 256 -Temperature 0 -RepeatPenalty 1 -MaxTokens 16
            $compared++; if ($alone.Text -ceq $res.Text) { $same++ }
        }
    }
    $stressRow.Stories260K = [ordered]@{ Expected = $s.Expected; Returned = $s.Returned; Failed = $s.Failed; SameAsOneAtATime = $same; Compared = $compared }
}
Write-Host "(c) $StressRunspaces runspaces x $StressPrompts piped prompts, $StressTokens new tokens each:"
[pscustomobject]$stressRow | Format-Table -AutoSize -Property Expected, Returned, Failed, Seconds, RssBeforeMB, RssPeakMB, RssAfterMB, ThreadsBefore, ThreadsAfter |
    Out-String -Width 220 | Write-Host
if ($stress.Errors) { Write-Host "  errors: $($stress.Errors -join ' | ')" }
if ($stressRow.Stories260K) {
    $t = $stressRow.Stories260K
    Write-Host "  stories260K, same shape: $($t.Returned)/$($t.Expected) returned, $($t.Failed) runspace(s) failed, $($t.SameAsOneAtATime)/$($t.Compared) greedy texts equal to one-at-a-time"
}

[ordered]@{
    Date = (Get-Date).ToString('o'); Model = (Split-Path $Model -Leaf); Threads = $Threads; ContextSize = $ContextSize
    Backend = $backend.Variant; LlamaCppTools = $tools; ProcessThreadsAtStart = $threadsAtStart
    LoadAverage = [ordered]@{ Start = $loadAtStart; AfterSeparate = $loadAfterSeparate; AfterConcurrent = $loadAfterConcurrent; End = Get-Load }
    SeparateCalls = $separate; Concurrent = $concurrent; Stress = $stressRow
} | ConvertTo-Json -Depth 6 | Set-Content (Join-Path $OutDir 'scheduler.json')
