BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    # Nothing here may reach a network: the Hub is a closed loopback port, and offline.
    $script:SavedEnv = @{ HF_ENDPOINT = $env:HF_ENDPOINT; HF_HUB_OFFLINE = $env:HF_HUB_OFFLINE; HF_HOME = $env:HF_HOME }
    $env:HF_ENDPOINT = 'http://127.0.0.1:9'
    $env:HF_HOME = Join-Path $TestDir 'walk-hf-home'
    $script:Missing = Join-Path $TestDir 'no-such-model.gguf'
    $script:NotGguf = Join-Path $TestDir 'walk-not-gguf.gguf'
    Set-Content $NotGguf 'plain text, not a model'
}
AfterAll { foreach ($k in $SavedEnv.Keys) { Set-Item "env:$k" $SavedEnv[$k] } }

# Every cmdlet, given bad values: each error is the module's own (or PowerShell's parameter binding), never a raw .NET
# exception id, and the session goes on.
Describe 'Bad values to every cmdlet give the module''s own error ids' {
    It '<Name>' -ForEach @(
        @{ Name = 'Invoke-LlmCompletion missing model'; Script = { Invoke-LlmCompletion 'x' -Model $Missing } }
        @{ Name = 'Invoke-LlmCompletion not GGUF'; Script = { Invoke-LlmCompletion 'x' -Model $NotGguf } }
        @{ Name = 'Invoke-LlmCompletion -TopP 5'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -TopP 5 } }
        @{ Name = 'Invoke-LlmCompletion -Temperature NaN'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -Temperature ([float]::NaN) } }
        @{ Name = 'Invoke-LlmCompletion -BatchSize 0'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -BatchSize 0 } }
        @{ Name = 'Invoke-LlmCompletion -Stop empty'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -Stop '' } }
        @{ Name = 'Invoke-LlmCompletion -Grammar bad'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -Grammar 'root ::= "' } }
        @{ Name = 'Invoke-LlmCompletion -JsonSchema number'; Script = { Invoke-LlmCompletion 'x' -Model $TinyModel -JsonSchema 42 } }
        @{ Name = 'Invoke-LlmCompletion Hub reference offline'; Script = { Invoke-LlmCompletion 'x' -Model 'nobody/nothing-GGUF' } }
        @{ Name = 'Get-LlmModel -Path missing'; Script = { Get-LlmModel -Path $Missing } }
        @{ Name = 'Get-LlmModel -Path not GGUF'; Script = { Get-LlmModel -Path $NotGguf } }
        @{ Name = 'Import-LlmModel missing'; Script = { Import-LlmModel -Model $Missing } }
        @{ Name = 'Import-LlmModel -ContextSize -5'; Script = { Import-LlmModel -Model $TinyModel -ContextSize -5 } }
        @{ Name = 'Remove-LlmModel not loaded'; Script = { Remove-LlmModel -Model $Missing } }
        @{ Name = 'Measure-LlmToken missing'; Script = { Measure-LlmToken -Text 'x' -Model $Missing } }
        @{ Name = 'Connect-HuggingFace unreachable'; Script = { Connect-HuggingFace -Token (ConvertTo-SecureString 'hf_x' -AsPlainText -Force) } }
        @{ Name = 'Connect-HuggingFace non-ASCII token'; Script = { Connect-HuggingFace -Token (ConvertTo-SecureString 'hf_ü' -AsPlainText -Force) } }
        @{ Name = 'Get-HuggingFaceUser unreachable'; Script = { Get-HuggingFaceUser } }
        @{ Name = 'Find-LlmModel unreachable'; Script = { Find-LlmModel -Name qwen -First 1 } }
        @{ Name = 'Install-LlmModel bad reference'; Script = { Install-LlmModel 'not a reference' } }
        @{ Name = 'Install-LlmModel revision ..'; Script = { Install-LlmModel 'org/name@..' } }
        @{ Name = 'Uninstall-LlmModel not installed'; Script = { Uninstall-LlmModel 'org/name:Q8_0' -Confirm:$false } }
        @{ Name = 'ConvertTo-LlmPrompt bad message'; Script = { ConvertTo-LlmPrompt -Message 42 -Model $ChatModel } }
        @{ Name = 'ConvertTo-LlmPrompt self-containing message'; Script = { $h = @{ role = 'user' }; $h.content = $h; ConvertTo-LlmPrompt -Message $h -Model $ChatModel } }
        @{ Name = 'New-LlmChatSession recursive template'; Script = { New-LlmChatSession -Model $ChatModel -Template '{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}' | ForEach-Object { Invoke-LlmChat -Session $_ -Message 'hi' } } }
        @{ Name = 'Invoke-LlmChat range bomb template'; Script = { Invoke-LlmChat 'hi' -Model $ChatModel -Template '{% for i in range(1000000000) %}x{% endfor %}' } }
        @{ Name = 'Start-LlmServer non-loopback without key'; Script = { Start-LlmServer -Model $TinyModel -Address 0.0.0.0 -Port 0 } }
        @{ Name = 'Stop-LlmServer unknown id'; Script = { Stop-LlmServer -Id 987654 -Confirm:$false } }
    ) {
        $errors = @()
        try {
            $errs = $null
            & $Script -ErrorVariable errs -ErrorAction SilentlyContinue 2>$null | Out-Null
            $errors += @($errs)
        } catch { $errors += $_ }
        $errors | Should -Not -BeNullOrEmpty -Because 'each of these is an error'
        foreach ($e in $errors) {
            $id = ($e.FullyQualifiedErrorId -split ',')[0]
            $id | Should -Not -Match 'Exception$|^System\.|^RuntimeException$|^NullReference|^InvalidOperation$' -Because "raw .NET ids never reach the user ($($e.Exception.GetType().Name): $($e.Exception.Message))"
        }
        # The session goes on.
        (Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 1 -Temperature 0).CompletionTokens | Should -Be 1
    }
}
