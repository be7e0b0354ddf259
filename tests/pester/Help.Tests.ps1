# Help that answers: every cmdlet the module exports, every parameter, its default and its accepted values, and an
# example, are in Get-Help (the MAML written by src/LlmTools/New-MamlHelp.ps1 from the doc comments).
BeforeDiscovery {
    . $PSScriptRoot/TestSetup.ps1
    $cmdlets = @(Get-Command -Module LlmTools -CommandType Cmdlet | Sort-Object Name | ForEach-Object { @{ Name = $_.Name } })
}
BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    $script:NotListed = [System.Management.Automation.Cmdlet]::CommonParameters + 'UseTransaction'
}

Describe 'Get-Help <Name>' -ForEach $cmdlets {
    BeforeAll {
        $script:Command = Get-Command $Name
        $script:Help = Get-Help $Name -Full
        $script:HelpParameters = @{}
        foreach ($p in @($Help.parameters.parameter | Where-Object { $_ })) { $HelpParameters[$p.name] = $p }
        # A fresh instance holds the property initialisers: the defaults the help must show.
        $script:Instance = [Activator]::CreateInstance($Command.ImplementingType)
    }

    It 'has a synopsis, a description and an example that uses it' {
        $Help.Synopsis | Should -Not -BeNullOrEmpty
        $Help.Synopsis | Should -Not -Match '^\s*\w+-\w+\s*\[' -Because 'a real synopsis, not the generated syntax'
        ($Help.description.Text -join '') | Should -Not -BeNullOrEmpty
        $examples = @($Help.examples.example | Where-Object { $_ })
        $examples.Count | Should -BeGreaterThan 0
        foreach ($e in $examples) {
            $e.code | Should -Match ([regex]::Escape($Name)) -Because 'an example shows the cmdlet itself'
            ($e.remarks.Text -join '') | Should -Not -BeNullOrEmpty -Because 'an example says what it does'
        }
    }

    It 'lists every parameter, with a description and a default' {
        $expected = @($Command.Parameters.Keys | Where-Object { $_ -notin $NotListed })
        if ($Command.ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $true).SupportsShouldProcess) {
            $expected | Should -Contain 'WhatIf'
            $expected | Should -Contain 'Confirm'
        }
        foreach ($name in $expected) {
            $HelpParameters.ContainsKey($name) | Should -BeTrue -Because "-$name is a parameter of $Name"
            $p = $HelpParameters[$name]
            ($p.description.Text -join '') | Should -Not -BeNullOrEmpty -Because "-$name needs a description"
            "$($p.defaultValue)" | Should -Not -BeNullOrEmpty -Because "-$name needs a default value (None when it has none)"
        }
        @($HelpParameters.Keys | Where-Object { $_ -notin $expected }) | Should -BeNullOrEmpty -Because 'help lists no parameter the cmdlet lacks'
    }

    It 'shows the defaults the code sets and the docs state' {
        foreach ($name in $HelpParameters.Keys) {
            $p = $HelpParameters[$name]
            $metadata = $Command.Parameters[$name]
            if ($p.required -eq 'true') { continue }
            $description = $p.description.Text -join ''
            if ($metadata.ParameterType -eq [System.Management.Automation.SwitchParameter]) {
                $p.defaultValue | Should -Be 'False' -Because "-$name is a switch"
                continue
            }
            if ($description -match '(?i)\bdefault\b') {
                $p.defaultValue | Should -Not -Be 'None' -Because "the description of -$name states a default: '$description'"
            }
            $property = $Command.ImplementingType.GetProperty($name)
            $value = $property ? $property.GetValue($Instance) : $null
            $meaningful = $null -ne $value -and $(
                if ($value -is [string]) { $value -ne '' }
                elseif ($value -is [array]) { $value.Count -gt 0 }
                elseif ($value -is [ValueType]) { $value -ne [Activator]::CreateInstance($value.GetType()) }
                else { $false })
            if ($meaningful -and $description -notmatch '(?i)\bdefault\b') {
                $text = [System.Convert]::ToString($value, [Globalization.CultureInfo]::InvariantCulture)
                $p.defaultValue | Should -Be $text -Because "-$name is initialised to $text"
            }
        }
    }

    It 'lists the accepted values of every closed set' {
        foreach ($name in $HelpParameters.Keys) {
            $set = $Command.Parameters[$name].Attributes | Where-Object { $_ -is [System.Management.Automation.ValidateSetAttribute] }
            if (-not $set) { continue }
            $listed = @($HelpParameters[$name].parameterValueGroup.parameterValue)
            $listed | Should -Be @($set.ValidValues) -Because "-$name accepts only these"
        }
    }
}

Describe 'Help for what users asked about' {
    BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

    It '<_> lists -WhatIf and -Confirm' -ForEach @('Remove-LlmModel', 'Uninstall-LlmModel', 'Disconnect-HuggingFace') {
        $names = @((Get-Help $_ -Full).parameters.parameter.name)
        $names | Should -Contain 'WhatIf'
        $names | Should -Contain 'Confirm'
        (Get-Help $_ | Out-String) | Should -Match '\[-WhatIf\] \[-Confirm\]'
    }

    It 'Find-LlmModel shows -Sort''s values and default, and -First''s default' {
        $sort = Get-Help Find-LlmModel -Parameter Sort
        $sort.defaultValue | Should -Be 'downloads'
        @($sort.parameterValueGroup.parameterValue) | Should -Be @('downloads', 'likes', 'modified')
        (Get-Help Find-LlmModel -Parameter First).defaultValue | Should -Be '20'
        (Get-Help Find-LlmModel | Out-String -Width 200) | Should -Match '\[-Sort \{downloads \| likes \| modified\}\]'
    }

    It 'states the defaults the doc comments give in words' {
        (Get-Help Invoke-LlmCompletion -Parameter ContextSize).defaultValue | Should -Be 'min(trained length, 4096)'
        (Get-Help Invoke-LlmCompletion -Parameter MaxTokens).defaultValue | Should -Be '256'
        (Get-Help Invoke-LlmCompletion -Parameter Temperature).defaultValue | Should -Be '0.8'
    }
}
