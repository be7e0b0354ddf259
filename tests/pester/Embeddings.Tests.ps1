BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    function Get-Norm([float[]] $v) { [Math]::Sqrt(($v | ForEach-Object { [double]$_ * $_ } | Measure-Object -Sum).Sum) }
    $script:Texts = 1..16 | ForEach-Object { "Story number $_ : the little dog ran $_ times around the park." }
}

Describe 'Get-LlmEmbedding' {
    It 'gives one vector per text, of the model''s embedding length and L2 norm 1, in input order' {
        $e = $Texts[0..4] | Get-LlmEmbedding -Model $Stories
        $e | Should -HaveCount 5
        $e.Text | Should -Be $Texts[0..4]
        $length = (Get-LlmModel -Path $Stories).EmbeddingLength
        foreach ($x in $e) {
            $x | Should -BeOfType LlmTools.LlmEmbedding
            $x.Dimensions | Should -Be $length
            $x.Vector.Length | Should -Be $length
            Get-Norm $x.Vector | Should -BeGreaterThan 0.9999
            Get-Norm $x.Vector | Should -BeLessThan 1.0001
            $x.TokenCount | Should -BeGreaterThan 1
            $x.Pooling | Should -Be 'Mean'
        }
    }

    It 'gives the same vector alone and inside a batch of 16' {
        $batched = $Texts | Get-LlmEmbedding -Model $Stories -BatchSize 16
        foreach ($i in 0, 7, 15) {
            $alone = Get-LlmEmbedding $Texts[$i] -Model $Stories -BatchSize 1
            Measure-LlmSimilarity $alone $batched[$i] | Should -BeGreaterOrEqual 0.9999
        }
    }

    It 'binds the Text property of piped objects' {
        $e = [pscustomobject]@{ Text = 'The cat sat on the mat.' } | Get-LlmEmbedding -Model $TinyModel
        $e.Text | Should -Be 'The cat sat on the mat.'
    }

    It 'fails a text longer than the context, naming both numbers, and goes on with the others' {
        $long = 'word ' * 100
        $out = 'short', $long, 'also short' | Get-LlmEmbedding -Model $TinyModel -ContextSize 32 -ErrorVariable errs -ErrorAction SilentlyContinue
        $out.Text | Should -Be @('short', 'also short')
        $errs | Should -HaveCount 1
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'TextTooLong,*'
        $errs[0].CategoryInfo.Category | Should -Be 'LimitsExceeded'
        $tokens = (Measure-LlmToken $long -Model $TinyModel).Count
        $errs[0].Exception.Message | Should -Match "\b$tokens\b"
        $errs[0].Exception.Message | Should -Match '\b32\b'
    }

    It 'embeds the first ContextSize tokens with -Truncate' {
        $e = Get-LlmEmbedding ('word ' * 100) -Model $TinyModel -ContextSize 32 -Truncate
        $e.TokenCount | Should -Be 32
        $e.Truncated | Should -BeTrue
    }

    It '-Normalize None keeps the model''s scale' {
        $raw = Get-LlmEmbedding 'hello world' -Model $TinyModel -Normalize None
        $raw.Normalize | Should -Be 'None'
        Measure-LlmSimilarity $raw (Get-LlmEmbedding 'hello world' -Model $TinyModel) | Should -BeGreaterOrEqual 0.9999
    }

    It 'refuses Rank pooling on a model without a classifier, before any text' {
        { Get-LlmEmbedding 'x' -Model $TinyModel -Pooling Rank -ErrorAction Stop } | Should -Throw -ErrorId 'RankPoolingNotSupported,*'
    }

    It 'refuses <Name>' -ForEach @(
        @{ Name = '-BatchSize 0'; Script = { Get-LlmEmbedding 'x' -Model $TinyModel -BatchSize 0 }; Id = 'BatchSizeOutOfRange' }
        @{ Name = '-BatchSize 257'; Script = { Get-LlmEmbedding 'x' -Model $TinyModel -BatchSize 257 }; Id = 'BatchSizeOutOfRange' }
        @{ Name = '-ContextSize 4'; Script = { Get-LlmEmbedding 'x' -Model $TinyModel -ContextSize 4 }; Id = 'ContextSizeOutOfRange' }
        @{ Name = '-Threads 0'; Script = { Get-LlmEmbedding 'x' -Model $TinyModel -Threads 0 }; Id = 'ThreadsOutOfRange' }
        @{ Name = 'a missing model'; Script = { Get-LlmEmbedding 'x' -Model (Join-Path $TestDir 'none.gguf') }; Id = 'ModelFileNotFound' }
        @{ Name = 'a vocabulary-only model'; Script = {
                $vocab = [LlmTools.TestModels.TinyModel]::WriteVocabularyOnly((Join-Path $TestDir 'embed-vocab.gguf'))
                Get-LlmEmbedding 'x' -Model $vocab }; Id = 'VocabularyOnlyModel' }
    ) {
        { $ErrorActionPreference = 'Stop'; & $Script } | Should -Throw -ErrorId "$Id,*"
        # The session goes on.
        (Get-LlmEmbedding 'still here' -Model $TinyModel).Dimensions | Should -BeGreaterThan 0
    }
}

