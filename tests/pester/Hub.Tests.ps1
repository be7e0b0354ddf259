BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    $script:Hub = [LlmTools.TestModels.FakeHub]::new()
    $script:Secret = 'hf_' + [guid]::NewGuid().ToString('N')
    $Hub.Tokens[$Secret] = 'alice'
    $script:modelBytes = [IO.File]::ReadAllBytes($Stories)
    $files = [System.Collections.Generic.Dictionary[string, byte[]]]::new()
    $files['stories260K-Q4_K_M.gguf'] = $modelBytes
    $files['README.md'] = [Text.Encoding]::UTF8.GetBytes('# test model')
    $Hub.AddRepo('test-org/stories-GGUF', $files) | Out-Null
    $gated = [System.Collections.Generic.Dictionary[string, byte[]]]::new()
    $gated['gated-Q4_K_M.gguf'] = $modelBytes
    $Hub.AddRepo('meta/gated-GGUF', $gated, $true, $false, [string[]]@()) | Out-Null
    $script:SavedEnv = @{}
    foreach ($name in 'HF_ENDPOINT', 'HF_HOME', 'HF_HUB_CACHE', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'HF_TOKEN_PATH') {
        $SavedEnv[$name] = [Environment]::GetEnvironmentVariable($name)
        [Environment]::SetEnvironmentVariable($name, $null)
    }
    $env:HF_ENDPOINT = $Hub.Endpoint
    $env:HF_HOME = Join-Path $TestDir "hf-home-$([guid]::NewGuid().ToString('N').Substring(0, 6))"
    Disconnect-HuggingFace
}
AfterAll {
    Disconnect-HuggingFace
    foreach ($name in $SavedEnv.Keys) { [Environment]::SetEnvironmentVariable($name, $SavedEnv[$name]) }
    $Hub.Dispose()
}

Describe 'Signing in to the Hub' {
    AfterEach { Disconnect-HuggingFace; Remove-Item Env:HF_TOKEN -ErrorAction Ignore }

    It 'checks the token with the Hub and returns the account' {
        $user = Connect-HuggingFace -Token $Secret
        $user | Should -BeOfType ([LlmTools.HubUser])
        $user.Name | Should -Be 'alice'
        $user.Organizations | Should -Contain 'test-org'
        $user.TokenRole | Should -Be 'read'
        $user.TokenSource | Should -Be 'Parameter'
        (Get-HuggingFaceUser).TokenSource | Should -Be 'Session'
    }

    It 'takes a SecureString token' {
        (Connect-HuggingFace -Token (ConvertTo-SecureString $Secret -AsPlainText -Force)).Name | Should -Be 'alice'
    }

    It 'uses HF_TOKEN, then the token file, and -Persist writes that file owner-only' {
        { Get-HuggingFaceUser } | Should -Throw -ErrorId 'HubNotSignedIn,LlmTools.Commands.GetHuggingFaceUserCommand'
        Connect-HuggingFace -Token $Secret -Persist | Out-Null
        $tokenFile = Join-Path $env:HF_HOME 'token'
        Get-Content $tokenFile -Raw | Should -Be $Secret
        [IO.File]::GetUnixFileMode($tokenFile) | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite')
        Disconnect-HuggingFace
        (Get-HuggingFaceUser).TokenSource | Should -Be 'TokenFile'
        $env:HF_TOKEN = $Secret
        (Get-HuggingFaceUser).TokenSource | Should -Be 'HF_TOKEN'
        Remove-Item Env:HF_TOKEN
        Disconnect-HuggingFace -Persist -Confirm:$false
        Test-Path $tokenFile | Should -BeFalse
    }

    It 'refuses a bad token with a stable id and says what to do' {
        { Connect-HuggingFace -Token 'hf_revoked' } | Should -Throw -ErrorId 'HubInvalidToken,LlmTools.Commands.ConnectHuggingFaceCommand'
    }

    It 'never writes the token to any stream, error or verbose message' {
        $all = & {
            $VerbosePreference = 'Continue'; $DebugPreference = 'Continue'; $InformationPreference = 'Continue'
            Connect-HuggingFace -Token $Secret -Persist
            Get-HuggingFaceUser | Format-List * | Out-String
            Install-LlmModel 'test-org/stories-GGUF' | Format-List * | Out-String
            Find-LlmModel -Name stories | Format-List * | Out-String
            Invoke-LlmCompletion 'Once' -Model 'test-org/stories-GGUF' -MaxTokens 2 | Format-List * | Out-String
            try { Install-LlmModel 'meta/gated-GGUF' -ErrorAction Stop } catch { $_ | Format-List * -Force | Out-String; $_.Exception | Format-List * -Force | Out-String }
            Disconnect-HuggingFace -Persist -Confirm:$false
        } *>&1 | Out-String
        $all.Length | Should -BeGreaterThan 100
        $all | Should -Not -Match ([regex]::Escape($Secret))
        $Hub.Requests | Where-Object { $_.Server -eq 'cdn' -and $_.HadAuthorization } | Should -BeNullOrEmpty
    }
}

