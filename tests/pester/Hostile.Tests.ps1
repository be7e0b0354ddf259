BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    # A loopback "server" that answers each request with the next queued body (200, as JSON): garbage an
    # OpenAI-compatible client must report as RemoteInvalidResponse, not retry as a dropped connection.
    $script:Bodies = [System.Collections.Concurrent.ConcurrentQueue[string]]::new()
    $script:Listener = [System.Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
    $Listener.Start()
    $script:Url = "http://127.0.0.1:$($Listener.LocalEndpoint.Port)/v1"
    $script:Served = [ref]0
    $script:Job = Start-ThreadJob -ArgumentList $Listener, $Bodies, $Served {
        param($listener, $bodies, $served)
        while ($true) {
            try { $client = $listener.AcceptTcpClient() } catch { return }
            $stream = $client.GetStream(); $stream.ReadTimeout = 5000
            $buffer = [byte[]]::new(1MB); $n = 0
            try {
                do {
                    $n += $stream.Read($buffer, $n, $buffer.Length - $n)
                    $t = [Text.Encoding]::UTF8.GetString($buffer, 0, $n); $end = $t.IndexOf("`r`n`r`n")
                } while ($end -lt 0 -or ($t -match 'Content-Length: (\d+)' -and $n -lt $end + 4 + [int]$Matches[1]))
            } catch { }
            $body = '{}'; $null = $bodies.TryDequeue([ref]$body)
            $b = [Text.Encoding]::UTF8.GetBytes($body)
            $head = [Text.Encoding]::ASCII.GetBytes("HTTP/1.1 200 OK`r`nContent-Type: application/json`r`nContent-Length: $($b.Length)`r`nConnection: close`r`n`r`n")
            try { $stream.Write($head); $stream.Write($b); $stream.Flush() } catch { }
            $served.Value++
            $client.Close()
        }
    }
    function Send-Garbage([string] $Body, [scriptblock] $Call) {
        $Bodies.Clear(); 1..6 | ForEach-Object { $Bodies.Enqueue($Body) }
        $Served.Value = 0
        $e = { & $Call } | Should -Throw -PassThru
        [pscustomobject]@{ Id = $e.FullyQualifiedErrorId; Message = $e.Exception.Message; Requests = $Served.Value }
    }
}
AfterAll {
    $Listener.Stop()
    $Job | Stop-Job -PassThru | Remove-Job
}

Describe 'A server that answers 200 with what is not the OpenAI API' {
    It 'an HTML page is RemoteInvalidResponse at once, not "cannot be reached after 4 retries"' {
        $r = Send-Garbage '<html><body>It works!</body></html>' { Invoke-LlmChat 'hi' -Endpoint $Url -Model m -TimeoutSec 20 -ErrorAction Stop }
        $r.Id | Should -BeLike 'RemoteInvalidResponse,*'
        $r.Requests | Should -Be 1 -Because 'a page that is not JSON is not a dropped connection to retry'
    }

    It 'usage with a string count is RemoteInvalidResponse' {
        $r = Send-Garbage '{"choices":[{"message":{"role":"assistant","content":"hey"},"finish_reason":"stop"}],"usage":{"prompt_tokens":"x"}}' {
            Invoke-LlmChat 'hi' -Endpoint $Url -Model m -TimeoutSec 20 -ErrorAction Stop }
        $r.Id | Should -BeLike 'RemoteInvalidResponse,*'
    }

    It 'embeddings of strings or bad base64 are RemoteInvalidResponse' {
        $r = Send-Garbage '{"data":[{"index":0,"embedding":["a"]}]}' { Get-LlmEmbedding 'a' -Endpoint $Url -Model m -TimeoutSec 20 -ErrorAction Stop }
        $r.Id | Should -BeLike 'RemoteInvalidResponse,*'
        $r = Send-Garbage '{"data":[{"index":0,"embedding":"!!!"}]}' { Get-LlmEmbedding 'a' -Endpoint $Url -Model m -TimeoutSec 20 -ErrorAction Stop }
        $r.Id | Should -BeLike 'RemoteInvalidResponse,*'
    }
}

