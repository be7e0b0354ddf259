BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    # Runs a script in its own [PowerShell] on this runspace's module, so a test can Stop() it as Ctrl+C does.
    function Start-Background([scriptblock] $Script, [object[]] $ArgumentList) {
        $ps = [PowerShell]::Create()
        $ps.AddScript("Import-Module '$(Join-Path $ModulePath 'LlmTools.psd1')'").AddStatement().AddScript($Script.ToString()) | Out-Null
        foreach ($a in $ArgumentList) { $ps.AddArgument($a) | Out-Null }
        [pscustomobject]@{ PowerShell = $ps; Handle = $ps.BeginInvoke() }
    }
}

# The same -Endpoint cases against LlmTools' own server and against a loopback fake: results are the objects local
# generation gives, piped inputs keep their order, a wrong key is RemoteUnauthorized.
Describe '-Endpoint against <Name>' -ForEach @(
    @{ Name = 'Start-LlmServer' }
    @{ Name = 'a fake OpenAI server' }
) {
    BeforeAll {
        $script:Key = ConvertTo-SecureString 'sk-right' -AsPlainText -Force
        $script:Server = $null; $script:Fake = $null
        if ($Name -eq 'Start-LlmServer') {
            $script:Server = Start-LlmServer -Model $TinyModel, $ChatModel -Alias tiny, chat -Port 0 -ContextSize 512 -Threads 1 -ApiKey $Key -WarningAction SilentlyContinue
            $script:Url = $Server.Endpoint
            $script:Completion = 'tiny'; $script:Chat = 'chat'
            # What a local greedy run gives (the server's sampling has no repeat penalty unless asked: -RepeatPenalty 1 both sides)
            $script:Expect = { param($prompt, $max) (Invoke-LlmCompletion $prompt -Model $TinyModel -MaxTokens $max -Temperature 0 -RepeatPenalty 1 -ContextSize 512 -Threads 1).Text }
        }
        else {
            $script:Fake = [LlmTools.TestModels.FakeOpenAi]::new()
            $Fake.ApiKey = 'sk-right'
            $script:Url = $Fake.Endpoint
            $script:Completion = $Fake.ModelName; $script:Chat = $Fake.ModelName
            $script:Expect = { param($prompt, $max) ([LlmTools.TestModels.FakeOpenAi]::Answer($prompt) -split ' ' | Select-Object -First $max) -join ' ' }
        }
    }
    AfterAll {
        if ($Server) { $Server | Stop-LlmServer }
        if ($Fake) { $Fake.Dispose() }
        Disconnect-LlmEndpoint
    }

    It 'gives a completion result with the text, usage and finish_reason' {
        $r = Invoke-LlmCompletion 'Once upon a time' -Endpoint $Url -ApiKey $Key -Model $Completion -MaxTokens 5 -Temperature 0 -RepeatPenalty 1
        $r | Should -BeOfType ([LlmTools.LlmCompletionResult])
        $r.Text | Should -Be (& $Expect 'Once upon a time' 5)
        $r.CompletionTokens | Should -Be 5
        $r.PromptTokens | Should -BeGreaterThan 0
        $r.StopReason | Should -Be 'MaxTokens'
        $r.Model | Should -Be $Completion
        $r.ModelPath | Should -Be $Url
        $r.TotalDuration | Should -BeGreaterThan ([TimeSpan]::Zero)
    }

    It 'streams the same text (server-sent events) and still writes the result' {
        $r = Invoke-LlmCompletion 'Once upon a time' -Endpoint $Url -ApiKey $Key -Model $Completion -MaxTokens 6 -Temperature 0 -RepeatPenalty 1 -Stream -InformationVariable shown 6>$null
        $r.Text | Should -Be (& $Expect 'Once upon a time' 6)
        ($shown.MessageData.Message -join '') | Should -Be $r.Text
        $r.CompletionTokens | Should -Be 6
        $r.TimeToFirstToken | Should -BeLessOrEqual $r.TotalDuration
    }

    It 'keeps the input order of piped prompts with -ThrottleLimit' {
        $prompts = 'One day', 'Once upon a time', 'The cat', 'A dog', 'Lily went', 'Tim said'
        $rs = $prompts | Invoke-LlmCompletion -Endpoint $Url -ApiKey $Key -Model $Completion -MaxTokens 4 -Temperature 0 -RepeatPenalty 1 -ThrottleLimit 3
        $rs.Prompt | Should -Be $prompts
        foreach ($r in $rs) { $r.Text | Should -Be (& $Expect $r.Prompt 4) }
    }

    It 'chats: single questions and a session that keeps the conversation' {
        $reply = Invoke-LlmChat 'Hi' -Endpoint $Url -ApiKey $Key -Model $Chat -MaxTokens 4 -Temperature 0
        $reply | Should -BeOfType ([LlmTools.LlmChatReply])
        $reply.Message | Should -Be 'Hi'
        $reply.CompletionTokens | Should -BeGreaterThan 0
        $reply.ModelPath | Should -Be $Url

        $session = New-LlmChatSession -Endpoint $Url -ApiKey $Key -Model $Chat -SystemPrompt 'Be brief.' -MaxTokens 4 -Temperature 0
        $session.GetType().Name | Should -Be 'RemoteChatSession'
        $replies = 'Hello', 'And again' | Invoke-LlmChat -Session $session
        $replies.Turn | Should -Be 1, 2
        $session.Messages.Role | Should -Be 'system', 'user', 'assistant', 'user', 'assistant'
        ($session.ToJson() | ConvertFrom-Json).Count | Should -Be 5
    }

    It 'says RemoteUnauthorized for a wrong key, and RemoteNotFound for an unknown model' {
        $wrong = ConvertTo-SecureString 'sk-wrong' -AsPlainText -Force
        Invoke-LlmCompletion 'Once' -Endpoint $Url -ApiKey $wrong -Model $Completion -MaxTokens 2 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteUnauthorized,LlmTools.Commands.InvokeLlmCompletionCommand'
        $err[0].CategoryInfo.Category | Should -Be 'PermissionDenied'
        $err[0].ToString() | Should -Not -Match 'sk-wrong'
        Invoke-LlmCompletion 'Once' -Endpoint $Url -ApiKey $Key -Model 'no-such-model' -MaxTokens 2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteNotFound,LlmTools.Commands.InvokeLlmCompletionCommand'
    }

    It 'Connect-LlmEndpoint makes the server the default until Disconnect-LlmEndpoint' {
        $c = Connect-LlmEndpoint -Uri $Url -ApiKey $Key
        $c.Models | Should -Contain $Completion
        $c.HasApiKey | Should -BeTrue
        (Invoke-LlmCompletion 'Once upon a time' -Model $Completion -MaxTokens 3 -Temperature 0 -RepeatPenalty 1).ModelPath | Should -Be $Url
        Disconnect-LlmEndpoint
        # Local again: the remote name is no file here.
        { Invoke-LlmCompletion 'Once' -Model $Completion -MaxTokens 2 -ErrorAction Stop } | Should -Throw
        $e = { Connect-LlmEndpoint -Uri $Url -ApiKey (ConvertTo-SecureString 'sk-wrong' -AsPlainText -Force) } | Should -Throw -PassThru
        $e.FullyQualifiedErrorId | Should -Be 'RemoteUnauthorized,LlmTools.Commands.ConnectLlmEndpointCommand'
    }
}

