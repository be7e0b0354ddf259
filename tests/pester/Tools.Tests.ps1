BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    # The tiny ChatML model with a template that renders tools, tool calls and tool results (Hermes/Qwen2.5 style).
    $script:ToolModel = Join-Path $TestDir 'tiny-tools.gguf'
    if (-not (Test-Path $ToolModel)) {
        $o = [LlmTools.TestModels.TinyChatModel]::Options(1234)
        $o.ChatTemplate = [LlmTools.TestModels.TinyChatModel]::HermesToolsTemplate
        [LlmTools.TestModels.TinyModel]::Write($ToolModel, $o) | Out-Null
    }

    function global:Get-LlmToolsTestWeather {
        <#
        .SYNOPSIS
        Gets the weather forecast for a city.
        .PARAMETER Days
        How many days ahead.
        #>
        [CmdletBinding()]
        param(
            [Parameter(Mandatory, HelpMessage = 'The city to forecast.')]
            [ValidateSet('Paris', 'Oslo', 'Lima')]
            [string] $City,
            [ValidateRange(1, 7)]
            [int] $Days = 1,
            [switch] $Metric
        )
        $global:LlmToolsTestCalls.Add("$City/$Days")
        "Sunny in $City for $Days days"
    }
    $script:Weather = Get-Command Get-LlmToolsTestWeather
    $script:Common = @{ Temperature = 0; RepeatPenalty = 1; MaxTokens = 120; Threads = 1 }
}

