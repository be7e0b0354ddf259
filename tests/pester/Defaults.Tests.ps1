BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    $script:OldConfig = $env:XDG_CONFIG_HOME
    $env:XDG_CONFIG_HOME = Join-Path $TestDir "config-$([guid]::NewGuid().ToString('n').Substring(0, 6))"
}
AfterAll {
    Set-LlmDefault -Reset -Scope Session
    $env:XDG_CONFIG_HOME = $OldConfig
}

Describe 'Defaults in one place' {
    BeforeEach { Remove-LlmModel -All; Set-LlmDefault -Reset -Scope Session; Set-LlmDefault -Reset }

    It 'says what to do when no model is given and none is set' {
        $err = $null
        try { Invoke-LlmCompletion 'Once' -MaxTokens 2 -ErrorAction Stop } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -Be 'ModelNotGiven,LlmTools.Commands.InvokeLlmCompletionCommand'
        $err.ErrorDetails.RecommendedAction | Should -Match 'Set-LlmDefault -Model'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'saves the user''s defaults as JSON under XDG_CONFIG_HOME and every cmdlet uses them' {
        Set-LlmDefault -Model $TinyModel -ContextSize 96 -Threads 1
        $file = Join-Path $env:XDG_CONFIG_HOME 'llmtools/defaults.json'
        $file | Should -Exist
        $saved = Get-Content $file -Raw | ConvertFrom-Json
        $saved.Model | Should -Be $TinyModel
        $saved.ContextSize | Should -Be 96
        (Get-LlmDefault -Scope User).Path | Should -Be $file
        $r = Invoke-LlmCompletion 'Once' -MaxTokens 2 -Temperature 0
        $r.ModelPath | Should -Be $TinyModel
        $r.ContextSize | Should -Be 96
        $r.Threads | Should -Be 1
        (Invoke-LlmChat -Message 'Hi' -MaxTokens 2 -Temperature 0 -WarningAction SilentlyContinue).ModelPath | Should -Be $TinyModel
        # A parameter given wins over the default.
        (Invoke-LlmCompletion 'Once' -MaxTokens 2 -Temperature 0 -ContextSize 64).ContextSize | Should -Be 64
        (Invoke-LlmCompletion 'Once' -Model $ChatModel -MaxTokens 2 -Temperature 0).ModelPath | Should -Be $ChatModel
    }

    It 'keeps -Scope Session values in memory, over the saved ones' {
        Set-LlmDefault -Model $ChatModel
        Set-LlmDefault -Model $TinyModel -Scope Session
        (Get-LlmDefault).Model | Should -Be $TinyModel
        (Get-LlmDefault -Scope User).Model | Should -Be $ChatModel
        (Get-Content (Join-Path $env:XDG_CONFIG_HOME 'llmtools/defaults.json') -Raw | ConvertFrom-Json).Model | Should -Be $ChatModel
        (Invoke-LlmCompletion 'Once' -MaxTokens 2 -Temperature 0).ModelPath | Should -Be $TinyModel
        Set-LlmDefault -Reset -Scope Session
        (Invoke-LlmCompletion 'Once' -MaxTokens 2 -Temperature 0).ModelPath | Should -Be $ChatModel
    }

    It 'refuses a broken defaults file with an error that names it' {
        $file = Join-Path $env:XDG_CONFIG_HOME 'llmtools/defaults.json'
        New-Item -ItemType Directory -Force (Split-Path $file) | Out-Null
        Set-Content $file '{ not json'
        { Get-LlmDefault -ErrorAction Stop } | Should -Throw -ErrorId 'LlmDefaultsUnreadable,LlmTools.Commands.GetLlmDefaultCommand'
        Set-LlmDefault -Reset
        (Get-LlmDefault).Model | Should -BeNullOrEmpty
    }
}