Describe '-Endpoint with faults' {
    BeforeAll { $script:Fake = [LlmTools.TestModels.FakeOpenAi]::new() }
    AfterAll { $Fake.Dispose() }
    BeforeEach { $Fake.Faults.Clear(); $Fake.Requests.Clear() }

    It 'retries 429 (waiting Retry-After) and 503, then succeeds' {
        $Fake.Faults.Enqueue('TooManyRequests'); $Fake.Faults.Enqueue('Unavailable')
        $r = Invoke-LlmCompletion 'Once upon a time' -Endpoint $Fake.Endpoint -Model $Fake.ModelName -MaxTokens 5
        $r.Text | Should -Be 'You said: Once upon a'
        $times = @($Fake.Requests.ToArray().At)
        $times.Count | Should -Be 3
        # Retry-After: 1 was honoured (a lower bound: the client must not come back sooner)
        ($times[1] - $times[0]).TotalSeconds | Should -BeGreaterOrEqual 0.9
    }

    It 'gives up after its retries with RemoteBusy' {
        1..6 | ForEach-Object { $Fake.Faults.Enqueue('Unavailable') }
        Invoke-LlmCompletion 'Once' -Endpoint $Fake.Endpoint -Model $Fake.ModelName -MaxTokens 2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteBusy,LlmTools.Commands.InvokeLlmCompletionCommand'
        $Fake.Requests.Count | Should -Be 5
    }

    It 'retries a connection reset mid-stream without showing the text twice' {
        $Fake.Faults.Enqueue('ResetMidReply')
        $r = Invoke-LlmCompletion 'Once upon a time there' -Endpoint $Fake.Endpoint -Model $Fake.ModelName -MaxTokens 8 -Stream -InformationVariable shown 6>$null
        $r.Text | Should -Be 'You said: Once upon a time there'
        ($shown.MessageData.Message -join '') | Should -Be $r.Text
        $Fake.Requests.Count | Should -Be 2
    }

    It 'retries a connection reset mid-body' {
        $Fake.Faults.Enqueue('ResetMidReply')
        (Invoke-LlmChat 'Hello there' -Endpoint $Fake.Endpoint -Model $Fake.ModelName).Text | Should -Be 'You said: Hello there'
        $Fake.Requests.Count | Should -Be 2
    }

    It 'ends a slow request at -TimeoutSec with RemoteTimeout, for that input only' {
        $rs = 'sleep:5000 slow', 'quick' | Invoke-LlmCompletion -Endpoint $Fake.Endpoint -Model $Fake.ModelName -TimeoutSec 1 -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteTimeout,LlmTools.Commands.InvokeLlmCompletionCommand'
        $rs.Prompt | Should -Be 'quick'
    }

    It 'sends at most -ThrottleLimit requests at once and writes results in input order' {
        $fresh = [LlmTools.TestModels.FakeOpenAi]::new()
        try {
            # Later inputs finish first; the output order is still the input order.
            $prompts = 'sleep:900 a', 'sleep:600 b', 'sleep:300 c', 'd', 'e', 'f'
            $rs = $prompts | Invoke-LlmCompletion -Endpoint $fresh.Endpoint -Model $fresh.ModelName -ThrottleLimit 2
            $rs.Prompt | Should -Be $prompts
            $rs[0].Text | Should -Be 'You said: a'
            $fresh.MaxInFlight | Should -Be 2
        }
        finally { $fresh.Dispose() }
    }

    It 'Stop() (Ctrl+C) ends the requests in flight' {
        $before = $Fake.Disconnected
        $bg = Start-Background { param($url, $model) 'sleep:60000 a', 'sleep:60000 b' | Invoke-LlmCompletion -Endpoint $url -Model $model } @($Fake.Endpoint, $Fake.ModelName)
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            while ($Fake.Requests.Count -lt 2 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            $Fake.Requests.Count | Should -Be 2
            $bg.PowerShell.Stop()
            $bg.Handle.AsyncWaitHandle.WaitOne(30000) | Should -BeTrue
            $bg.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
            # The server sees both connections go away (it writes to them until then).
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            while ($Fake.Disconnected -lt $before + 2 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            $Fake.Disconnected | Should -Be ($before + 2)
        }
        finally { $bg.PowerShell.Dispose() }
    }

    It 'refuses local-only options and bad values with stable ids' {
        { Invoke-LlmCompletion 'x' -Endpoint $Fake.Endpoint -Model m -ContextSize 512 } | Should -Throw -ErrorId 'RemoteOptionNotSupported,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Invoke-LlmCompletion 'x' -Endpoint $Fake.Endpoint -Model m -ThrottleLimit 0 } | Should -Throw -ErrorId 'ThrottleLimitOutOfRange,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Invoke-LlmCompletion 'x' -Endpoint 'ftp://host/v1' -Model m } | Should -Throw -ErrorId 'RemoteEndpointInvalid,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Invoke-LlmChat 'x' -Session 'not a session' } | Should -Throw -ErrorId 'ChatSessionInvalid,LlmTools.Commands.InvokeLlmChatCommand'
    }

    It 'takes OPENAI_API_KEY when no key is given' {
        $Fake.ApiKey = 'sk-env'
        $old = $env:OPENAI_API_KEY
        try {
            $env:OPENAI_API_KEY = 'sk-env'
            (Invoke-LlmCompletion 'Once' -Endpoint $Fake.Endpoint -Model $Fake.ModelName -MaxTokens 3).Text | Should -Be 'You said: Once'
            $Fake.Requests.ToArray()[-1].Authorization | Should -Be 'Bearer sk-env'
        }
        finally { $env:OPENAI_API_KEY = $old; $Fake.ApiKey = $null }
    }
}

