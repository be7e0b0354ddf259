BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    $script:Manifest = Import-PowerShellDataFile (Join-Path $ModulePath 'LlmTools.psd1')
    # build.ps1 -Task Package (and -Task Test) writes it beside the module folder.
    $script:Package = Join-Path (Split-Path $ModulePath) "LlmTools.$($Manifest.ModuleVersion).nupkg"

    # A new pwsh whose HOME is a folder of this test: its own PSResourceGet repositories and user module folder.
    $script:UserHome = Join-Path $TestDir "package-home-$([guid]::NewGuid().ToString('N').Substring(0, 6))"
    New-Item -ItemType Directory -Force $UserHome | Out-Null
    function Invoke-NewPwsh([string] $Script) {
        $start = [System.Diagnostics.ProcessStartInfo]::new('dotnet')
        foreach ($a in @((Join-Path $PSHOME 'pwsh.dll'), '-NoProfile', '-NonInteractive', '-Command', $Script)) { $start.ArgumentList.Add($a) }
        $start.Environment['HOME'] = $UserHome
        # Nothing may lead it back to this user's folders or this module's build output.
        foreach ($v in 'PSModulePath', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'XDG_CACHE_HOME', 'LLMTOOLS_MODEL_PATH', 'HF_HOME', 'HF_HUB_CACHE') { [void]$start.Environment.Remove($v) }
        $start.Environment['HF_HUB_OFFLINE'] = '1'
        $start.RedirectStandardOutput = $true
        $start.RedirectStandardError = $true
        $process = [System.Diagnostics.Process]::Start($start)
        $stdout = $process.StandardOutput.ReadToEndAsync()
        $stderr = $process.StandardError.ReadToEnd()
        $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; Out = @($stdout.Result -split "`r?`n" | Where-Object { $_ }); Err = $stderr }
    }
}

Describe 'The package' {
    It 'is written by build.ps1 -Task Package' {
        Test-Path $Package | Should -BeTrue -Because "build.ps1 -Task Package (or -Task Test) writes $Package"
    }

    It 'installs with PSResourceGet from a folder repository, and Import-Module LlmTools by name works in a new pwsh' {
        $repository = Join-Path $UserHome 'repository'
        New-Item -ItemType Directory -Force $repository | Out-Null
        Copy-Item $Package $repository
        # What a user types (the folder first, so no other repository is asked).
        $install = Invoke-NewPwsh @"
`$ErrorActionPreference = 'Stop'
Register-PSResourceRepository -Name LlmToolsFolder -Uri '$repository' -Trusted -Priority 1
Install-PSResource LlmTools
(Get-InstalledPSResource LlmTools).Version.ToString()
"@
        $install.Err | Should -BeNullOrEmpty
        $install.ExitCode | Should -Be 0
        $install.Out[-1] | Should -Be $Manifest.ModuleVersion
        $userModules = Join-Path $UserHome '.local/share/powershell/Modules'
        Test-Path (Join-Path $userModules "LlmTools/$($Manifest.ModuleVersion)/LlmTools.psd1") | Should -BeTrue

        $use = Invoke-NewPwsh @"
`$ErrorActionPreference = 'Stop'
Import-Module LlmTools
'base=' + (Get-Module LlmTools).ModuleBase
`$line = 'Invoke-LlmCompletion -Prompt x -Model tinys'
'completion=' + ((TabExpansion2 -inputScript `$line -cursorColumn `$line.Length).CompletionMatches.CompletionText -join ',')
'text=' + (Invoke-LlmCompletion 'Once upon a time' -Model tinystories -MaxTokens 11 -Temperature 0 -RepeatPenalty 1).Text
'about=' + ((Get-Help about_LlmTools | Out-String) -match 'tinystories')
"@
        $use.Err | Should -BeNullOrEmpty
        $use.ExitCode | Should -Be 0
        $use.Out | Should -Contain "base=$(Join-Path $userModules "LlmTools/$($Manifest.ModuleVersion)")"
        $use.Out | Should -Contain 'completion=tinystories'
        $use.Out | Should -Contain 'text=, there was a little girl named Lily.'
        $use.Out | Should -Contain 'about=True'
    }
}

Describe 'The manifest' {
    It 'has what the PowerShell Gallery shows' {
        $Manifest.Description.Length | Should -BeGreaterThan 100
        $Manifest.Author | Should -Not -BeNullOrEmpty
        $Manifest.CompatiblePSEditions | Should -Be @('Core')
        $Manifest.PrivateData.PSData.Tags | Should -Contain 'GGUF'
        $Manifest.PrivateData.PSData.Tags | Where-Object { $_ -match '\s' } | Should -BeNullOrEmpty -Because 'a tag has no spaces'
        $Manifest.PrivateData.PSData.LicenseUri | Should -Match '^https://'
        $Manifest.PrivateData.PSData.ReleaseNotes | Should -Match "^$([regex]::Escape($Manifest.ModuleVersion))"
    }

    It 'exports by explicit lists, no wildcards' {
        foreach ($key in 'CmdletsToExport', 'FunctionsToExport', 'AliasesToExport', 'VariablesToExport') {
            $Manifest.ContainsKey($key) | Should -BeTrue -Because "$key should be listed"
            @($Manifest[$key]) -join ',' | Should -Not -Match '\*'
        }
        @($Manifest.CmdletsToExport).Count | Should -Be @(Get-Command -Module LlmTools -CommandType Cmdlet).Count
    }

    It 'passes Test-ModuleManifest in the built module' {
        $m = Test-ModuleManifest (Join-Path $ModulePath 'LlmTools.psd1')
        $m.Version.ToString() | Should -Be $Manifest.ModuleVersion
    }

    It 'has an about topic: Get-Help about_LlmTools' {
        $about = Get-Help about_LlmTools | Out-String
        $about | Should -Match 'about_LlmTools'
        $about | Should -Match '-Model tinystories'
    }
}
