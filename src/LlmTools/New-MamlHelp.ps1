#requires -Version 7.6
<#
.SYNOPSIS
    Writes the module's MAML help (en-US/LlmTools.dll-Help.xml) from the cmdlets' C# XML documentation and their
    parameter metadata, so the help has one source: the doc comments beside the code.
#>
param(
    [Parameter(Mandatory)] [string] $ModuleDir,
    [Parameter(Mandatory)] [string] $DocumentationFile
)
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $ModuleDir 'LlmTools.psd1') -Force
$doc = [xml](Get-Content $DocumentationFile -Raw)
$members = @{}
foreach ($m in $doc.doc.members.member) { $members[$m.name] = $m }

function Get-Text($node) {
    if (-not $node) { return '' }
    $text = if ($node -is [string]) { $node } else { $node.InnerXml }
    $text = $text -replace '<see cref="[A-Z]:([\w.]+\.)?(\w+)"\s*/>', '$2' -replace '<[^>]+>', ''
    ([System.Net.WebUtility]::HtmlDecode($text) -replace '\s+', ' ').Trim()
}
function Esc([string] $s) { [System.Security.SecurityElement]::Escape($s) }

# The common parameters are described by about_CommonParameters; -WhatIf and -Confirm (present only on cmdlets that
# support ShouldProcess) are listed like any other parameter, as PowerShell's own help does.
$common = [System.Management.Automation.Cmdlet]::CommonParameters + 'UseTransaction'
$shouldProcessText = @{
    WhatIf  = 'Shows what the cmdlet would do without doing it.'
    Confirm = 'Asks for confirmation before the cmdlet acts.'
}

# The default a parameter's doc comment states ("default 8", "Default: HF_TOKEN, then the token file"), or null.
function Get-DocDefault([string] $text) {
    if ($text -notmatch '(?i)\bdefault\b(?:s? to| is|:)?\s*(.+?)(?=[.;]\s|[.;)]*$)') { return $null }
    $value = $Matches[1].Trim()
    # "default min(trained length, 4096)." stops before its closing parenthesis: give it back.
    $open = ($value.ToCharArray() | Where-Object { $_ -eq '(' }).Count - ($value.ToCharArray() | Where-Object { $_ -eq ')' }).Count
    if ($open -gt 0) { $value += ')' * $open }
    if ($value) { $value } else { $null }
}

# The value a property is initialised to, when it says something (not null, 0, '' or an empty array).
function Get-InitialValue($instance, [string] $name) {
    if ($null -eq $instance) { return $null }
    $property = $instance.GetType().GetProperty($name)
    if (-not $property) { return $null }
    $value = $property.GetValue($instance)
    if ($null -eq $value -or $value -is [System.Management.Automation.SwitchParameter]) { return $null }
    if ($value -is [string]) { return $(if ($value) { $value } else { $null }) }
    if ($value -is [array]) { return $(if ($value.Count) { $value -join ', ' } else { $null }) }
    if ($value -is [enum]) { return $value.ToString() }
    if ($value -is [ValueType] -and $value -eq [Activator]::CreateInstance($value.GetType())) { return $null }
    [System.Convert]::ToString($value, [Globalization.CultureInfo]::InvariantCulture)
}

# What Get-Help shows as the default: the initialiser when the doc agrees (or says nothing), else the doc's words
# (a sentinel such as GpuLayers = -1 means "decided later", which the doc explains); switches are False.
function Get-DefaultValue($parameter, $instance, [string] $description) {
    if ($parameter.ParameterType -eq [System.Management.Automation.SwitchParameter]) { return 'False' }
    $initial = Get-InitialValue $instance $parameter.Name
    $doc = Get-DocDefault $description
    if ($null -ne $initial -and ($null -eq $doc -or $doc.StartsWith($initial, [StringComparison]::OrdinalIgnoreCase))) { return $initial }
    if ($doc) { return $doc }
    'None'
}

# The values a parameter accepts when they are a closed set: [ValidateSet] or an enum.
function Get-AllowedValues($parameter) {
    $set = $parameter.Attributes | Where-Object { $_ -is [System.Management.Automation.ValidateSetAttribute] } | Select-Object -First 1
    if ($set) { return @($set.ValidValues) }
    $type = $parameter.ParameterType
    if ($type.IsArray) { $type = $type.GetElementType() }
    $type = [Nullable]::GetUnderlyingType($type) ?? $type
    if ($type.IsEnum) { return [enum]::GetNames($type) }
    @()
}