# Get-LlmEmbedding -Endpoint: /v1/embeddings on LlmTools' own server gives the local vectors; against the fake, the
# retries, the order of piped texts and the errors of one text.
Describe 'Get-LlmEmbedding -Endpoint' {
    BeforeAll {
        $script:Server = Start-LlmServer -Model tinystories -Alias stories -Port 0 -Threads 1 -WarningAction SilentlyContinue
        $script:Fake = [LlmTools.TestModels.FakeOpenAi]::new()
        $script:EmbedTexts = 1..10 | ForEach-Object { "Story $_ : the little dog ran $_ times around the park." }
    }
    AfterAll {
        $Server | Stop-LlmServer
        $Fake.Dispose()
        Disconnect-LlmEndpoint
    }
    BeforeEach { $Fake.Faults.Clear(); $Fake.Requests.Clear() }

    It 'gives the local vectors, token counts and order from Start-LlmServer (batched requests, ThrottleLimit)' {
        $local = $EmbedTexts | Get-LlmEmbedding -Model tinystories
        $remote = $EmbedTexts | Get-LlmEmbedding -Endpoint $Server.Endpoint -Model stories -BatchSize 4 -ThrottleLimit 2
        $remote | Should -HaveCount 10
        $remote.Text | Should -Be $EmbedTexts
        for ($i = 0; $i -lt 10; $i++) {
            $remote[$i] | Should -BeOfType ([LlmTools.LlmEmbedding])
            Measure-LlmSimilarity $local[$i] $remote[$i] | Should -BeGreaterOrEqual 0.9999
            $remote[$i].Dimensions | Should -Be $local[$i].Dimensions
            $remote[$i].TokenCount | Should -Be $local[$i].TokenCount
            $remote[$i].Model | Should -Be 'stories'
            $remote[$i].Pooling | Should -Be 'Mean'
            $remote[$i].Normalize | Should -Be 'L2'
        }
        # The wire format as OpenAI's clients read it.
        $body = @{ model = 'stories'; input = @($EmbedTexts[0], $EmbedTexts[1]) } | ConvertTo-Json
        $r = Invoke-RestMethod "$($Server.Endpoint)/embeddings" -Method Post -ContentType 'application/json' -Body $body
        $r.object | Should -Be 'list'
        $r.data.index | Should -Be 0, 1
        $r.data[0].object | Should -Be 'embedding'
        $r.data[1].embedding.Count | Should -Be $local[1].Dimensions
        $r.usage.prompt_tokens | Should -Be ($local[0].TokenCount + $local[1].TokenCount)
    }

    It 'uses Connect-LlmEndpoint''s server by default, and a text too long fails alone' {
        Connect-LlmEndpoint -Uri $Server.Endpoint | Out-Null
        try {
            $long = 'word ' * 3000
            $out = 'short', $long, 'also short' | Get-LlmEmbedding -Model stories -ErrorVariable errs -ErrorAction SilentlyContinue
            $out.Text | Should -Be 'short', 'also short'
            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'RemoteBadRequest,LlmTools.Commands.GetLlmEmbeddingCommand'
            $errs[0].ToString() | Should -Match 'tokens'
        }
        finally { Disconnect-LlmEndpoint }
    }

    It 'retries 429 (waiting Retry-After) and 503 from the fake, then gives its vectors' {
        $Fake.Faults.Enqueue('TooManyRequests'); $Fake.Faults.Enqueue('Unavailable')
        $e = Get-LlmEmbedding 'The cat sat on the mat.' -Endpoint $Fake.Endpoint -Model $Fake.ModelName
        $e.Vector | Should -Be ([LlmTools.TestModels.FakeOpenAi]::Embedding('The cat sat on the mat.'))
        # One text per request: its count is the request's usage.
        $e.TokenCount | Should -Be 7
        $e.Pooling | Should -Be 'Unknown'
        $e.Normalize | Should -Be 'L2'
        $times = @($Fake.Requests.ToArray().At)
        $times.Count | Should -Be 3
        ($times[1] - $times[0]).TotalSeconds | Should -BeGreaterOrEqual 0.9
        $Fake.Requests.ToArray()[0].Path | Should -Be '/v1/embeddings'
    }

    It 'sends BatchSize texts per request, ThrottleLimit at once, and writes them in input order' {
        $fresh = [LlmTools.TestModels.FakeOpenAi]::new()
        try {
            $texts = 'sleep:900 a', 'b', 'sleep:300 c', 'd', 'e', 'f'
            $out = $texts | Get-LlmEmbedding -Endpoint $fresh.Endpoint -Model $fresh.ModelName -BatchSize 2 -ThrottleLimit 2
            $out.Text | Should -Be $texts
            $out[3].Vector | Should -Be ([LlmTools.TestModels.FakeOpenAi]::Embedding('d'))
            $fresh.Requests.Count | Should -Be 3
            $fresh.Requests.ToArray().Input | Should -Be 'sleep:900 a|b', 'sleep:300 c|d', 'e|f'
            $fresh.MaxInFlight | Should -Be 2
            # A server that reports only the sum cannot give one text's count.
            $out[0].TokenCount | Should -Be 0
        }
        finally { $fresh.Dispose() }
    }

    It 'Stop() (Ctrl+C) ends the embedding requests in flight' {
        $bg = Start-Background { param($url, $model) 'sleep:60000 a', 'b' | Get-LlmEmbedding -Endpoint $url -Model $model -BatchSize 1 } @($Fake.Endpoint, $Fake.ModelName)
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            while ($Fake.Requests.Count -lt 2 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            $Fake.Requests.Count | Should -Be 2
            $bg.PowerShell.Stop()
            $bg.Handle.AsyncWaitHandle.WaitOne(30000) | Should -BeTrue
            $bg.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
        }
        finally { $bg.PowerShell.Dispose() }
    }

    It 'gives up with RemoteBusy for every text of the request, retries a reset, and refuses local-only options' {
        1..6 | ForEach-Object { $Fake.Faults.Enqueue('Unavailable') }
        'a', 'b' | Get-LlmEmbedding -Endpoint $Fake.Endpoint -Model $Fake.ModelName -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 2
        $err[0].FullyQualifiedErrorId | Should -Be 'RemoteBusy,LlmTools.Commands.GetLlmEmbeddingCommand'
        $Fake.Faults.Clear()
        $Fake.Faults.Enqueue('ResetMidReply')
        (Get-LlmEmbedding 'x y' -Endpoint $Fake.Endpoint -Model $Fake.ModelName).TokenCount | Should -Be 3
        { Get-LlmEmbedding 'x' -Endpoint $Fake.Endpoint -Model m -Pooling Cls } | Should -Throw -ErrorId 'RemoteOptionNotSupported,LlmTools.Commands.GetLlmEmbeddingCommand'
        { Get-LlmEmbedding 'x' -Endpoint $Fake.Endpoint -Model m -ThrottleLimit 0 } | Should -Throw -ErrorId 'ThrottleLimitOutOfRange,LlmTools.Commands.GetLlmEmbeddingCommand'
        { Get-LlmEmbedding 'x' -Model tinystories -ApiKey (ConvertTo-SecureString 'k' -AsPlainText -Force) } | Should -Throw -ErrorId 'ApiKeyNeedsEndpoint,LlmTools.Commands.GetLlmEmbeddingCommand'
        { Get-LlmEmbedding 'x' -Model tinystories -Pooling Unknown } | Should -Throw -ErrorId 'PoolingOutOfRange,LlmTools.Commands.GetLlmEmbeddingCommand'
    }
}

