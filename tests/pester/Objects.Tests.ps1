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

    It 'labels token counts as tokens in the completion table' {
        $table = Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 2 -Temperature 0 | Format-Table | Out-String
        $table | Should -Match 'PromptTok'
    }
}
