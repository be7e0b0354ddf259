BeforeDiscovery {
    $HasShared = Test-Path (Join-Path $PSScriptRoot '../../../shared/models/stories260K.gguf')
}
BeforeAll { . $PSScriptRoot/TestSetup.ps1 }

Describe 'Get-LlmModel' {
    BeforeEach { Remove-LlmModel -All }

    It 'reads a file''s metadata without loading it, and tells whether it is a chat model' {
        $chat = New-TestModel -Name 'chat.gguf' -Configure { param($o) $o.ChatTemplate = '{% for m in messages %}{{ m.content }}{% endfor %}' }
        $info = Get-LlmModel -Path $TinyModel, $chat
        $info | Should -HaveCount 2
        $info[0] | Should -BeOfType ([LlmTools.LlmModelInfo])
        $info[0].HasChatTemplate | Should -BeFalse
        $info[1].HasChatTemplate | Should -BeTrue
        $info[1].ChatTemplate | Should -Be '{% for m in messages %}{{ m.content }}{% endfor %}'
        $info[0].Architecture | Should -Be 'llama'
        $info[0].ContextLength | Should -Be 512
        $info[0].FileType | Should -Be 'F32'
        $info[0].ParameterCount | Should -BeGreaterThan 0
        Get-LlmModel | Should -BeNullOrEmpty
    }

    It 'reads every GGUF in a folder' {
        $dir = Join-Path $TestDir 'folder'
        New-Item -ItemType Directory -Force $dir | Out-Null
        Copy-Item $TinyModel (Join-Path $dir 'a.gguf')
        Copy-Item $TinyModel (Join-Path $dir 'b.gguf')
        (Get-LlmModel -Path $dir).Path | Split-Path -Leaf | Should -Be @('a.gguf', 'b.gguf')
    }

    It 'lists the models on disk with -ListAvailable (LLMTOOLS_MODEL_PATH and the Hugging Face cache)' {
        $dir = Join-Path $TestDir 'available'
        $hub = Join-Path $TestDir 'hf/hub/models--org--tiny-GGUF/snapshots/abc123'
        New-Item -ItemType Directory -Force $dir, $hub | Out-Null
        Copy-Item $TinyModel (Join-Path $dir 'listed.gguf')
        Copy-Item $TinyModel (Join-Path $hub 'tiny-Q8_0.gguf')
        $env:LLMTOOLS_MODEL_PATH = $dir
        $env:HF_HUB_CACHE = Join-Path $TestDir 'hf/hub'
        try {
            $found = (Get-LlmModel -ListAvailable).Path
            $found | Should -Contain (Join-Path $dir 'listed.gguf')
            $found | Should -Contain (Join-Path $hub 'tiny-Q8_0.gguf')
            (Get-LlmModel -ListAvailable -Name 'listed*').Path | Should -Be (Join-Path $dir 'listed.gguf')
        } finally {
            Remove-Item Env:LLMTOOLS_MODEL_PATH, Env:HF_HUB_CACHE
        }
    }

    It 'lists the loaded models with their load facts' {
        Invoke-LlmCompletion 'hi' -Model $TinyModel -MaxTokens 1 | Out-Null
        $m = Get-LlmModel
        $m | Should -HaveCount 1
        $m.Path | Should -Be $TinyModel
        $m.Contexts | Should -Be 1
        $m.LoadDuration | Should -BeGreaterThan ([timespan]::Zero)
        $m.GpuLayers | Should -Be 0
    }

    It 'describes stories260K' {
        $info = Get-LlmModel -Path $Stories
        $info.ParameterCount | Should -Be 292800
        $info.LayerCount | Should -Be 5
        $info.VocabularySize | Should -Be 512
        $info.HasChatTemplate | Should -BeFalse
    }
}

Describe 'The model shipped with the module (tinystories)' {
    BeforeAll { Remove-LlmModel -All }
    AfterAll { Remove-LlmModel -All }

    It 'is listed first by Get-LlmModel -ListAvailable, by its short name, and found by it' {
        $first = Get-LlmModel -ListAvailable | Select-Object -First 1
        $first.Name | Should -Be 'tinystories'
        $first.Path | Should -Be (Join-Path $ModulePath 'models/stories260K.gguf')
        $first.ParameterCount | Should -Be 292800
        (Get-LlmModel -ListAvailable -Name 'TINY*').Path | Should -Be $first.Path
        Test-Path (Join-Path $ModulePath 'models/LICENSE') | Should -BeTrue
    }

    It 'is what -Model <_> names, with no network' -ForEach @('tinystories', 'TinyStories') {
        $env:HF_HUB_OFFLINE = '1'
        try {
            $r = Invoke-LlmCompletion 'Once upon a time' -Model $_ -MaxTokens 11 -Temperature 0 -RepeatPenalty 1
            $r.Text | Should -Be ', there was a little girl named Lily.'
            $r.ModelPath | Should -Be (Join-Path $ModulePath 'models/stories260K.gguf')
            (Measure-LlmToken 'Once upon a time' -Model $_).Count | Should -Be 5
        } finally {
            Remove-Item Env:HF_HUB_OFFLINE
        }
        Remove-LlmModel -Model $_
        Get-LlmModel | Should -BeNullOrEmpty
    }

    It 'is offered when -Model is completed' {
        $line = 'Invoke-LlmCompletion -Prompt x -Model tiny'
        $completions = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches
        $completions.CompletionText | Should -Contain 'tinystories'
    }
}

