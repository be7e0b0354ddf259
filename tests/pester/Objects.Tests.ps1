BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

Describe 'Objects that fit together' {
    BeforeEach { Remove-LlmModel -All }

    It 'names the model ModelName and ModelPath on every result, and keeps the old names working' {
        $r = Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 2 -Temperature 0
        $r.ModelName | Should -Be 'tiny-llama-test'
        $r.Model | Should -Be $r.ModelName
        $r.ModelPath | Should -Be $TinyModel
        $t = Measure-LlmToken 'Once upon a time' -Model $TinyModel
        $t.ModelName | Should -Be 'tiny-llama-test'
        $t.Model | Should -Be 'tiny-llama-test'
        $info = Get-LlmModel -Path $TinyModel
        $info.ModelName | Should -Be $info.Name
        $info.ModelPath | Should -Be $TinyModel
        Import-LlmModel -Model $TinyModel | Out-Null
        $loaded = Get-LlmModel
        $loaded.ModelPath | Should -Be $TinyModel
        $loaded.IsVocabularyOnly | Should -BeFalse
        $loaded.VocabularyOnly | Should -BeFalse
        $info.IsVocabularyOnly | Should -BeFalse
    }

    It 'writes one copy of each property to JSON (the old names are hidden aliases)' {
        $json = Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 2 -Temperature 0 | ConvertTo-Json -Depth 1 | ConvertFrom-Json
        $json.PSObject.Properties.Name | Should -Contain 'ModelName'
        $json.PSObject.Properties.Name | Should -Not -Contain 'Model'
    }

    It 'shows a session''s options with their stop strings, not a type name' {
        $s = New-LlmChatSession -Model $ChatModel -Stop 'END', 'x"y'
        $text = $s | Format-List | Out-String
        $text | Should -Match 'Stop = \["END", "x\\"y"'
        $text | Should -Not -Match 'ReadOnlyArray'
    }

    It 'writes enums as names and durations as milliseconds to JSON, without -EnumsAsStrings (<Name>)' -ForEach @(
        @{ Name = 'completion'; Make = { Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 2 -Temperature 0 } }
        @{ Name = 'chat reply'; Make = { Invoke-LlmChat 'Hi' -Model $ChatModel -MaxTokens 2 -Temperature 0 } }
        @{ Name = 'session reply'; Make = { Invoke-LlmChat 'Hi' -Session (New-LlmChatSession -Model $ChatModel -MaxTokens 2 -Temperature 0) } }
    ) {
        $r = & $Make
        $json = $r | ConvertTo-Json
        $back = $json | ConvertFrom-Json
        $back.StopReason | Should -Be 'MaxTokens'
        $back.StopReason | Should -BeOfType string
        foreach ($d in 'LoadDuration', 'PromptDuration', 'TimeToFirstToken', 'GenerationDuration', 'TotalDuration') {
            $back."${d}Ms" | Should -BeOfType double
            $back."${d}Ms" | Should -Be ([Math]::Round($r.$d.TotalMilliseconds, 3))
            $back.PSObject.Properties.Name | Should -Not -Contain $d
        }
        $back.TotalDurationMs | Should -BeGreaterThan 0
        $json | Should -Not -Match 'Ticks'
        # PowerShell code keeps the enum and the TimeSpan; nested in an array, the JSON is the same.
        $r.StopReason | Should -BeOfType LlmTools.LlmStopReason
        $r.StopReason -eq 'MaxTokens' | Should -BeTrue
        $r.PromptDuration | Should -BeOfType timespan
        $r.PromptDuration.TotalMilliseconds | Should -BeGreaterThan 0
        (ConvertTo-Json @($r, $r) | ConvertFrom-Json)[1].StopReason | Should -Be 'MaxTokens'
        (ConvertTo-Json @{ r = $r } | ConvertFrom-Json).r.TotalDurationMs | Should -Be $back.TotalDurationMs
    }

    It 'writes a loaded model''s load time, an embedding''s pooling and a session''s options as plain JSON' {
        Import-LlmModel -Model $TinyModel | Out-Null
        $m = Get-LlmModel | ConvertTo-Json | ConvertFrom-Json
        $m.LoadDurationMs | Should -BeGreaterThan 0
        $m.PSObject.Properties.Name | Should -Not -Contain 'LoadDuration'
        $e = Get-LlmEmbedding 'The cat' -Model $TinyModel | ConvertTo-Json | ConvertFrom-Json
        $e.Pooling | Should -BeIn 'Mean', 'Cls', 'Last', 'Rank'
        $e.Normalize | Should -Be 'L2'
        $s = New-LlmChatSession -Model $ChatModel -Stop 'END' -Temperature 0
        $sj = $s | ConvertTo-Json -Depth 3 | ConvertFrom-Json
        $sj.Options.Stop | Should -Contain 'END'
        $sj.ContextSize | Should -Be $s.ContextSize
    }

    It 'never writes a remote session''s API key, and gives its timeout in milliseconds' {
        $server = Start-LlmServer -Model $ChatModel -Alias chat -Port 0 -ContextSize 256 -Threads 1 -WarningAction SilentlyContinue
        try {
            $key = ConvertTo-SecureString 'sk-never-in-json' -AsPlainText
            $s = New-LlmChatSession -Endpoint $server.Endpoint -ApiKey $key -Model chat -Stop 'END' -TimeoutSec 30
            $json = $s | ConvertTo-Json -Depth 5
            $json | Should -Not -Match 'sk-never-in-json'
            ($json | ConvertFrom-Json).Options.TimeoutMs | Should -Be 30000
            $text = $s | Format-List | Out-String
            $text | Should -Match 'Stop = \["END"\]'
            $text | Should -Not -Match 'ReadOnlyArray|sk-never'
        }
        finally { Stop-LlmServer -Id $server.Id }
    }

    It 'labels token counts as tokens in the completion table' {
        $table = Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 2 -Temperature 0 | Format-Table | Out-String
        $table | Should -Match 'PromptTok'
    }
}