Describe 'Tools in chat: -Tool, -ToolChoice, -InvokeTools' {
    BeforeEach { $global:LlmToolsTestCalls = [System.Collections.Generic.List[string]]::new() }

    It 'derives a command''s JSON schema from its parameters' {
        $s = New-LlmChatSession -Model $ToolModel -Tool $Weather -Threads 1
        try {
            $t = $s.Tools[0]
            $t.Name | Should -Be 'Get-LlmToolsTestWeather'
            $t.Description | Should -Be 'Gets the weather forecast for a city.'
            $schema = $t.ParametersSchema | ConvertFrom-Json
            @($schema.required) | Should -Be @('City')
            @($schema.properties.City.enum) | Should -Be @('Paris', 'Oslo', 'Lima')
            $schema.properties.City.description | Should -Be 'The city to forecast.'
            $schema.properties.Days.type | Should -Be 'integer'
            $schema.properties.Days.minimum | Should -Be 1
            $schema.properties.Days.maximum | Should -Be 7
            $schema.properties.Days.description | Should -Be 'How many days ahead.'
            $schema.properties.Metric.type | Should -Be 'boolean'
            @($schema.properties.PSObject.Properties.Name) | Should -Not -Contain 'Verbose' -Because 'common parameters are not arguments'
        }
        finally { $s.Dispose() }
    }

    It 'forces a call (-ToolChoice Required), runs it once per call, and answers with its result in the history' {
        $s = New-LlmChatSession -Model $ToolModel -Tool $Weather -ToolChoice Required @Common
        try {
            $r = Invoke-LlmChat -Session $s -Message 'Weather in Paris?' -InvokeTools -Confirm:$false
            $r.ToolResults.Count | Should -BeGreaterThan 0
            $LlmToolsTestCalls.Count | Should -Be $r.ToolResults.Count -Because 'each call ran once'
            $first = $r.ToolResults[0]
            $first.Succeeded | Should -BeTrue
            $first.Content | Should -Match '^Sunny in (Paris|Oslo|Lima) for [1-7] days$'
            $first.Call.Arguments.City | Should -BeIn @('Paris', 'Oslo', 'Lima')
            $tool = @($s.Messages | Where-Object Role -eq 'tool')
            $tool.Count | Should -Be $r.ToolResults.Count
            $tool[0].Content | Should -Be $first.Content
            $tool[0].ToolCallId | Should -Be $first.Call.Id
            $s.Messages[-1].Role | Should -Be 'assistant'
            $r.Turn | Should -Be 1
            # A new session from these messages keeps the calls and their ids.
            $copy = New-LlmChatSession -Model $ToolModel -Tool $Weather -History $s.Messages @Common
            try {
                @($copy.Messages | Where-Object ToolCalls)[0].ToolCalls[0].Id | Should -Be $first.Call.Id
                @($copy.Messages | Where-Object Role -eq 'tool')[0].ToolCallId | Should -Be $first.Call.Id
            }
            finally { $copy.Dispose() }
        }
        finally { $s.Dispose() }
    }

    It 'without -InvokeTools leaves the calls to the script: Name, Arguments (a dictionary) and Id' {
        $r = Invoke-LlmChat -Model $ToolModel -Message 'Weather?' -Tool $Weather -ToolChoice Get-LlmToolsTestWeather @Common
        $LlmToolsTestCalls.Count | Should -Be 0
        $r.ToolCalls.Count | Should -BeGreaterThan 0
        $call = $r.ToolCalls[0]
        $call.Name | Should -Be 'Get-LlmToolsTestWeather'
        $call.Id | Should -Match '^[A-Za-z0-9]{9}$'
        $call.Arguments | Should -BeOfType [System.Collections.IDictionary]
        $call.Arguments['City'] | Should -BeIn @('Paris', 'Oslo', 'Lima')
        # The arguments splat into the command as they are.
        $args = $call.Arguments
        Get-LlmToolsTestWeather @args | Should -Match '^Sunny in'
    }

    It 'turns a tool that throws into an error text for the model, not an error of the chat' {
        $boom = @{ Name = 'explode'; Description = 'Always fails.'; ScriptBlock = { param([Parameter(Mandatory)][ValidateSet('now')][string] $When) throw "boom $When" } }
        $err = $null
        $r = Invoke-LlmChat -Model $ToolModel -Message 'Go' -Tool $boom -ToolChoice Required -InvokeTools -Confirm:$false @Common -ErrorVariable err
        $err | Should -BeNullOrEmpty
        $r.ToolResults[0].Succeeded | Should -BeFalse
        $r.ToolResults[0].Content | Should -Be 'Error: boom now'
        $r.ToolResults[0].Name | Should -Be 'explode'
    }

    It 'shows the calls with -WhatIf and runs none' {
        $s = New-LlmChatSession -Model $ToolModel -Tool $Weather -ToolChoice Required @Common
        try {
            $r = Invoke-LlmChat -Session $s -Message 'Weather in Oslo?' -InvokeTools -WhatIf
            $LlmToolsTestCalls.Count | Should -Be 0
            $r.ToolCalls.Count | Should -BeGreaterThan 0
            $r.ToolResults.Count | Should -Be 0
            @($s.Messages | Where-Object Role -eq 'tool').Count | Should -Be 0
        }
        finally { $s.Dispose() }
    }

    It 'takes JSON tool definitions, as a string or a hashtable, and script blocks' {
        $json = '{"type":"function","function":{"name":"lookup","description":"Look up a word.","parameters":{"type":"object","properties":{"word":{"type":"string","maxLength":8}},"required":["word"]}}}'
        $hash = @{ type = 'function'; function = @{ name = 'add'; parameters = @{ type = 'object'; properties = @{ a = @{ type = 'integer' } } } } }
        $s = New-LlmChatSession -Model $ToolModel -Tool $json, $hash, { param([string] $Text) $Text } @Common
        try {
            @($s.Tools.Name) | Should -Be @('lookup', 'add', 'tool3')
            $r = Invoke-LlmChat -Session $s -Message 'Word?' -ToolChoice lookup -InvokeTools -Confirm:$false -Temperature 0 -MaxTokens 120
            # A JSON definition has nothing to run here: its calls are written for the script to answer.
            $r.ToolCalls[0].Name | Should -Be 'lookup'
            $r.ToolCalls[0].Arguments.word.Length | Should -BeLessOrEqual 8
            $r.ToolResults.Count | Should -Be 0
        }
        finally { $s.Dispose() }
    }

    It 'refuses bad tools and choices with clear errors' {
        { New-LlmChatSession -Model $ToolModel -Tool 42 -Threads 1 } | Should -Throw -ErrorId 'ToolInvalid,LlmTools.Commands.NewLlmChatSessionCommand'
        { New-LlmChatSession -Model $ToolModel -Tool { 'no params' } -Threads 1 } | Should -Throw -ErrorId 'ToolInvalid,LlmTools.Commands.NewLlmChatSessionCommand'
        { New-LlmChatSession -Model $ToolModel -Tool $Weather -ToolChoice nosuchtool -Threads 1 } | Should -Throw -ErrorId 'ToolChoiceUnknown,LlmTools.Commands.NewLlmChatSessionCommand'
        { New-LlmChatSession -Model $ToolModel -Tool '{"type":"function","function":{}}' -Threads 1 } | Should -Throw -ErrorId 'ToolDefinitionInvalid,LlmTools.Commands.NewLlmChatSessionCommand'
        { New-LlmChatSession -Model $ToolModel -Tool $Weather, $Weather -Threads 1 } | Should -Throw -ErrorId 'ToolNameDuplicate,LlmTools.Commands.NewLlmChatSessionCommand'
        { Invoke-LlmChat -Model $ToolModel -Message 'x' -Tool $Weather -JsonSchema '{"type":"string"}' @Common -ErrorAction Stop } |
            Should -Throw -ErrorId 'GrammarConflict,LlmTools.Commands.InvokeLlmChatCommand'
    }
}

