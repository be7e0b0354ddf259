BeforeDiscovery {
    $HasShared = Test-Path (Join-Path $PSScriptRoot '../../../shared/models/stories260K.gguf')
}
BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    function Get-ErrorId([scriptblock] $Script) {
        try {
            $errs = $null
            & $Script -ErrorVariable errs -ErrorAction SilentlyContinue | Out-Null
            if ($errs) { return $errs[0].FullyQualifiedErrorId }
        } catch {
            return $_.FullyQualifiedErrorId
        }
        return $null
    }
}

Describe 'Bad input gets a clear error with a stable id, and the session goes on' {
    It 'a missing file' {
        { Invoke-LlmCompletion 'x' -Model (Join-Path $TestDir 'absent.gguf') -ErrorAction Stop } |
            Should -Throw -ErrorId 'ModelFileNotFound,LlmTools.Commands.InvokeLlmCompletionCommand'
        $caught = $null
        try { Invoke-LlmCompletion 'x' -Model (Join-Path $TestDir 'absent.gguf') } catch { $caught = $_ }
        $caught | Should -Not -BeNullOrEmpty -Because 'a missing model file ends the call (a terminating error)'
        $caught.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'a file that is not GGUF' {
        $path = Join-Path $TestDir 'readme.gguf'
        Set-Content $path 'This is not a model file at all, just some text that is long enough.'
        { Invoke-LlmCompletion 'x' -Model $path } | Should -Throw -ErrorId 'NotGgufFile,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Get-LlmModel -Path $path -ErrorAction Stop } | Should -Throw -ErrorId 'NotGgufFile,LlmTools.Commands.GetLlmModelCommand'
    }

    It 'a truncated GGUF' {
        $path = Join-Path $TestDir 'truncated.gguf'
        $bytes = [IO.File]::ReadAllBytes($TinyModel)
        [IO.File]::WriteAllBytes($path, $bytes[0..($bytes.Length / 2)])
        { Invoke-LlmCompletion 'x' -Model $path } | Should -Throw -ErrorId 'InvalidGgufFile,LlmTools.Commands.InvokeLlmCompletionCommand'
    }

    It 'a GGUF whose hyperparameters would abort llama.cpp (<Key> = <Value>)' -ForEach @(
        @{ Key = 'llama.block_count'; Value = [uint32]0 }
        @{ Key = 'llama.block_count'; Value = [uint32]100000 }
        @{ Key = 'llama.attention.layer_norm_rms_epsilon'; Value = [single]::NaN }
        @{ Key = 'llama.context_length'; Value = [uint32]0 }
    ) {
        $path = New-TestModel -Name "bad-$([guid]::NewGuid()).gguf" -Configure { param($o) $o.Overrides[$Key] = $Value }
        { Invoke-LlmCompletion 'x' -Model $path } | Should -Throw -ErrorId 'InvalidGgufFile,LlmTools.Commands.InvokeLlmCompletionCommand'
        (Invoke-LlmCompletion 'x' -Model $TinyModel -MaxTokens 1 -Temperature 0).CompletionTokens | Should -Be 1
    }

    It 'a vocabulary-only GGUF (<_>)' -Skip:(-not $HasShared) -ForEach @('ggml-vocab-llama-spm.gguf', 'ggml-vocab-gpt-2.gguf') {
        $path = Join-Path $SharedModels "vocab/$_"
        { Invoke-LlmCompletion 'x' -Model $path } | Should -Throw -ErrorId 'VocabularyOnlyModel,LlmTools.Commands.InvokeLlmCompletionCommand'
        # ...which can still count tokens.
        (Measure-LlmToken -Text 'Hello world' -Model $path).Count | Should -BeGreaterThan 1
    }

    It 'an out-of-range parameter (<Name>)' -ForEach @(
        @{ Name = 'MaxTokens'; Value = 0 }
        @{ Name = 'Temperature'; Value = -0.5 }
        @{ Name = 'TopP'; Value = 0 }
        @{ Name = 'MinP'; Value = 1 }
        @{ Name = 'RepeatPenalty'; Value = 0 }
    ) {
        $splat = @{ $Name = $Value }
        { Invoke-LlmCompletion 'x' -Model $TinyModel @splat } |
            Should -Throw -ErrorId "$($Name)OutOfRange,LlmTools.Commands.InvokeLlmCompletionCommand"
    }

    It 'an out-of-range context size or GPU layer count' {
        { Invoke-LlmCompletion 'x' -Model $TinyModel -ContextSize 3 -ErrorAction Stop } |
            Should -Throw -ErrorId 'ContextSizeOutOfRange,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Invoke-LlmCompletion 'x' -Model $TinyModel -GpuLayers -5 } |
            Should -Throw -ErrorId 'GpuLayersOutOfRange,LlmTools.Commands.InvokeLlmCompletionCommand'
    }

    It 'a prompt over the context fails that item only, naming both numbers' {
        $long = (1..100 | ForEach-Object { 'the little girl' }) -join ' '
        $errs = $null
        $results = 'Once', $long, 'The dog' | Invoke-LlmCompletion -Model $TinyModel -ContextSize 64 -MaxTokens 2 -ErrorVariable errs -ErrorAction SilentlyContinue
        $results.Prompt | Should -Be @('Once', 'The dog')
        $errs | Should -HaveCount 1
        $errs[0].FullyQualifiedErrorId | Should -Be 'PromptTooLong,LlmTools.Commands.InvokeLlmCompletionCommand'
        $errs[0].CategoryInfo.Category | Should -Be 'LimitsExceeded'
        $count = (Measure-LlmToken -Text $long -Model $TinyModel).Count
        $errs[0].Exception.Message | Should -Match "is $count tokens"
        $errs[0].Exception.Message | Should -Match 'holds 64'
    }

    It 'a model piped by property name fails that item only' {
        $rows = @(
            [pscustomobject]@{ Prompt = 'Once'; Model = (Join-Path $TestDir 'nope.gguf') }
            [pscustomobject]@{ Prompt = 'Once'; Model = $TinyModel }
        )
        $errs = $null
        $results = $rows | Invoke-LlmCompletion -MaxTokens 1 -ErrorVariable errs -ErrorAction SilentlyContinue
        $results | Should -HaveCount 1
        $errs[0].FullyQualifiedErrorId | Should -Be 'ModelFileNotFound,LlmTools.Commands.InvokeLlmCompletionCommand'
    }
}

Describe 'One rule for errors: a call that cannot run at all is a terminating error that try/catch catches' {
    It '<Name> ends the call with <Id>' -ForEach @(
        @{ Name = '-ContextSize 1'; Id = 'ContextSizeOutOfRange'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -ContextSize 1 } }
        @{ Name = '-Threads 0'; Id = 'ThreadsOutOfRange'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -Threads 0 } }
        @{ Name = '-MaxTokens 0'; Id = 'MaxTokensOutOfRange'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -MaxTokens 0 } }
        @{ Name = 'Import of a vocabulary-only file'; Id = 'VocabularyOnlyModel'; Script = {
            Import-LlmModel -Model ([LlmTools.TestModels.TinyModel]::WriteVocabularyOnly((Join-Path $TestDir 'vocab-import.gguf'))) } }
        @{ Name = 'New-LlmChatSession -ContextSize 1'; Id = 'ContextSizeOutOfRange'; Script = { New-LlmChatSession -Model $ChatModel -ContextSize 1 } }
    ) {
        $caught = $null
        try { & $Script | Out-Null } catch { $caught = $_ }
        $caught | Should -Not -BeNullOrEmpty -Because 'try/catch must see it'
        $caught.FullyQualifiedErrorId | Should -BeLike "$Id,LlmTools.Commands.*"
    }

    It '-Stop $null means no stop strings, not a crash' {
        (Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 3 -Temperature 0 -Stop $null).CompletionTokens | Should -Be 3
    }

    It 'a piped input that fails is an error for that input only; the others are answered' {
        $results = 'Once', ('word ' * 3000), 'The dog' | Invoke-LlmCompletion -Model $TinyModel -MaxTokens 2 -Temperature 0 -ContextSize 256 `
            -ErrorVariable errs -ErrorAction SilentlyContinue
        $results.Prompt | Should -Be @('Once', 'The dog')
        $errs | Should -HaveCount 1
        $errs[0].FullyQualifiedErrorId | Should -Be 'PromptTooLong,LlmTools.Commands.InvokeLlmCompletionCommand'
    }
}
