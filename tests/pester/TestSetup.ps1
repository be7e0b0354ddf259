# Shared by every test file: imports the built module and writes the suite's own tiny models.
$script:ModulePath = $env:LLMTOOLS_TEST_MODULE
if (-not $script:ModulePath) { $script:ModulePath = Join-Path $PSScriptRoot '../../out/LlmTools' }
Import-Module (Join-Path $script:ModulePath 'LlmTools.psd1') -Force
$modelsDll = $env:LLMTOOLS_TEST_MODELS_DLL
if (-not $modelsDll) { $modelsDll = Join-Path $PSScriptRoot '../LlmTools.TestModels/bin/Release/net10.0/linux-x64/LlmTools.TestModels.dll' }
Add-Type -Path $modelsDll

$script:TestDir = Join-Path ([IO.Path]::GetTempPath()) "llmtools-pester-$PID"
New-Item -ItemType Directory -Force $script:TestDir | Out-Null

function New-TestModel {
    param([string] $Name = 'tiny.gguf', [scriptblock] $Configure)
    $path = Join-Path $script:TestDir $Name
    $options = [LlmTools.TestModels.TinyModelOptions]::new()
    if ($Configure) { & $Configure $options }
    [LlmTools.TestModels.TinyModel]::Write($path, $options) | Out-Null
    $path
}

$script:TinyModel = Join-Path $script:TestDir 'tiny.gguf'
if (-not (Test-Path $script:TinyModel)) { New-TestModel | Out-Null }

$script:ChatModel = Join-Path $script:TestDir 'tiny-chat.gguf'
if (-not (Test-Path $script:ChatModel)) { [LlmTools.TestModels.TinyChatModel]::Write($script:ChatModel) | Out-Null }

# ../shared/models beside the checkout: present on the developers' machines and in CI, absent in a fresh clone.
$script:SharedModels = Join-Path $PSScriptRoot '../../../shared/models'
$script:HasShared = Test-Path (Join-Path $script:SharedModels 'stories260K.gguf')
# stories260K ships inside the module (-Model tinystories), so the tests that need only it run everywhere.
$script:Stories = Join-Path $script:ModulePath 'models/stories260K.gguf'