Describe 'Import-LlmModel and Remove-LlmModel' {
    BeforeEach { Remove-LlmModel -All }

    It 'loads weights and a context now, so the next call pays no load' {
        $loaded = Import-LlmModel -Model $TinyModel -ContextSize 256
        $loaded | Should -BeOfType ([LlmTools.LlmLoadedModel])
        $loaded.Contexts | Should -Be 1
        $r = Invoke-LlmCompletion 'Once' -Model $TinyModel -ContextSize 256 -MaxTokens 2
        $r.LoadDuration | Should -Be ([timespan]::Zero)
        (Get-LlmModel).Contexts | Should -Be 1
    }

    It 'unloads with -WhatIf doing nothing, and leaves the file alone' {
        Import-LlmModel -Model $TinyModel | Out-Null
        Remove-LlmModel -Model $TinyModel -WhatIf
        @(Get-LlmModel) | Should -HaveCount 1
        Get-LlmModel | Remove-LlmModel
        Get-LlmModel | Should -BeNullOrEmpty
        Test-Path $TinyModel | Should -BeTrue
        (Invoke-LlmCompletion 'Once' -Model $TinyModel -MaxTokens 1).LoadDuration | Should -BeGreaterThan ([timespan]::Zero)
    }

    It 'says when a model is not loaded' {
        { Remove-LlmModel -Model $TinyModel -ErrorAction Stop } | Should -Throw -ErrorId 'ModelNotLoaded,LlmTools.Commands.RemoveLlmModelCommand'
    }
}

Describe 'Measure-LlmToken' {
    It 'counts tokens with ids and pieces, BOS included as generation sees it' {
        $t = Measure-LlmToken -Text 'the little girl' -Model $TinyModel
        $t | Should -BeOfType ([LlmTools.LlmTokenization])
        $t.Count | Should -Be $t.Ids.Count
        $t.Ids[0] | Should -Be 1
        (($t.Pieces[1..($t.Count - 1)] -join '') -replace [char]0x2581, ' ').Trim() | Should -Be 'the little girl'
        (Measure-LlmToken -Text 'the little girl' -Model $TinyModel -NoSpecialTokens).Count | Should -Be ($t.Count - 1)
        $t.ContextLength | Should -Be 512
    }

    It 'takes text from the pipeline' {
        $counts = 'a', 'the dog', 'the little dog' | Measure-LlmToken -Model $TinyModel | ForEach-Object Count
        $counts | Should -Be @(2, 3, 4)
    }

    It 'matches llama.cpp''s test vectors on real tokenizers' -Skip:(-not $HasShared) {
        (Measure-LlmToken 'Hello world, this is a test.' -Model (Join-Path $SharedModels 'vocab/ggml-vocab-gpt-2.gguf') -NoSpecialTokens).Ids |
            Should -Be @(15496, 995, 11, 428, 318, 257, 1332, 13)
    }
}

Describe 'Hostile model files' {
    It 'lists the good files of a folder and one error for a bad one (a string head_count list used to stop the listing)' {
        $dir = Join-Path $TestDir "mixed-$([guid]::NewGuid().ToString('N').Substring(0, 6))"
        New-Item -ItemType Directory -Force $dir | Out-Null
        Copy-Item $TinyModel (Join-Path $dir 'a-good.gguf')
        Copy-Item $TinyModel (Join-Path $dir 'c-good.gguf')
        $bad = New-TestModel -Name 'b-bad.gguf' -Configure { param($o) $o.Overrides['llama.attention.head_count'] = [string[]]@('four', 'four') }
        Move-Item $bad (Join-Path $dir 'b-bad.gguf')
        $env:LLMTOOLS_MODEL_PATH = $dir
        try {
            $found = Get-LlmModel -ListAvailable -ErrorVariable errs -ErrorAction SilentlyContinue |
                Where-Object { $_.Path.StartsWith($dir) }
            ($found.Path | Split-Path -Leaf) | Should -Be @('a-good.gguf', 'c-good.gguf')
            $mine = @($errs | Where-Object { "$($_.TargetObject)".StartsWith($dir) })
            $mine | Should -HaveCount 1
            $mine[0].FullyQualifiedErrorId | Should -BeLike 'InvalidGgufFile,*'
        } finally {
            Remove-Item Env:LLMTOOLS_MODEL_PATH
        }
    }

    It 'refuses a FIFO named *.gguf at once instead of hanging' -Skip:($IsWindows) {
        $fifo = Join-Path $TestDir "pipe-$([guid]::NewGuid().ToString('N').Substring(0, 6)).gguf"
        & mkfifo $fifo
        Get-LlmModel -Path $fifo -ErrorVariable errs -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'ModelPathNotRegularFile,*'
        { Invoke-LlmCompletion -Model $fifo -Prompt 'x' -MaxTokens 1 -ErrorAction Stop } |
            Should -Throw -ErrorId 'ModelPathNotRegularFile*'
    }
}
