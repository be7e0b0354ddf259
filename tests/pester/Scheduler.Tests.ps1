BeforeDiscovery {
    $HasShared = Test-Path (Join-Path $PSScriptRoot '../../../shared/models/stories260K.gguf')
}
BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

# One scheduler per loaded model owns the compute: every runspace's calls are decoded together on its thread.
Describe 'The model scheduler, from PowerShell' {
    BeforeEach { Remove-LlmModel -All }

    It 'gives 16 runspaces x 4 prompts at once the results they get one at a time' {
        $prompts = 1..64 | ForEach-Object { "Prompt $_ : once upon a time a dog" }
        $expected = $prompts | Invoke-LlmCompletion -Model $TinyModel -MaxTokens 8 -Temperature 0 -BatchSize 1 | ForEach-Object Text
        $module = Join-Path $ModulePath 'LlmTools.psd1'
        $model = $TinyModel
        $results = 0..15 | ForEach-Object -ThrottleLimit 16 -Parallel {
            Import-Module $using:module
            $mine = $using:prompts | Select-Object -Skip ($_ * 4) -First 4
            $mine | Invoke-LlmCompletion -Model $using:model -MaxTokens 8 -Temperature 0
        }
        $results | Should -HaveCount 64
        foreach ($r in $results) { $r.Text | Should -Be $expected[$prompts.IndexOf($r.Prompt)] }
        $loaded = @(Get-LlmModel)
        $loaded | Should -HaveCount 1
        $loaded[0].Contexts | Should -Be 1
        $loaded[0].ActiveCalls | Should -Be 0
    }

    It 'gives concurrent runspaces on a trained model their one-at-a-time greedy stories' -Skip:(-not $HasShared) {
        $prompts = 'Once upon a time', 'The little dog', 'Lily and Ben', 'One day', 'The cat sat', 'Tom had a ball', 'Mom said', 'The sun'
        $expected = foreach ($p in $prompts) { (Invoke-LlmCompletion $p -Model $Stories -MaxTokens 32 -Temperature 0).Text }
        $module = Join-Path $ModulePath 'LlmTools.psd1'
        $results = $prompts | ForEach-Object -ThrottleLimit 8 -Parallel {
            Import-Module $using:module
            Invoke-LlmCompletion $_ -Model $using:Stories -MaxTokens 32 -Temperature 0
        }
        foreach ($r in $results) { $r.Text | Should -Be $expected[[array]::IndexOf($prompts, $r.Prompt)] }
    }

    It 'cancels the work and frees the model when a write in the middle of a call throws' {
        $threads = [Environment]::ProcessorCount + 1
        { Invoke-LlmCompletion 'Once upon a time' -Model $TinyModel -Threads $threads -MaxTokens 500 -WarningAction Stop } |
            Should -Throw -ErrorId 'ActionPreferenceStop,LlmTools.Commands.InvokeLlmCompletionCommand'
        (Get-LlmModel)[0].ActiveCalls | Should -Be 0
        (Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 3 -Temperature 0).CompletionTokens | Should -Be 3
    }

    It 'warns about more threads than cores' {
        $threads = [Environment]::ProcessorCount + 1
        Invoke-LlmCompletion 'Once' -Model $TinyModel -Threads $threads -MaxTokens 1 -WarningVariable w -WarningAction SilentlyContinue | Out-Null
        $w | Should -Match 'more than the \d+ cores'
    }

    It 'warns that -GpuLayers cannot help on a CPU backend and loads no second copy' {
        Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 1 | Out-Null
        Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 1 -GpuLayers 10 -WarningVariable w -WarningAction SilentlyContinue | Out-Null
        if (-not (Get-LlmBackend).GpuOffloadSupported) {
            $w | Should -Match 'GpuLayers 10 has no effect'
            @(Get-LlmModel) | Should -HaveCount 1
        }
    }

    It 'makes Import-LlmModel options the model''s defaults until it is removed' {
        Import-LlmModel -Model $TinyModel -ContextSize 64 -Threads 1 | Out-Null
        $r = Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 2
        $r.ContextSize | Should -Be 64
        $r.Threads | Should -Be 1
        Remove-LlmModel -Model $TinyModel
        (Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 2).ContextSize | Should -Not -Be 64
    }

    It 'keeps a model that a live chat session uses listed as Unloading after Remove-LlmModel -All' {
        $chat = New-LlmChatSession -Model $ChatModel -Temperature 0 -MaxTokens 4
        try {
            Remove-LlmModel -All
            $listed = @(Get-LlmModel | Where-Object Path -eq (Resolve-Path $ChatModel).Path)
            $listed | Should -HaveCount 1
            $listed[0].Status | Should -Be 'Unloading'
            # The session still answers: its model is freed when the session ends.
            (Invoke-LlmChat -Session $chat -Message 'Hi').CompletionTokens | Should -BeGreaterThan 0
        }
        finally { $chat.Dispose() }
        @(Get-LlmModel | Where-Object Path -eq (Resolve-Path $ChatModel).Path) | Should -HaveCount 0
    }

    It 'keeps the models of other runspaces when one runspace removes the module' {
        Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 1 | Out-Null
        $module = Join-Path $ModulePath 'LlmTools.psd1'
        $ps = [PowerShell]::Create()
        try {
            $ps.AddScript("Import-Module '$module'; Remove-Module LlmTools").Invoke() | Out-Null
            $ps.HadErrors | Should -BeFalse
        }
        finally { $ps.Dispose() }
        @(Get-LlmModel) | Should -HaveCount 1
    }
}