# -JsonSchema, -Grammar and OpenAI's penalties reach the server: the same text as the local model, parsed the same way.
Describe '-Endpoint with -JsonSchema, -Grammar and penalties' {
    BeforeAll {
        $script:Server = Start-LlmServer -Model $TinyModel, $ChatModel -Alias tiny, chat -Port 0 -ContextSize 512 -Threads 1 -WarningAction SilentlyContinue
        $script:Url = $Server.Endpoint
        $script:Fake = [LlmTools.TestModels.FakeOpenAi]::new()
        $script:LocalRun = @{ ContextSize = 512; Threads = 1; Temperature = 0; RepeatPenalty = 1 }
        $script:Schema = @{ type = 'object'; properties = @{ name = @{ type = 'string'; maxLength = 10 }; n = @{ type = 'integer'; minimum = 0; maximum = 9 } }; required = @('name', 'n') }
    }
    AfterAll {
        $Server | Stop-LlmServer
        $Fake.Dispose()
    }

    It 'gives the local model''s JSON and parsed value for -JsonSchema, and -AsObject writes only the value' {
        $mine = Invoke-LlmCompletion 'Record:' -Model $TinyModel -JsonSchema $Schema -MaxTokens 120 @LocalRun
        $remote = Invoke-LlmCompletion 'Record:' -Endpoint $Url -Model tiny -JsonSchema $Schema -MaxTokens 120 -Temperature 0
        $remote.Text | Should -Be $mine.Text
        $remote.Value.n | Should -Be $mine.Value.n
        $remote.Value.n | Should -BeOfType [long]
        $v = Invoke-LlmChat 'Give a record' -Endpoint $Url -Model chat -JsonSchema $Schema -AsObject -MaxTokens 120 -Temperature 0
        $v | Should -Not -BeOfType ([LlmTools.LlmChatReply])
        $v.n | Should -BeLessOrEqual 9
        $v.name.Length | Should -BeLessOrEqual 10
    }

    It 'sends the schema as response_format json_schema and the grammar as llama.cpp''s grammar field' {
        Invoke-LlmCompletion 'x' -Endpoint $Fake.Endpoint -Model $Fake.ModelName -JsonSchema '{"type":"object","properties":{"a":{"type":"string"}}}' -MaxTokens 3 -ErrorAction SilentlyContinue | Out-Null
        $body = $Fake.Requests.ToArray()[-1].Body | ConvertFrom-Json
        $body.response_format.type | Should -Be 'json_schema'
        $body.response_format.json_schema.schema.properties.a.type | Should -Be 'string'
        Invoke-LlmCompletion 'x' -Endpoint $Fake.Endpoint -Model $Fake.ModelName -Grammar 'root ::= "yes"' -FrequencyPenalty 0.5 -MaxTokens 3 | Out-Null
        $body = $Fake.Requests.ToArray()[-1].Body | ConvertFrom-Json
        $body.grammar | Should -Be 'root ::= "yes"'
        $body.frequency_penalty | Should -Be 0.5
        $body.PSObject.Properties.Name | Should -Not -Contain 'presence_penalty' # only what was given
        $r = Invoke-LlmCompletion 'Answer:' -Endpoint $Url -Model tiny -Grammar 'root ::= ("yes" | "no")' -MaxTokens 10 -Temperature 0
        $r.Text | Should -BeIn @('yes', 'no')
    }

    It 'holds one turn of a remote session to -JsonSchema and sends that turn''s penalties' {
        $fakeSession = New-LlmChatSession -Endpoint $Fake.Endpoint -Model $Fake.ModelName
        Invoke-LlmChat -Session $fakeSession -Message 'x' -JsonSchema '{"type":"object"}' -PresencePenalty 0.25 -MaxTokens 3 | Out-Null
        $body = $Fake.Requests.ToArray()[-1].Body | ConvertFrom-Json
        $body.response_format.json_schema.schema.type | Should -Be 'object'
        $body.presence_penalty | Should -Be 0.25
        Invoke-LlmChat -Session $fakeSession -Message 'y' -MaxTokens 3 | Out-Null
        $body = $Fake.Requests.ToArray()[-1].Body | ConvertFrom-Json
        $body.PSObject.Properties.Name | Should -Not -Contain 'response_format' # that turn only
        $session = New-LlmChatSession -Endpoint $Url -Model chat -Temperature 0 -MaxTokens 120
        $v = Invoke-LlmChat -Session $session -Message 'A record, please' -JsonSchema $Schema -AsObject
        $v.n | Should -BeOfType [long]
        $v.n | Should -BeLessOrEqual 9
        $session.Messages[-1].Content | ConvertFrom-Json | Select-Object -ExpandProperty n | Should -Be $v.n
    }

    It 'refuses a bad grammar or schema before sending anything' {
        $before = $Fake.Requests.Count
        { Invoke-LlmCompletion 'x' -Endpoint $Fake.Endpoint -Model m -Grammar 'root ::= (' } | Should -Throw -ErrorId 'GrammarInvalid,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Invoke-LlmCompletion 'x' -Endpoint $Fake.Endpoint -Model m -JsonSchema '[1, 2]' } | Should -Throw -ErrorId 'JsonSchemaInvalid,LlmTools.Commands.InvokeLlmCompletionCommand'
        $Fake.Requests.Count | Should -Be $before
    }

    It 'applies -FrequencyPenalty and -PresencePenalty locally as the server does, and refuses values outside -2 to 2' {
        $plain = Invoke-LlmCompletion 'Once upon a time' -Model $TinyModel -MaxTokens 32 @LocalRun
        foreach ($penalty in @{ FrequencyPenalty = 1.5 }, @{ PresencePenalty = 1.5 }) {
            $mine = Invoke-LlmCompletion 'Once upon a time' -Model $TinyModel -MaxTokens 32 @LocalRun @penalty
            $mine.Text | Should -Not -Be $plain.Text
            $remote = Invoke-LlmCompletion 'Once upon a time' -Endpoint $Url -Model tiny -MaxTokens 32 -Temperature 0 @penalty
            $remote.Text | Should -Be $mine.Text
        }
        { Invoke-LlmCompletion 'x' -Model $TinyModel -FrequencyPenalty 3 } | Should -Throw -ErrorId 'FrequencyPenaltyOutOfRange,LlmTools.Commands.InvokeLlmCompletionCommand'
        { Invoke-LlmChat 'x' -Model $ChatModel -PresencePenalty -2.5 } | Should -Throw -ErrorId 'PresencePenaltyOutOfRange,LlmTools.Commands.InvokeLlmChatCommand'
    }
}