Describe 'Import-LlmModel -KeepAlive' {
    BeforeEach { Remove-LlmModel -All }

    It 'unloads a model no call used for that long, and keeps one without it' {
        $other = New-TestModel -Name 'keepalive-other.gguf' -Configure { param($o) $o.Seed = 7 }
        Import-LlmModel -Model $other | Out-Null
        Import-LlmModel -Model $TinyModel -KeepAlive 00:00:00.5 | Out-Null
        (Get-LlmModel).Path | Should -Contain $TinyModel
        # Polls with a generous deadline: the test waits for the unload, it does not time it.
        $deadline = [DateTime]::UtcNow.AddSeconds(60)
        while ((Get-LlmModel).Path -contains $TinyModel -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 200 }
        (Get-LlmModel).Path | Should -Not -Contain $TinyModel
        (Get-LlmModel).Path | Should -Contain $other
    }

    It 'keeps it loaded while a chat session uses it' {
        Import-LlmModel -Model $ChatModel -KeepAlive 00:00:00.2 | Out-Null
        $s = New-LlmChatSession -Model $ChatModel
        Start-Sleep -Milliseconds 800
        (Get-LlmModel).Path | Should -Contain $ChatModel
        $s.Dispose()
    }
}

Describe 'Errors that say what to do' {
    It 'sets RecommendedAction on common errors' {
        $e = $null
        try { Invoke-LlmCompletion 'x' -Model (Join-Path $TestDir 'no-such-model.gguf') -ErrorAction Stop } catch { $e = $_ }
        $e.FullyQualifiedErrorId | Should -BeLike 'ModelFileNotFound,*'
        $e.ErrorDetails.RecommendedAction | Should -Match 'Get-LlmModel -ListAvailable'
    }

    It 'Disconnect-HuggingFace asks before deleting the saved token (ConfirmImpact High)' {
        $attr = (Get-Command Disconnect-HuggingFace).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $true)[0]
        $attr.ConfirmImpact | Should -Be 'High'
    }
}
