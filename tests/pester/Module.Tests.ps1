BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

Describe 'The module' {
    It 'declares PowerShell 7.6 and exports every cmdlet by name' {
        $manifest = Import-PowerShellDataFile (Join-Path $ModulePath 'LlmTools.psd1')
        $manifest.PowerShellVersion | Should -Be '7.6'
        $exported = (Get-Command -Module LlmTools).Name | Sort-Object
        $exported | Should -Be ($manifest.CmdletsToExport | Sort-Object)
        $exported.Count | Should -Be $manifest.CmdletsToExport.Count
        $exported.Count | Should -BeGreaterOrEqual 26
        $exported | Should -Contain 'Invoke-LlmCompletion'
        $exported | Should -Contain 'Measure-LlmToken'
    }

    It 'declares an output type on every cmdlet' {
        foreach ($c in Get-Command -Module LlmTools) {
            if ($c.Name -eq 'Remove-LlmModel') { continue }
            $c.OutputType.Count | Should -BeGreaterThan 0 -Because "$($c.Name) should declare [OutputType]"
        }
    }

    It 'ships only this platform''s native libraries, with the AVX512/AVX2/AVX/no-AVX variants' {
        $runtimes = Get-ChildItem (Join-Path $ModulePath 'engine/runtimes') -Directory
        $runtimes.Name | Should -Be @([System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier)
        (Get-ChildItem (Join-Path $runtimes[0].FullName 'native') -Directory).Name | Should -Contain 'avx512'
    }

    It 'loads the engine and LLamaSharp in their own AssemblyLoadContext' {
        Invoke-LlmCompletion -Prompt 'hi' -Model $TinyModel -MaxTokens 1 | Out-Null
        $engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'LLamaSharp' }
        $engine | Should -HaveCount 1
        [System.Runtime.Loader.AssemblyLoadContext]::GetLoadContext($engine).Name | Should -Be 'LlmTools.Engine'
    }

    It 'works when another module already loaded Microsoft.Extensions.Logging.Abstractions 8.0' {
        $old = Join-Path $env:LLMTOOLS_TEST_NUGET 'microsoft.extensions.logging.abstractions/8.0.0/lib/net8.0/Microsoft.Extensions.Logging.Abstractions.dll'
        Test-Path $old | Should -BeTrue
        $script = @"
Add-Type -Path '$old'
Import-Module '$ModulePath/LlmTools.psd1'
`$r = Invoke-LlmCompletion -Prompt 'Once upon a time' -Model '$TinyModel' -MaxTokens 4 -Temperature 0
`$old = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { `$_.GetName().Name -eq 'Microsoft.Extensions.Logging.Abstractions' }
# What LLamaSharp's own context resolves for the same name:
`$llama = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { `$_.GetName().Name -eq 'LLamaSharp' }
`$alc = [System.Runtime.Loader.AssemblyLoadContext]::GetLoadContext(`$llama)
`$new = `$alc.LoadFromAssemblyName([System.Reflection.AssemblyName]::new('Microsoft.Extensions.Logging.Abstractions'))
"tokens=`$(`$r.CompletionTokens)"
"versions=`$((@(`$old) + `$new | ForEach-Object { '{0}@{1}' -f `$_.GetName().Version.Major, [System.Runtime.Loader.AssemblyLoadContext]::GetLoadContext(`$_).Name }) -join ',')"
"@
        $out = & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $LASTEXITCODE | Should -Be 0
        $out | Should -Contain 'tokens=4'
        # The old one stays where the other module put it; the engine has its own.
        ($out | Where-Object { $_ -like 'versions=*' }) | Should -Match '8@Default'
        ($out | Where-Object { $_ -like 'versions=*' }) | Should -Match '10@LlmTools.Engine'
    }

    It 'routes llama.cpp''s log to the Debug stream, never to the console' {
        $script = "Import-Module '$ModulePath/LlmTools.psd1'; Invoke-LlmCompletion -Prompt 'Once' -Model '$TinyModel' -MaxTokens 2 | Out-Null; 'finished'"
        $out = & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $out | Should -Be 'finished'
        Remove-LlmModel -All
        $debug = & {
            $DebugPreference = 'Continue'
            Invoke-LlmCompletion -Prompt 'Once' -Model $TinyModel -MaxTokens 2 5>&1
        } | Where-Object { $_ -is [System.Management.Automation.DebugRecord] }
        ($debug.Message -join "`n") | Should -Match 'llama.cpp: .*load'
    }

    It 'reports the native backend it selected and why' {
        $b = Get-LlmBackend
        $b.Variant | Should -Not -BeNullOrEmpty
        $b.Reason | Should -Not -BeNullOrEmpty
        $b.GpuOffloadSupported | Should -BeOfType [bool]
        if (-not $b.CudaDriverFound) {
            $b.Variant | Should -Be ($b.CpuInstructionSet -replace '^none$', 'noavx').ToLowerInvariant()
            $b.Reason | Should -Match 'no NVIDIA driver'
        }
        $b.DefaultThreads | Should -Be ([Environment]::ProcessorCount)
    }

    It 'frees every model when the module is removed' {
        Invoke-LlmCompletion -Prompt 'hi' -Model $TinyModel -MaxTokens 1 | Out-Null
        (Get-LlmModel).Count | Should -BeGreaterThan 0
        Remove-Module LlmTools
        Import-Module (Join-Path $ModulePath 'LlmTools.psd1')
        Get-LlmModel | Should -BeNullOrEmpty
    }

    It 'completes -Model with loaded models' {
        Invoke-LlmCompletion -Prompt 'hi' -Model $TinyModel -MaxTokens 1 | Out-Null
        $line = "Invoke-LlmCompletion -Prompt x -Model tiny"
        $completions = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches
        $completions.CompletionText | Should -Contain $TinyModel
    }
}

Describe 'Help' {
    BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

    It 'has a synopsis, parameter descriptions and examples for <_>' -ForEach @(
        'Invoke-LlmCompletion', 'Get-LlmModel', 'Import-LlmModel', 'Remove-LlmModel', 'Measure-LlmToken', 'Get-LlmBackend',
        'Connect-HuggingFace', 'Disconnect-HuggingFace', 'Get-HuggingFaceUser', 'Find-LlmModel', 'Install-LlmModel', 'Uninstall-LlmModel',
        'ConvertTo-LlmPrompt', 'New-LlmChatSession', 'Invoke-LlmChat', 'Start-LlmChat'
    ) {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis | Should -Not -Match '^\s*\w+-\w+\s*\[' -Because 'a real synopsis, not the generated syntax'
        @($help.Examples.Example).Count | Should -BeGreaterThan 0
        foreach ($p in @($help.Parameters.Parameter | Where-Object { $_ })) {
            ($p.Description.Text -join '') | Should -Not -BeNullOrEmpty -Because "$_ -$($p.Name) needs a description"
        }
    }

    It 'says what -MaxTokens counts' {
        ((Get-Help Invoke-LlmCompletion -Parameter MaxTokens).Description.Text -join '') | Should -Match 'prompt never counts'
    }
}

Describe 'Native library selection' {
    BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

    It 'uses the llama.cpp libraries in LLMTOOLS_LLAMA_LIBRARY_PATH' {
        $folder = Join-Path $ModulePath "engine/runtimes/$([System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier)/native/avx2"
        $script = "`$env:LLMTOOLS_LLAMA_LIBRARY_PATH = '$folder'; Import-Module '$ModulePath/LlmTools.psd1'; `$b = Get-LlmBackend; `$b.Variant; `$b.LibraryPath; (Invoke-LlmCompletion 'Once' -Model '$TinyModel' -MaxTokens 3 -Temperature 0).CompletionTokens"
        $out = & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $out[0] | Should -Be 'custom'
        $out[1] | Should -Be (Join-Path $folder 'libllama.so')
        $out[2] | Should -Be '3'
    }

    It 'says what to do when LLMTOOLS_LLAMA_LIBRARY_PATH has no llama.cpp library' {
        $script = "`$env:LLMTOOLS_LLAMA_LIBRARY_PATH = '$TestDir'; Import-Module '$ModulePath/LlmTools.psd1'; try { Get-LlmBackend } catch { `$_.FullyQualifiedErrorId }; 'still running'"
        $out = & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $out | Should -Contain 'NativeLibraryPathInvalid,LlmTools.Commands.GetLlmBackendCommand'
        $out | Should -Contain 'still running'
    }

    It 'shows progress while a model loads' {
        Remove-LlmModel -All
        $ps = [powershell]::Create()
        $null = $ps.AddScript("Import-Module '$ModulePath/LlmTools.psd1'; Import-LlmModel -Model '$TinyModel'")
        $null = $ps.Invoke()
        $ps.Streams.Error | Should -BeNullOrEmpty
        $activities = $ps.Streams.Progress | Where-Object Activity -like 'Loading*'
        $activities | Should -Not -BeNullOrEmpty
        ($activities | Where-Object RecordType -eq 'Completed') | Should -Not -BeNullOrEmpty
        $ps.Dispose()
    }
}
