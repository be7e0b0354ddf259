#requires -Version 7.6
<#
.SYNOPSIS
    Measures Start-LlmServer: 8 greedy completions sent at once against the same 8 sent one after another, aggregate
    generated tokens/s of each and their ratio (best of -Rounds, alternating). Run after ./build.ps1.
.EXAMPLE
    dotnet pwsh tests/Measure-ServerConcurrency.ps1 -Model out/bench/bench-quick.gguf -Threads 1
#>
param([Parameter(Mandatory)] [string] $Model, [int] $Threads = 1, [int] $MaxTokens = 32, [int] $Rounds = 2)
Import-Module (Join-Path $PSScriptRoot '../out/LlmTools/LlmTools.psd1')
$s = Start-LlmServer -Model $Model -Alias bench -Port 0 -ContextSize 1024 -MaxConcurrency 8 -Threads $Threads -WarningAction SilentlyContinue
$http = [System.Net.Http.HttpClient]::new(); $http.Timeout = [timespan]::FromMinutes(10)
$words = 'the a little girl named lily saw big red ball in park one day she went to play with her friend dog cat' -split ' '
$rnd = [Random]::new(7)
$prompts = 1..8 | ForEach-Object { (1..20 | ForEach-Object { $words[$rnd.Next($words.Count)] }) -join ' ' }
function Send([string] $p) {
    $body = @{ model = 'bench'; prompt = $p; max_tokens = $MaxTokens; temperature = 0 } | ConvertTo-Json
    $http.PostAsync("$($s.Endpoint)/completions", [System.Net.Http.StringContent]::new($body, [Text.Encoding]::UTF8, 'application/json'))
}
function Tokens($responses) { ($responses | ForEach-Object { ($_.Content.ReadAsStringAsync().Result | ConvertFrom-Json).usage.completion_tokens } | Measure-Object -Sum).Sum }
$null = (Send 'warm up').Result
$seq = @(); $con = @()
for ($r = 0; $r -lt $Rounds; $r++) {
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $rs = foreach ($p in $prompts) { (Send $p).Result }
    $seq += (Tokens $rs) / $sw.Elapsed.TotalSeconds
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $tasks = foreach ($p in $prompts) { Send $p }
    [Threading.Tasks.Task]::WaitAll([Threading.Tasks.Task[]]$tasks)
    $con += (Tokens ($tasks | ForEach-Object Result)) / $sw.Elapsed.TotalSeconds
    "round {0}: sequential {1:N1} tok/s, concurrent {2:N1} tok/s" -f $r, $seq[-1], $con[-1]
}
$bs = ($seq | Measure-Object -Maximum).Maximum; $bc = ($con | Measure-Object -Maximum).Maximum
"best: sequential {0:N1} tok/s, 8 concurrent {1:N1} tok/s, ratio {2:N2}" -f $bs, $bc, ($bc / $bs)
$s | Stop-LlmServer
