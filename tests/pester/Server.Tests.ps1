BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

Describe 'Start-LlmServer' {
    AfterEach { Get-LlmServer | Stop-LlmServer }

    It 'serves the OpenAI API on a free loopback port, and Get/Stop-LlmServer manage it' {
        $s = Start-LlmServer -Model $TinyModel, $ChatModel -Alias tiny, chat -Port 0 -Threads 1 -ContextSize 512 -WarningAction SilentlyContinue
        $s | Should -BeOfType ([LlmTools.LlmServerInfo])
        $s.Endpoint | Should -Match '^http://127\.0\.0\.1:\d+/v1$'
        $s.Port | Should -BeGreaterThan 0
        $s.Models | Should -Be @('tiny', 'chat')
        (Invoke-RestMethod "$($s.Endpoint)/models").data.id | Should -Be @('tiny', 'chat')
        # Kestrel came from the ASP.NET Core shared framework into the engine's context, not PowerShell's.
        $kestrel = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'Microsoft.AspNetCore.Server.Kestrel.Core' }
        [System.Runtime.Loader.AssemblyLoadContext]::GetLoadContext($kestrel).Name | Should -Be 'LlmTools.Engine'
        $kestrel.Location | Should -Match 'Microsoft\.AspNetCore\.App'

        $body = @{ model = 'tiny'; prompt = 'Once upon a time'; max_tokens = 12; temperature = 0 } | ConvertTo-Json
        $r = Invoke-RestMethod "$($s.Endpoint)/completions" -Method Post -ContentType 'application/json' -Body $body
        $local = Invoke-LlmCompletion 'Once upon a time' -Model $TinyModel -MaxTokens 12 -Temperature 0 -RepeatPenalty 1 -ContextSize 512 -Threads 1
        $r.choices[0].text | Should -Be $local.Text
        $r.usage.completion_tokens | Should -Be 12
        $r.choices[0].finish_reason | Should -Be 'length'

        $chat = @{ model = 'chat'; messages = @(@{ role = 'user'; content = 'Hi' }); max_tokens = 8; temperature = 0 } | ConvertTo-Json -Depth 5
        $c = Invoke-RestMethod "$($s.Endpoint)/chat/completions" -Method Post -ContentType 'application/json' -Body $chat
        $c.choices[0].message.role | Should -Be 'assistant'
        $c.usage.prompt_tokens | Should -BeGreaterThan 3

        $found = Get-LlmServer
        $found.Id | Should -Be $s.Id
        $found.RequestsServed | Should -Be 2
        # The models stay loaded for the session's other cmdlets.
        (Get-LlmModel).Path | Should -Contain (Resolve-Path $TinyModel).Path

        $s | Stop-LlmServer
        Get-LlmServer | Should -BeNullOrEmpty
        { Invoke-RestMethod "$($s.Endpoint)/models" -TimeoutSec 5 } | Should -Throw
        (Get-LlmModel).Path | Should -Contain (Resolve-Path $TinyModel).Path
    }

    It 'answers errors in the OpenAI shape with their status' {
        $s = Start-LlmServer -Model $TinyModel -Alias tiny -Port 0 -ApiKey (ConvertTo-SecureString 'sk-pester' -AsPlainText -Force) -ContextSize 512 -WarningAction SilentlyContinue
        $body = @{ model = 'tiny'; prompt = 'Once'; max_tokens = 2 } | ConvertTo-Json
        $e = { Invoke-RestMethod "$($s.Endpoint)/completions" -Method Post -ContentType 'application/json' -Body $body } | Should -Throw -PassThru
        $e.Exception.Response.StatusCode | Should -Be 'Unauthorized'
        ($e.ErrorDetails.Message | ConvertFrom-Json).error.code | Should -Be 'invalid_api_key'

        $headers = @{ Authorization = 'Bearer sk-pester' }
        (Invoke-RestMethod "$($s.Endpoint)/completions" -Method Post -Headers $headers -ContentType 'application/json' -Body $body).usage.completion_tokens | Should -Be 2
        $unknown = @{ model = 'gpt-4o'; prompt = 'Once' } | ConvertTo-Json
        $e = { Invoke-RestMethod "$($s.Endpoint)/completions" -Method Post -Headers $headers -ContentType 'application/json' -Body $unknown } | Should -Throw -PassThru
        $e.Exception.Response.StatusCode | Should -Be 'NotFound'
        ($e.ErrorDetails.Message | ConvertFrom-Json).error.code | Should -Be 'model_not_found'
    }

    It 'refuses a non-loopback address without a key, and a taken port, with stable error ids' {
        { Start-LlmServer -Model $TinyModel -Address 0.0.0.0 -Port 0 } | Should -Throw -ErrorId 'ServerApiKeyRequired,LlmTools.Commands.StartLlmServerCommand'
        $s = Start-LlmServer -Model $TinyModel -Port 0 -ContextSize 512 -WarningAction SilentlyContinue
        { Start-LlmServer -Model $TinyModel -Port $s.Port -WarningAction SilentlyContinue } | Should -Throw -ErrorId 'ServerPortUnavailable,LlmTools.Commands.StartLlmServerCommand'
        { Stop-LlmServer -Id 99999 -ErrorAction Stop } | Should -Throw -ErrorId 'ServerNotFound,LlmTools.Commands.StopLlmServerCommand'
    }

    It 'Stop-LlmServer -WhatIf leaves it running' {
        $s = Start-LlmServer -Model $TinyModel -Port 0 -ContextSize 512 -WarningAction SilentlyContinue
        $s | Stop-LlmServer -WhatIf
        (Get-LlmServer).Id | Should -Be $s.Id
    }

    It '-Wait serves until the pipeline is stopped (Ctrl+C), then stops the server' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript('param($m, $module) Import-Module $module; Start-LlmServer -Model $m -Port 0 -ContextSize 512 -Wait -WarningAction SilentlyContinue').
                AddArgument($TinyModel).AddArgument((Join-Path $ModulePath 'LlmTools.psd1'))
            $async = $ps.BeginInvoke()
            $deadline = [datetime]::UtcNow.AddSeconds(60)
            while (-not (Get-LlmServer) -and [datetime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            $s = Get-LlmServer
            $s | Should -HaveCount 1
            (Invoke-RestMethod "$($s.Endpoint)/models").data.id | Should -Be 'tiny'
            $async.IsCompleted | Should -BeFalse
            $ps.Stop()
            Get-LlmServer | Should -BeNullOrEmpty
            { Invoke-RestMethod "$($s.Endpoint)/models" -TimeoutSec 5 } | Should -Throw
        }
        finally { $ps.Dispose() }
    }
}

Describe 'Server cmdlet help' {
    It 'has a synopsis, parameter descriptions and examples for <_>' -ForEach @('Start-LlmServer', 'Get-LlmServer', 'Stop-LlmServer') {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis | Should -Not -Match '^\s*\w+-\w+\s*\[' -Because 'a real synopsis, not the generated syntax'
        @($help.Examples.Example).Count | Should -BeGreaterThan 0
        foreach ($p in @($help.Parameters.Parameter | Where-Object { $_ })) {
            ($p.Description.Text -join '') | Should -Not -BeNullOrEmpty -Because "$_ -$($p.Name) needs a description"
        }
    }
}
