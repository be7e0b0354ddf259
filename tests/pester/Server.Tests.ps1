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

    It 'answers tools with OpenAI tool_calls, takes the results back, and refuses a tool message that answers no call' {
        # The tiny ChatML model with a template that renders tools (Hermes/Qwen2.5 style), as in Tools.Tests.ps1.
        $toolModel = Join-Path $TestDir 'tiny-tools-server.gguf'
        if (-not (Test-Path $toolModel)) {
            $o = [LlmTools.TestModels.TinyChatModel]::Options(1234)
            $o.ChatTemplate = [LlmTools.TestModels.TinyChatModel]::HermesToolsTemplate
            [LlmTools.TestModels.TinyModel]::Write($toolModel, $o) | Out-Null
        }
        $s = Start-LlmServer -Model $toolModel -Alias tools -Port 0 -Threads 1 -ContextSize 1024 -WarningAction SilentlyContinue
        $weather = @{ type = 'function'; function = @{ name = 'get_weather'; description = 'Get the weather for a city'
                parameters = @{ type = 'object'; properties = @{ city = @{ type = 'string'; enum = @('Paris', 'Oslo') } }; required = @('city') } } }
        $messages = @(@{ role = 'user'; content = 'Weather in Oslo?' })
        $body = @{ model = 'tools'; messages = $messages; tools = @($weather); tool_choice = 'required'; temperature = 0; max_tokens = 120 } | ConvertTo-Json -Depth 10
        $r = Invoke-RestMethod "$($s.Endpoint)/chat/completions" -Method Post -ContentType 'application/json' -Body $body
        $r.choices[0].finish_reason | Should -Be 'tool_calls'
        $call = $r.choices[0].message.tool_calls[0]
        $call.type | Should -Be 'function'
        $call.function.name | Should -Be 'get_weather'
        $call.function.arguments | Should -BeOfType ([string])
        ($call.function.arguments | ConvertFrom-Json).city | Should -BeIn @('Paris', 'Oslo')

        # The call and its result go back; the model answers.
        $assistant = @{ role = 'assistant'; content = $null; tool_calls = @(@{ id = $call.id; type = 'function'; function = @{ name = $call.function.name; arguments = $call.function.arguments } }) }
        $round = $messages + $assistant + @{ role = 'tool'; tool_call_id = $call.id; content = '{"temperature": 21}' }
        $body = @{ model = 'tools'; messages = $round; tools = @($weather); temperature = 0; max_tokens = 8 } | ConvertTo-Json -Depth 10
        $next = Invoke-RestMethod "$($s.Endpoint)/chat/completions" -Method Post -ContentType 'application/json' -Body $body
        $next.usage.prompt_tokens | Should -BeGreaterThan $r.usage.prompt_tokens

        $orphan = @{ model = 'tools'; messages = @($messages[0], @{ role = 'tool'; tool_call_id = 'nope'; content = '1' }); tools = @($weather) } | ConvertTo-Json -Depth 10
        $e = { Invoke-RestMethod "$($s.Endpoint)/chat/completions" -Method Post -ContentType 'application/json' -Body $orphan } | Should -Throw -PassThru
        $e.Exception.Response.StatusCode | Should -Be 'BadRequest'
        ($e.ErrorDetails.Message | ConvertFrom-Json).error.param | Should -Be 'messages[1].tool_call_id'
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