Describe 'Measure-LlmSimilarity' {
    It 'ranks a near-duplicate text above an unrelated one' {
        $a = 'The little dog ran to the park to play.'
        $near = Measure-LlmSimilarity $a 'The little dog ran to the park to play!' -Model $Stories
        $far = Measure-LlmSimilarity $a 'Numbers 7 8 9 equals xyz qqq.' -Model $Stories
        $near | Should -BeGreaterThan $far
    }

    It 'takes vectors as arrays, embeddings, or objects with a Vector, and compares each piped value' {
        Measure-LlmSimilarity @(1, 0) @(2, 0) | Should -Be 1
        Measure-LlmSimilarity @(1, 0) @(0, 5) | Should -Be 0
        [math]::Round((Measure-LlmSimilarity @(1, 1) @(-1, -1)), 6) | Should -Be -1
        $e = Get-LlmEmbedding 'The cat sat on the mat.' -Model $TinyModel
        $copy = $e | ConvertTo-Json -Depth 3 | ConvertFrom-Json
        $scores = $copy, $e | Measure-LlmSimilarity $e
        $scores | Should -HaveCount 2
        $scores | ForEach-Object { $_ | Should -BeGreaterOrEqual 0.9999 }
    }

    It 'says what is wrong: <Name>' -ForEach @(
        @{ Name = 'different lengths'; Script = { Measure-LlmSimilarity @(1, 2) @(1, 2, 3) }; Id = 'DimensionMismatch' }
        @{ Name = 'a text without -Model'; Script = { Measure-LlmSimilarity 'a' @(1, 2) }; Id = 'ModelRequired' }
        @{ Name = 'not a vector'; Script = { Measure-LlmSimilarity @{ a = 1 } @(1, 2) }; Id = 'NotAVector' }
    ) {
        { $ErrorActionPreference = 'Stop'; & $Script } | Should -Throw -ErrorId "$Id,*"
    }
}

Describe 'Find-LlmSimilar' {
    It 'returns the top K items with their scores, best first' {
        $docs = 'The little dog ran to the park to play.', 'Numbers 7 8 9 equals xyz qqq.', 'The little dog ran to the park to play!', 'Tom' |
            Get-LlmEmbedding -Model $Stories
        $found = $docs | Find-LlmSimilar $docs[0] -Top 2
        $found | Should -HaveCount 2
        $found[0].Rank | Should -Be 1
        $found[0].Text | Should -Be $docs[0].Text
        $found[0].Score | Should -BeGreaterOrEqual 0.9999
        $found[1].Text | Should -Be 'The little dog ran to the park to play!'
        $found[1].InputObject | Should -Be $docs[2]
        $found[0].Score | Should -BeGreaterOrEqual $found[1].Score
    }

    It 'embeds a text query and text items with -Model' {
        $found = 'The cat sat on the mat.', 'The little dog ran to the park to play!', 'xyz qqq 789' |
            Find-LlmSimilar 'The little dog ran to the park to play.' -Model $Stories -Top 1
        $found.Text | Should -Be 'The little dog ran to the park to play!'
    }

    It 'writes an error for an item that is not a vector and ranks the others' {
        $found = @(@(1, 0), 'x', @(0, 1)) | Find-LlmSimilar @(1, 0) -ErrorVariable errs -ErrorAction SilentlyContinue
        $found | Should -HaveCount 2
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'ModelRequired,*'
    }

    It 'refuses -Top 0' {
        { @(1) | Find-LlmSimilar @(1) -Top 0 -ErrorAction Stop } | Should -Throw -ErrorId 'TopOutOfRange,*'
    }
}

Describe 'Find-LlmSimilar with objects read back' {
    It 'finds embeddings saved as JSON and read back, and names their Text' {
        $saved = 'The cat sat on the mat.', 'A dog.' | Get-LlmEmbedding -Model $TinyModel | ConvertTo-Json -Depth 3 | ConvertFrom-Json
        $found = $saved | Find-LlmSimilar 'A dog.' -Model $TinyModel -Top 1
        $found.Text | Should -Be 'A dog.'
        $found.Score | Should -BeGreaterOrEqual 0.9999
    }
}
