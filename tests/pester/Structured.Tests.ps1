BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

Describe 'Objects from models: -JsonSchema, -Grammar, -AsObject' {
    It 'gives text that parses as JSON valid for a hashtable schema, and the parsed Value' {
        $schema = @{
            type = 'object'
            properties = @{ name = @{ type = 'string'; maxLength = 12 }; age = @{ type = 'integer'; minimum = 0; maximum = 120 }; ok = @{ type = 'boolean' } }
            required = @('name', 'age', 'ok')
            additionalProperties = $false
        }
        foreach ($seed in 1..3) {
            $r = Invoke-LlmCompletion 'Person:' -Model $TinyModel -JsonSchema $schema -MaxTokens 200 -Seed $seed -Temperature 0.8
            $r.StopReason | Should -Be 'EndOfText'
            $parsed = $r.Text | ConvertFrom-Json
            $parsed.name | Should -BeOfType [string]
            $parsed.name.Length | Should -BeLessOrEqual 12
            $parsed.age | Should -BeOfType [long]
            $parsed.age | Should -BeLessOrEqual 120
            $parsed.ok | Should -BeOfType [bool]
            @($parsed.PSObject.Properties.Name | Sort-Object) | Should -Be @('age', 'name', 'ok')
            $r.Value.name | Should -Be $parsed.name
            $r.Value.age | Should -Be $parsed.age
        }
    }

    It 'takes a PowerShell class as the schema and -AsObject writes only the value' {
        $type = Invoke-Expression 'class LlmToolsTestPoint { [int] $X; [int] $Y; [string] $Label }; [LlmToolsTestPoint]'
        $v = Invoke-LlmCompletion 'Point:' -Model $TinyModel -JsonSchema $type -AsObject -MaxTokens 200 -Temperature 0
        $v | Should -Not -BeOfType ([LlmTools.LlmCompletionResult])
        $v.PSObject.Properties.Name | Should -Contain 'X'
        $v.X | Should -BeOfType [long]
    }

    It 'says when generation stopped before the JSON was complete (-AsObject)' {
        $schema = '{"type":"array","items":{"type":"string"},"minItems":50}'
        $err = $null
        $out = Invoke-LlmCompletion 'List:' -Model $TinyModel -JsonSchema $schema -AsObject -MaxTokens 5 -Temperature 0 -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'JsonIncomplete,LlmTools.Commands.InvokeLlmCompletionCommand'
    }

    It 'constrains by a GBNF grammar and refuses a bad one before any work' {
        $r = Invoke-LlmCompletion 'Answer:' -Model $TinyModel -Grammar 'root ::= ("yes" | "no")' -MaxTokens 10 -Temperature 0
        $r.Text | Should -BeIn @('yes', 'no')
        { Invoke-LlmCompletion 'x' -Model $TinyModel -Grammar 'root ::= (' } | Should -Throw -ErrorId 'GrammarInvalid,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Invoke-LlmCompletion 'x' -Model $TinyModel -JsonSchema '{"type":"object","not":{}}' } | Should -Throw -ErrorId 'JsonSchemaUnsupported,LlmTools.Commands.InvokeLlmCompletionCommand'
    }

    It 'constrains chat replies, batched and in a session' {
        $schema = @{ type = 'object'; properties = @{ answer = @{ enum = @('red', 'green', 'blue') } }; required = @('answer') }
        $replies = 'Pick a colour', 'Another one' | Invoke-LlmChat -Model $ChatModel -JsonSchema $schema -MaxTokens 120 -Temperature 0
        $replies | Should -HaveCount 2
        foreach ($reply in $replies) { $reply.Value.answer | Should -BeIn @('red', 'green', 'blue') }
        $chat = New-LlmChatSession -Model $ChatModel -Temperature 0 -MaxTokens 120
        try {
            $v = Invoke-LlmChat -Session $chat -Message 'Pick one' -JsonSchema $schema -AsObject
            $v.answer | Should -BeIn @('red', 'green', 'blue')
        }
        finally { $chat.Dispose() }
    }
}

Describe 'Invoke-LlmChat -Session: options for one turn' {
    It 'takes sampling and length options for a turn, and keeps the context fixed' {
        $chat = New-LlmChatSession -Model $ChatModel -Temperature 0 -MaxTokens 12
        try {
            $short = Invoke-LlmChat -Session $chat -Message 'Hello' -MaxTokens 2
            $short.CompletionTokens | Should -BeLessOrEqual 2
            $next = Invoke-LlmChat -Session $chat -Message 'Again'
            $next.CompletionTokens | Should -BeGreaterThan 2 -Because 'the session''s own MaxTokens (12) applies again'
            $next.ModelPath | Should -Be (Resolve-Path $ChatModel).Path
            $next.ContextSize | Should -BeGreaterThan 0
            $next.GenerationDuration | Should -BeGreaterThan ([timespan]::Zero)
            { Invoke-LlmChat -Session $chat -Message 'x' -ContextSize 64 } | Should -Throw -ErrorId 'ChatSessionOptionsFixed,LlmTools.Commands.InvokeLlmChatCommand'
        }
        finally { $chat.Dispose() }
    }
}
