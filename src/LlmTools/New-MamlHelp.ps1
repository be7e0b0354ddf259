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

$common = [System.Management.Automation.Cmdlet]::CommonParameters + [System.Management.Automation.Cmdlet]::OptionalCommonParameters
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
        $prop = $type.GetProperty($name)
        $owner = $prop.DeclaringType.FullName
        Get-Text $members["P:$owner.$name"]?.SelectSingleNode('summary')
    }
    [void]$sb.AppendLine('<command:syntax>')
    foreach ($set in $cmd.ParameterSets) {
        [void]$sb.AppendLine("<command:syntaxItem><maml:name>$($cmd.Name)</maml:name>")
        foreach ($p in $set.Parameters | Where-Object Name -notin $common) {
            $pos = if ($p.Position -ge 0) { $p.Position } else { 'named' }
            [void]$sb.AppendLine("<command:parameter required=`"$($p.IsMandatory.ToString().ToLower())`" position=`"$pos`"><maml:name>$($p.Name)</maml:name>" +
                $(if ($p.ParameterType -ne [System.Management.Automation.SwitchParameter]) { "<command:parameterValue required=`"true`">$($p.ParameterType.Name)</command:parameterValue>" }) + '</command:parameter>')
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
        [void]$sb.AppendLine("<command:parameter required=`"$required`" globbing=`"false`" pipelineInput=`"$pipelineText`" position=`"$position`" aliases=`"$($p.Aliases -join ', ')`"><maml:name>$($p.Name)</maml:name><maml:description><maml:para>$(Esc $description)</maml:para></maml:description><command:parameterValue required=`"true`">$($p.ParameterType.Name)</command:parameterValue><dev:type><maml:name>$($p.ParameterType.FullName)</maml:name></dev:type></command:parameter>")
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