Describe 'Start-LlmChat /load of what is no conversation' {
    It 'a folder and an endless file (/dev/zero) are ChatFileInvalid, and the chat goes on' -Skip:(-not (Test-Path /dev/zero)) {
        $lines = @("/load $TestDir", '/load /dev/zero', '/stats', '/exit')
        $script = "Import-Module '$ModulePath/LlmTools.psd1'; Start-LlmChat -Model '$ChatModel' -Temperature 0 -MaxTokens 4 -Threads 1"
        $out = $lines | & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $text = $out -join "`n"
        $text | Should -Match 'is a folder: /load takes a file'
        $text | Should -Match 'is larger than 64 MB'
        $text | Should -Not -Match 'Insufficient memory'
        $text | Should -Match '0 exchanges' -Because 'the chat still runs after both'
        $text | Should -Match 'Bye\.'
    }
}

Describe 'A tool that runs break or continue outside a loop' {
    BeforeAll {
        $script:ToolModel = Join-Path $TestDir 'tiny-tools.gguf'
        if (-not (Test-Path $ToolModel)) {
            $o = [LlmTools.TestModels.TinyChatModel]::Options(1234)
            $o.ChatTemplate = [LlmTools.TestModels.TinyChatModel]::HermesToolsTemplate
            [LlmTools.TestModels.TinyModel]::Write($ToolModel, $o) | Out-Null
        }
    }

    It 'ends the tool, not the chat nor the caller''s loop' {
        $after = [System.Collections.Generic.List[string]]::new()
        $replies = foreach ($i in 1..2) {
            Invoke-LlmChat -Model $ToolModel -Message 'go' -Tool @{ Name = 'jump'; ScriptBlock = { param() 'before'; continue } } -ToolChoice Required -InvokeTools -Confirm:$false -Temperature 0 -RepeatPenalty 1 -MaxTokens 120 -Threads 1
            $after.Add("after $i")
        }
        @($after) | Should -Be @('after 1', 'after 2') -Because 'the tool''s continue is not the caller''s'
        @($replies) | Should -HaveCount 2
        $replies[0].ToolResults[0].Content | Should -Be 'before'
    }

    It 'exit ends the tool, not the caller''s script' {
        $script = "Import-Module '$ModulePath/LlmTools.psd1'; `$r = Invoke-LlmChat -Model '$ToolModel' -Message go -Tool @{ Name = 'quit'; ScriptBlock = { param() exit 3 } } -ToolChoice Required -InvokeTools -Confirm:`$false -Temperature 0 -RepeatPenalty 1 -MaxTokens 120 -Threads 1; 'result: ' + `$r.ToolResults[0].Content; 'script went on'"
        $out = & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $LASTEXITCODE | Should -Be 0
        ($out -join "`n") | Should -Match 'result: The tool ended with exit code 3\.'
        ($out -join "`n") | Should -Match 'script went on'
    }
}

Describe '-ToolChoice that needs tools, without tools' {
    It 'is ToolChoiceNeedsTools, as the server''s 400, not a reply in text' {
        $s = New-LlmChatSession -Model $ChatModel -ToolChoice Required -Threads 1 -MaxTokens 4
        try {
            { Invoke-LlmChat -Session $s -Message 'hi' -ErrorAction Stop } | Should -Throw -ErrorId 'ToolChoiceNeedsTools,*'
        }
        finally { $s.Dispose() }
        { Invoke-LlmChat -Model $ChatModel -Message 'hi' -ToolChoice Required -Threads 1 -MaxTokens 4 -ErrorAction Stop } | Should -Throw -ErrorId 'ToolChoiceNeedsTools,*'
        (Invoke-LlmChat -Model $ChatModel -Message 'hi' -ToolChoice None -Threads 1 -MaxTokens 4).CompletionTokens | Should -BeGreaterThan 0 -Because 'None and Auto need no tools'
    }
}