Describe 'Models from the Hub' {
    BeforeEach { Remove-LlmModel -All }

    It 'finds GGUF models and lists a repository''s files' {
        $found = Find-LlmModel -Name stories
        $found.Id | Should -Be 'test-org/stories-GGUF'
        $found | Should -BeOfType ([LlmTools.HubModel])
        $files = $found | Find-LlmModel -Files
        $files.Path | Should -Be 'stories260K-Q4_K_M.gguf'
        $files.Quantization | Should -Be 'Q4_K_M'
        $files.Size | Should -BeGreaterThan 0
    }

    It 'installs into the Hugging Face cache and returns the local model' {
        $info = Install-LlmModel 'test-org/stories-GGUF'
        $info | Should -BeOfType ([LlmTools.LlmModelInfo])
        $info.Path | Should -BeLike (Join-Path $env:HF_HOME 'hub/models--test-org--stories-GGUF/snapshots/*/stories260K-Q4_K_M.gguf')
        (Get-Item $info.Path).LinkTarget | Should -Match '^\.\./\.\./blobs/[0-9a-f]{64}$'
        (Get-LlmModel -ListAvailable).Path | Should -Contain $info.Path
    }

    It 'runs a model by its Hub name, installing on first use, then without network calls' {
        Uninstall-LlmModel 'test-org/stories-GGUF' -Confirm:$false -ErrorAction Ignore
        $r = Invoke-LlmCompletion 'Once upon a time' -Model 'test-org/stories-GGUF' -MaxTokens 8 -Temperature 0
        $r.CompletionTokens | Should -BeGreaterThan 0
        $before = $Hub.Requests.Count
        $again = Invoke-LlmCompletion 'Once upon a time' -Model 'test-org/stories-GGUF:Q4_K_M' -MaxTokens 8 -Temperature 0
        $again.Text | Should -Be $r.Text
        $Hub.Requests.Count | Should -Be $before
    }

    It 'uses a cached model offline, and explains a missing one' {
        Install-LlmModel 'test-org/stories-GGUF' | Out-Null
        $env:HF_HUB_OFFLINE = '1'
        try {
            $before = $Hub.Requests.Count
            (Invoke-LlmCompletion 'Once' -Model 'test-org/stories-GGUF' -MaxTokens 2 -Temperature 0).CompletionTokens | Should -Be 2
            { Invoke-LlmCompletion 'Once' -Model 'test-org/never-GGUF' } | Should -Throw -ErrorId 'HubNotCached,LlmTools.Commands.InvokeLlmCompletionCommand'
            $Hub.Requests.Count | Should -Be $before
        } finally { Remove-Item Env:HF_HUB_OFFLINE }
    }

    It 'says offline that -Update is ignored' {
        Install-LlmModel 'test-org/stories-GGUF' | Out-Null
        $env:HF_HUB_OFFLINE = '1'
        try {
            $info = Install-LlmModel 'test-org/stories-GGUF' -Update -WarningVariable warned -WarningAction SilentlyContinue
            $info.Path | Should -Exist
            "$warned" | Should -Match 'HF_HUB_OFFLINE is set: -Update is ignored'
        } finally { Remove-Item Env:HF_HUB_OFFLINE }
    }

    It 'uninstalls what Get-LlmModel -ListAvailable lists from the Hub cache, piped' {
        $info = Install-LlmModel 'test-org/stories-GGUF'
        $listed = Get-LlmModel -ListAvailable | Where-Object Path -EQ $info.Path
        $listed.HubReference | Should -Match '^test-org/stories-GGUF/stories260K-Q4_K_M\.gguf@[0-9a-f]{40}$'
        $listed | Uninstall-LlmModel -WhatIf
        Test-Path $info.Path | Should -BeTrue
        $listed | Uninstall-LlmModel -Confirm:$false
        Test-Path $info.Path | Should -BeFalse
    }

    It 'explains gated and missing repositories' {
        { Invoke-LlmCompletion 'x' -Model 'meta/gated-GGUF' } | Should -Throw -ErrorId 'HubGatedRepo,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Install-LlmModel 'nobody/missing-GGUF' -ErrorAction Stop } | Should -Throw -ErrorId 'HubRepoNotFound,LlmTools.Commands.InstallLlmModelCommand'
        { Install-LlmModel 'test-org/stories-GGUF:Q8_0' -ErrorAction Stop } | Should -Throw -ErrorId 'HubQuantizationNotFound,LlmTools.Commands.InstallLlmModelCommand'
    }

    It 'uninstalls with -WhatIf doing nothing, then removes the files' {
        $info = Install-LlmModel 'test-org/stories-GGUF'
        $blob = Join-Path (Split-Path $info.Path) (Get-Item $info.Path).LinkTarget
        Uninstall-LlmModel 'test-org/stories-GGUF' -WhatIf
        Test-Path $info.Path | Should -BeTrue
        Uninstall-LlmModel 'test-org/stories-GGUF' -Confirm:$false
        Test-Path $info.Path | Should -BeFalse
        Test-Path $blob | Should -BeFalse
        { Uninstall-LlmModel 'test-org/stories-GGUF' -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'HubModelNotInstalled,LlmTools.Commands.UninstallLlmModelCommand'
    }

    It 'lets two processes download the same file at once without corrupting it' {
        Uninstall-LlmModel 'test-org/stories-GGUF' -Confirm:$false -ErrorAction Ignore
        $Hub.DelayPerChunkMs = 40
        try {
            $gets = { @($Hub.Requests | Where-Object { $_.Server -eq 'cdn' -and $_.Method -eq 'GET' }).Count }
            $before = & $gets
            $script = "Import-Module '$ModulePath/LlmTools.psd1'; (Install-LlmModel 'test-org/stories-GGUF').Path"
            $root = Join-Path $PSScriptRoot '../..'
            $jobs = 1..2 | ForEach-Object {
                $out = Join-Path $TestDir "concurrent-$_-$([guid]::NewGuid().ToString('N').Substring(0, 6)).txt"
                @{ Out = $out; Process = Start-Process dotnet -ArgumentList @('pwsh', '-NoProfile', '-NonInteractive', '-Command', $script) `
                        -WorkingDirectory $root -RedirectStandardOutput $out -PassThru }
            }
            $jobs | ForEach-Object { $_.Process.WaitForExit(120000) | Should -BeTrue }
            $paths = $jobs | ForEach-Object { (Get-Content $_.Out -Raw).Trim() }
            $paths[0] | Should -BeLike '*stories260K-Q4_K_M.gguf'
            $paths[1] | Should -Be $paths[0]
            (& $gets) - $before | Should -Be 1
            [Linq.Enumerable]::SequenceEqual([byte[]][IO.File]::ReadAllBytes($paths[0]), [byte[]]$modelBytes) | Should -BeTrue
        } finally {
            $Hub.DelayPerChunkMs = 0
        }
    }

    It 'completes -Model with models in the Hugging Face cache' {
        Install-LlmModel 'test-org/stories-GGUF' | Out-Null
        $line = 'Invoke-LlmCompletion -Prompt x -Model stories'
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain 'test-org/stories-GGUF:Q4_K_M'
    }

    It 'shows download progress with bytes, speed and time left' {
        Uninstall-LlmModel 'test-org/stories-GGUF' -Confirm:$false -ErrorAction Ignore
        $ps = [powershell]::Create()
        $null = $ps.AddScript("Import-Module '$ModulePath/LlmTools.psd1'; Install-LlmModel 'test-org/stories-GGUF'")
        $null = $ps.Invoke()
        $ps.Streams.Error | Should -BeNullOrEmpty
        $progress = $ps.Streams.Progress | Where-Object Activity -like 'Downloading test-org/stories-GGUF*'
        $progress | Should -Not -BeNullOrEmpty
        ($progress.StatusDescription -join "`n") | Should -Match 'MB, .* MB/s, \d\d:\d\d:\d\d left'
        $ps.Dispose()
    }
}

Describe 'The main job' {
    It 'runs a chat model by its Hub name (against the test server); offline it says so in one line and runs the shipped model' {
        $files = [System.Collections.Generic.Dictionary[string, byte[]]]::new()
        $files['qwen2.5-0.5b-instruct-q4_k_m.gguf'] = [IO.File]::ReadAllBytes($TinyModel)
        $files['qwen2.5-0.5b-instruct-q8_0.gguf'] = [IO.File]::ReadAllBytes($TinyModel)
        $Hub.AddRepo('Qwen/Qwen2.5-0.5B-Instruct-GGUF', $files) | Out-Null
        $job = Join-Path $PSScriptRoot '../../src/LlmTools/Invoke-MainJob.ps1'
        $out = & dotnet pwsh -NoProfile -NonInteractive -File $job -ModulePath $ModulePath -MaxTokens 5 2>&1
        $LASTEXITCODE | Should -Be 0
        ($out -join "`n") | Should -Match 'MaxTokens|EndOfText'
        Test-Path (Join-Path $env:HF_HOME 'hub/models--Qwen--Qwen2.5-0.5B-Instruct-GGUF/refs/main') | Should -BeTrue

        $env:HF_HOME = Join-Path $TestDir 'empty-hf-home'
        $env:HF_ENDPOINT = 'http://127.0.0.1:9'   # nothing listens there
        $errors = Join-Path $TestDir 'main-job-errors.txt'
        try {
            # No -Model: one line says why, then the model shipped with the module writes its story.
            $out = & dotnet pwsh -NoProfile -NonInteractive -File $job -ModulePath $ModulePath -MaxTokens 12 2>$errors
            $LASTEXITCODE | Should -Be 0
            $said = @(Get-Content $errors | Where-Object { $_.Trim() })
            $said | Should -HaveCount 1
            $said[0] | Should -Match '^LlmTools: The Hub at http://127.0.0.1:9 cannot be reached \(.*\); running the model shipped with LlmTools instead \(-Model tinystories'
            ($out -join "`n") | Should -Match 'Once upon a time, there was a little girl named Lily'
            ($out -join "`n") | Should -Match 'MaxTokens\s+5\s+12'

            # An explicit -Model is what the user asked for: no stand-in, one line, exit 1.
            $out = & dotnet pwsh -NoProfile -NonInteractive -File $job -ModulePath $ModulePath -Model Qwen/Qwen2.5-0.5B-Instruct-GGUF 2>&1
            $LASTEXITCODE | Should -Be 1
            @($out | Where-Object { "$_".Trim() }) | Should -HaveCount 1
            "$out" | Should -Match '^LlmTools: The Hub at http://127.0.0.1:9 cannot be reached'
        } finally {
            $env:HF_ENDPOINT = $Hub.Endpoint
        }
    }

    It 'runs the shipped model by its short name, with no Hub at all' {
        $job = Join-Path $PSScriptRoot '../../src/LlmTools/Invoke-MainJob.ps1'
        $env:HF_ENDPOINT = 'http://127.0.0.1:9'
        try {
            $out = & dotnet pwsh -NoProfile -NonInteractive -File $job -ModulePath $ModulePath -Model TinyStories -MaxTokens 12 2>&1
            $LASTEXITCODE | Should -Be 0
            ($out -join "`n") | Should -Match 'Once upon a time, there was a little girl named Lily'
            ($out -join "`n") | Should -Not -Match 'LlmTools:'
        } finally {
            $env:HF_ENDPOINT = $Hub.Endpoint
        }
    }
}

Describe 'Hub settings and answers that are wrong' {
    AfterEach { $env:HF_ENDPOINT = $Hub.Endpoint; $Hub.NotAHub = $false }

    It 'says HF_ENDPOINT is not a URL' {
        $env:HF_ENDPOINT = 'not a url'
        { Install-LlmModel 'test-org/stories-GGUF' -Update -ErrorAction Stop } | Should -Throw -ErrorId 'HubInvalidEndpoint*'
    }

    It 'says a server that answers 404 to everything is not a Hub' {
        $Hub.NotAHub = $true
        { Install-LlmModel 'test-org/stories-GGUF' -Update -ErrorAction Stop } | Should -Throw -ErrorId 'HubEndpointNotAHub*'
    }

    It 'says a token with non-ASCII characters is malformed' {
        { Connect-HuggingFace -Token "hf_t$([char]0xF6)ken" -ErrorAction Stop } | Should -Throw -ErrorId 'HubMalformedToken*'
    }

    It 'refuses a revision with ..' {
        { Install-LlmModel 'test-org/stories-GGUF@../../x' -ErrorAction Stop } | Should -Throw -ErrorId 'HubInvalidRevision*'
        { Uninstall-LlmModel 'test-org/stories-GGUF@../../x' -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'HubInvalidRevision*'
    }
}