Describe 'Tool results larger than the context' {
    It 'cuts the result the model sees to fit, says so, and keeps the whole result on the reply' {
        $big = @{ Name = 'Get-Big'; ScriptBlock = { param([ValidateSet('all')][string] $What) 'x' * 12000 }; Description = 'Writes a lot.' }
        $s = New-LlmChatSession -Model $ToolModel -Tool $big -ToolChoice Required @Common
        try {
            $r = Invoke-LlmChat -Session $s -Message 'Everything, please' -InvokeTools -Confirm:$false -WarningVariable warned 3>$null
            $r | Should -Not -BeNullOrEmpty
            $r.ToolResults[0].Content.Length | Should -Be 12000
            $tool = $s.Messages | Where-Object Role -eq 'tool' | Select-Object -First 1
            $tool.Content | Should -Match '\[\.\.\. cut: the result was 12000 characters, more than the context of 1024 tokens holds\]$'
            $tool.Content.Length | Should -BeLessThan 12000
            ($warned -join "`n") | Should -Match "The result of tool 'Get-Big' was cut to \d+ of 12000 characters"
        }
        finally { $s.Dispose() }
    }
}

Describe 'Start-LlmChat -Tool' {
    BeforeEach { $global:LlmToolsTestCalls = [System.Collections.Generic.List[string]]::new() }

    It 'shows a forced call, runs it once after -Confirm:$false, and the model answers with the result in the history' {
        $saved = Join-Path $TestDir "tools-chat-$([guid]::NewGuid().ToString('N').Substring(0, 6)).json"
        # A console of its own, as a person has it: what the chat says goes to the host, which is this output.
        $script = "Import-Module '$ModulePath/LlmTools.psd1'; " +
            'function Get-Weather { param([Parameter(Mandatory)][ValidateSet(''Paris'', ''Oslo'')][string] $City) Add-Content -Path ''' + "$saved.calls" + ''' -Value $City; "Sunny in $City" }; ' +
            "'Weather in Oslo?', '/save $saved' | Start-LlmChat -Model '$ToolModel' -Tool (Get-Command Get-Weather) -ToolChoice Required -Confirm:`$false -NoStatistics -Temperature 0 -RepeatPenalty 1 -MaxTokens 120 -Threads 1"
        $out = & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $LASTEXITCODE | Should -Be 0
        $text = $out -join "`n"
        $text | Should -Match '\[tool call: Get-Weather \{"City":"(Paris|Oslo)"\}\]'
        $history = Get-Content $saved -Raw | ConvertFrom-Json
        $history.role | Should -Be @('user', 'assistant', 'tool', 'assistant')
        $history[2].content | Should -Match '^Sunny in (Paris|Oslo)$'
        @(Get-Content "$saved.calls") | Should -HaveCount 1
        $text | Should -Match '\[tool Get-Weather: done\]'
    }

    It 'runs nothing with -WhatIf, and refuses -Tool with an endpoint' {
        'Weather in Oslo?' | Start-LlmChat -Model $ToolModel -Tool $Weather -ToolChoice Required -WhatIf -NoStatistics @Common 6>&1 | Out-Null
        $global:LlmToolsTestCalls.Count | Should -Be 0
        { Start-LlmChat -Endpoint 'http://127.0.0.1:9/v1' -Model m -Tool $Weather } | Should -Throw -ErrorId 'RemoteOptionNotSupported,LlmTools.Commands.StartLlmChatCommand'
    }
}