function Get-ValueGroup($parameter) {
    $values = Get-AllowedValues $parameter
    if (-not $values) { return '' }
    '<command:parameterValueGroup>' + (($values | ForEach-Object { "<command:parameterValue required=`"false`" variableLength=`"false`">$(Esc $_)</command:parameterValue>" }) -join '') + '</command:parameterValueGroup>'
}
$sb = [System.Text.StringBuilder]::new()
[void]$sb.AppendLine('<?xml version="1.0" encoding="utf-8"?>')
[void]$sb.AppendLine('<helpItems schema="maml" xmlns="http://msh">')
foreach ($cmd in Get-Command -Module LlmTools -CommandType Cmdlet | Sort-Object Name) {
    $type = $cmd.ImplementingType
    $typeDoc = $members["T:$($type.FullName)"]
    $summary = Get-Text $typeDoc.SelectSingleNode('summary')
    $synopsis = ($summary -split '(?<=\.)\s', 2)[0]
    [void]$sb.AppendLine('<command:command xmlns:maml="http://schemas.microsoft.com/maml/2004/10" xmlns:command="http://schemas.microsoft.com/maml/dev/command/2004/10" xmlns:dev="http://schemas.microsoft.com/maml/dev/2004/10">')
    [void]$sb.AppendLine("<command:details><command:name>$($cmd.Name)</command:name><maml:description><maml:para>$(Esc $synopsis)</maml:para></maml:description><command:verb>$($cmd.Verb)</command:verb><command:noun>$($cmd.Noun)</command:noun></command:details>")
    [void]$sb.AppendLine("<maml:description><maml:para>$(Esc $summary)</maml:para>")
    if ($typeDoc.SelectSingleNode('remarks')) {
        foreach ($p in $typeDoc.SelectNodes('remarks/para')) { [void]$sb.AppendLine("<maml:para>$(Esc (Get-Text $p))</maml:para>") }
    }
    [void]$sb.AppendLine('</maml:description>')

    $paramDoc = {
        param($name)
        if ($shouldProcessText.ContainsKey($name)) { return $shouldProcessText[$name] }
        $prop = $type.GetProperty($name)
        $owner = $prop.DeclaringType.FullName
        Get-Text $members["P:$owner.$name"]?.SelectSingleNode('summary')
    }
    # A fresh instance holds the property initialisers: the defaults.
    $instance = try { [Activator]::CreateInstance($type) } catch { $null }
    [void]$sb.AppendLine('<command:syntax>')
    foreach ($set in $cmd.ParameterSets) {
        [void]$sb.AppendLine("<command:syntaxItem><maml:name>$($cmd.Name)</maml:name>")
        foreach ($p in $set.Parameters | Where-Object Name -notin $common) {
            $pos = if ($p.Position -ge 0) { $p.Position } else { 'named' }
            [void]$sb.AppendLine("<command:parameter required=`"$($p.IsMandatory.ToString().ToLower())`" position=`"$pos`"><maml:name>$($p.Name)</maml:name>" +
                $(if ($p.ParameterType -ne [System.Management.Automation.SwitchParameter]) { (Get-ValueGroup $p) + "<command:parameterValue required=`"true`">$($p.ParameterType.Name)</command:parameterValue>" }) + '</command:parameter>')
        }
        [void]$sb.AppendLine('</command:syntaxItem>')
    }
    [void]$sb.AppendLine('</command:syntax><command:parameters>')
    foreach ($p in $cmd.Parameters.Values | Where-Object Name -notin $common | Sort-Object Name) {
        $attrs = $p.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] }
        $pipeline = @(if ($attrs.ValueFromPipeline -contains $true) { 'ByValue' }; if ($attrs.ValueFromPipelineByPropertyName -contains $true) { 'ByPropertyName' })
        $pipelineText = if ($pipeline) { "True ($($pipeline -join ', '))" } else { 'False' }
        $required = ($attrs.Mandatory -contains $true).ToString().ToLower()
        $position = ($attrs | Where-Object Position -ge 0 | Select-Object -First 1).Position
        if ($null -eq $position) { $position = 'named' }
        $description = & $paramDoc $p.Name
        $default = if ($required -eq 'true') { 'None' } else { Get-DefaultValue $p $instance $description }
        $globbing = ($p.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] }) ? 'true' : 'false'
        $allowed = Get-AllowedValues $p
        if ($allowed) { $description += " Accepted values: $($allowed -join ', ')." }
        [void]$sb.AppendLine("<command:parameter required=`"$required`" globbing=`"$globbing`" pipelineInput=`"$pipelineText`" position=`"$position`" aliases=`"$($p.Aliases -join ', ')`"><maml:name>$($p.Name)</maml:name><maml:description><maml:para>$(Esc $description)</maml:para></maml:description>$(Get-ValueGroup $p)<command:parameterValue required=`"true`">$($p.ParameterType.Name)</command:parameterValue><dev:type><maml:name>$($p.ParameterType.FullName)</maml:name></dev:type><dev:defaultValue>$(Esc $default)</dev:defaultValue></command:parameter>")
    }
    [void]$sb.AppendLine('</command:parameters><command:returnValues>')
    foreach ($o in $cmd.OutputType) {
        [void]$sb.AppendLine("<command:returnValue><dev:type><maml:name>$($o.Name)</maml:name></dev:type></command:returnValue>")
    }
    [void]$sb.AppendLine('</command:returnValues><command:examples>')
    $n = 0
    foreach ($ex in $typeDoc.SelectNodes('example')) {
        $n++
        $code = $ex.SelectSingleNode('code').InnerText.Trim()
        [void]$sb.AppendLine("<command:example><maml:title>--------- Example $n ---------</maml:title><dev:code>$(Esc $code)</dev:code><dev:remarks><maml:para>$(Esc (Get-Text $ex.SelectSingleNode('para')))</maml:para></dev:remarks></command:example>")
    }
    [void]$sb.AppendLine('</command:examples></command:command>')
}
[void]$sb.AppendLine('</helpItems>')
$target = Join-Path $ModuleDir 'en-US'
New-Item -ItemType Directory -Force $target | Out-Null
Set-Content (Join-Path $target 'LlmTools.dll-Help.xml') $sb.ToString() -Encoding utf8
