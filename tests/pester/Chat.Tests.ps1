BeforeDiscovery {
    $Templates = Join-Path $PSScriptRoot '../../../shared/templates'
    $HasTemplates = Test-Path $Templates
}
BeforeAll {
    . $PSScriptRoot/TestSetup.ps1
    $script:Templates = Join-Path $PSScriptRoot '../../../shared/templates'
}

Describe 'ConvertTo-LlmPrompt' {
    It 'renders the model''s own chat template, messages from the pipeline' {
        $text = @{ role = 'system'; content = 'Be brief.' }, [pscustomobject]@{ role = 'user'; content = 'Hi' } |
            ConvertTo-LlmPrompt -Model $ChatModel -AddGenerationPrompt
        $text | Should -BeExactly "<|im_start|>system`nBe brief.<|im_end|>`n<|im_start|>user`nHi<|im_end|>`n<|im_start|>assistant`n"
        ConvertTo-LlmPrompt -Message 'Hi' -Model $ChatModel | Should -BeExactly "<|im_start|>user`nHi<|im_end|>`n"
    }

    It 'renders a template given as text, with its BOS token and tools' -Skip:(-not $HasTemplates) {
        $template = Get-Content (Join-Path $Templates 'meta-llama-Llama-3.2-3B-Instruct.jinja') -Raw
        $tools = @(@{ type = 'function'; function = @{ name = 'get_weather'; description = 'Weather'; parameters = @{ type = 'object'; properties = @{} } } })
        $text = ConvertTo-LlmPrompt -Message 'What is the weather?' -Template $template -BosToken '<|begin_of_text|>' -Tools $tools -AddGenerationPrompt
        $text | Should -BeLike '<|begin_of_text|><|start_header_id|>system<|end_header_id|>*'
        $text | Should -Match '"name": "get_weather"'
        $text | Should -BeLike '*<|start_header_id|>assistant<|end_header_id|>*'
    }

    It 'raises the template''s own error (<_>)' -Skip:(-not $HasTemplates) -ForEach @('google-gemma-2-2b-it') {
        $template = Get-Content (Join-Path $Templates "$_.jinja") -Raw
        { @{ role = 'system'; content = 'x' }, @{ role = 'user'; content = 'y' } | ConvertTo-LlmPrompt -Template $template } |
            Should -Throw -ErrorId 'ChatTemplateError,LlmTools.Commands.ConvertToLlmPromptCommand' -ExpectedMessage '*System role not supported*'
    }

    It 'uses a plain transcript for a base model, with a warning' {
        $text = ConvertTo-LlmPrompt -Message @{ role = 'user'; content = 'Hi' } -Model $TinyModel -AddGenerationPrompt -WarningVariable warned -WarningAction SilentlyContinue
        $text | Should -BeExactly "User: Hi`nAssistant:"
        $warned | Should -Match 'no chat template'
    }
}

Describe 'Chat sessions for scripts' {
    It 'keeps the conversation and its KV state: turn N evaluates only its new tokens' {
        $chat = New-LlmChatSession -Model $ChatModel -SystemPrompt 'You are terse.' -Temperature 0 -MaxTokens 8
        $chat.GetType().FullName | Should -Be 'LlmTools.Engine.ChatSession'
        $replies = 'Hello there', 'Tell me about the little dog', 'Thanks' | Invoke-LlmChat -Session $chat
        $replies | Should -HaveCount 3
        $replies.Turn | Should -Be @(1, 2, 3)
        $replies[0].CachedPromptTokens | Should -Be 0
        $replies[1].CachedPromptTokens | Should -BeGreaterOrEqual $replies[0].PromptTokens
        $replies[2].CachedPromptTokens | Should -BeGreaterOrEqual $replies[1].PromptTokens
        ($replies[2].PromptTokens - $replies[2].CachedPromptTokens) | Should -BeLessThan ($replies[2].PromptTokens / 2)
        $chat.Messages.Count | Should -Be 7
        $chat.Dispose()
    }

    It 'exports and imports the conversation as [{role, content}] JSON' {
        $chat = New-LlmChatSession -Model $ChatModel -SystemPrompt 'S' -Temperature 0 -MaxTokens 4
        Invoke-LlmChat -Session $chat -Message 'One' | Out-Null
        $json = $chat.ToJson()
        $parsed = $json | ConvertFrom-Json
        $parsed[0].role | Should -Be 'system'
        $parsed[1].content | Should -Be 'One'
        $again = New-LlmChatSession -Model $ChatModel -History $parsed -Temperature 0 -MaxTokens 4
        ($again.Messages | ForEach-Object { "$($_.Role):$($_.Content)" }) | Should -Be ($chat.Messages | ForEach-Object { "$($_.Role):$($_.Content)" })
        $chat.Dispose(); $again.Dispose()
    }

    It 'refuses per-call context and weight options with a session (they belong to it)' {
        $chat = New-LlmChatSession -Model $ChatModel
        foreach ($p in @{ Threads = 1 }, @{ GpuLayers = 0 }, @{ ContextSize = 64 }) {
            { Invoke-LlmChat -Session $chat -Message 'x' @p } | Should -Throw -ErrorId 'ChatSessionOptionsFixed,LlmTools.Commands.InvokeLlmChatCommand'
        }
        $chat.Dispose()
    }

    It 'stops a reply on StopProcessing and the session goes on' {
        # Long enough to be stopped mid-reply, bounded so that the next reply ends soon.
        $chat = New-LlmChatSession -Model $ChatModel -Temperature 0 -MaxTokens 3000 -ContextSize 4096
        $ps = [powershell]::Create().AddScript({ param($s, $m) Import-Module $m; Invoke-LlmChat -Session $s -Message 'Hello' -Stream }).AddArgument($chat).AddArgument((Join-Path $ModulePath 'LlmTools.psd1'))
        $handle = $ps.BeginInvoke()
        $deadline = [DateTime]::UtcNow.AddSeconds(60)
        while ($ps.Streams.Information.Count -lt 5 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
        $ps.Stop()
        $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        $ps.Dispose()
        $reply = Invoke-LlmChat -Session $chat -Message 'Again'
        $reply.StopReason | Should -Not -Be 'Cancelled'
        $chat.Messages[-2].Content | Should -Be 'Again'
        $chat.Dispose()
    }
}

Describe 'Invoke-LlmChat without a session' {
    It 'answers every piped message as its own conversation, batched, sharing the system prompt' {
        $questions = 'What is a dog?', 'What is a cat?', 'Why is the sky blue?', 'Hello'
        $one = $questions | Invoke-LlmChat -Model $ChatModel -SystemPrompt 'Answer in one line.' -Temperature 0 -MaxTokens 10 -BatchSize 1
        $batched = $questions | Invoke-LlmChat -Model $ChatModel -SystemPrompt 'Answer in one line.' -Temperature 0 -MaxTokens 10 -BatchSize 4
        $batched.Message | Should -Be $questions
        $batched.Text | Should -Be $one.Text
        $systemTokens = (Measure-LlmToken -Text "<|im_start|>system`nAnswer in one line.<|im_end|>`n<|im_start|>user`n" -Model $ChatModel).Count
        foreach ($r in $batched) { $r.CachedPromptTokens | Should -BeGreaterOrEqual ($systemTokens - 2) }
        # Each reply is the same as a fresh single-turn session's.
        $fresh = New-LlmChatSession -Model $ChatModel -SystemPrompt 'Answer in one line.' -Temperature 0 -MaxTokens 10
        (Invoke-LlmChat -Session $fresh -Message 'Why is the sky blue?').Text | Should -Be $batched[2].Text
        $fresh.Dispose()
    }

    It 'warns once for a base model and still answers' {
        $replies = 'Hi', 'Hello' | Invoke-LlmChat -Model $TinyModel -MaxTokens 4 -WarningVariable warned -WarningAction SilentlyContinue
        $replies | Should -HaveCount 2
        @($warned) | Should -HaveCount 1
    }
}

Describe 'Start-LlmChat' {
    It 'runs a conversation from redirected input: turns, slash commands, save and load' {
        $saved = Join-Path $TestDir "chat-$([guid]::NewGuid().ToString('N').Substring(0, 6)).json"
        $lines = @('Hello there', '/system You are a pirate.', 'Who are you?', 'And then?', "/save $saved", '/reset', '/stats', "/load $saved", '/stats', '/nonsense', '/exit', 'never sent')
        $script = "Import-Module '$ModulePath/LlmTools.psd1'; Start-LlmChat -Model '$ChatModel' -Temperature 0 -MaxTokens 6"
        $out = $lines | & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $LASTEXITCODE | Should -Be 0
        $text = $out -join "`n"
        $text | Should -Match 'Chatting with tiny-chat-test'
        $text | Should -Match '> Hello there'
        $text | Should -Match 'System prompt set; the conversation starts over.'
        ([regex]::Matches($text, '\[\d+ tokens, [\d.]+ tok/s; prompt \d+ new of \d+')).Count | Should -Be 3
        $text | Should -Match 'Saved 5 messages'
        $text | Should -Match '0 exchanges, 0 of 1024 tokens'
        $text | Should -Match 'Loaded 5 messages'
        $text | Should -Match 'Unknown command /nonsense'
        $text | Should -Not -Match 'never sent'
        $text | Should -Match 'Bye\.'
        $json = Get-Content $saved -Raw | ConvertFrom-Json
        $json.role | Should -Be @('system', 'user', 'assistant', 'user', 'assistant')
        $json[0].content | Should -Be 'You are a pirate.'
        # The second turn reused the first: only the new tokens were evaluated.
        $news = [regex]::Matches($text, 'prompt (\d+) new of (\d+)') | ForEach-Object { [int]$_.Groups[1].Value }
        $totals = [regex]::Matches($text, 'prompt (\d+) new of (\d+)') | ForEach-Object { [int]$_.Groups[2].Value }
        $news[2] | Should -BeLessThan ($totals[2] / 2)
    }

    It 'takes lines from the pipeline' {
        $script = "Import-Module '$ModulePath/LlmTools.psd1'; 'Hi', '/stats' | Start-LlmChat -Model '$ChatModel' -Temperature 0 -MaxTokens 3 -NoStatistics"
        $out = & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        ($out -join "`n") | Should -Match '1 exchanges, \d+ of 1024 tokens'
    }

    It 'says what to do when the conversation outgrows the context, and offers /trim only where it helps' {
        $script = "Import-Module '$ModulePath/LlmTools.psd1'; 'the little girl saw a big red ball in the park', 'the little girl saw a big red ball in the park again', '/trim', 'the little girl saw a big red ball in the park again', '/reset', ('word ' * 60) | Start-LlmChat -Model '$ChatModel' -Temperature 0 -MaxTokens 8 -ContextSize 48 -NoStatistics"
        $out = & dotnet pwsh -NoProfile -NonInteractive -Command $script 2>&1
        $text = $out -join "`n"
        $text | Should -Match 'the conversation is \d+ tokens, and the context holds 48'
        $text | Should -Match 'Type /trim to drop the oldest exchange'
        $text | Should -Match 'The oldest exchange was dropped'
        # A message too long by itself: dropping exchanges cannot help, so /trim is not offered.
        $alone = $text.Substring($text.IndexOf('> word'))
        $alone | Should -Match 'The message alone is \d+ tokens'
        $alone | Should -Not -Match 'Type /trim'
    }
}

Describe 'Start-LlmChat at a terminal' {
    BeforeDiscovery { $HasTmux = [bool](Get-Command tmux -ErrorAction Ignore) }
    BeforeAll {
        $script:Root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
        $script:Term = $null
        # A real terminal: pwsh in a tmux pane (PSReadLine loaded, as for a user), driven by keys.
        function Start-Terminal([string] $command) {
            $script:Term = "llmtools-$PID-$([guid]::NewGuid().ToString('N').Substring(0, 6))"
            # dotnet finds the pwsh tool from the repository's manifest; the chat then runs in the test folder (/save).
            & tmux new-session -d -s $Term -x 200 -y 50 -c $Root
            & tmux send-keys -t $Term "dotnet pwsh -NoProfile -NoLogo" Enter
            WaitFor 'PS .*>' | Should -BeTrue
            & tmux send-keys -t $Term "Set-Location '$TestDir'; Import-Module '$ModulePath/LlmTools.psd1'; $command" Enter
        }
        function Screen { (& tmux capture-pane -t $Term -p -S -300) -join "`n" }
        function WaitFor([string] $pattern) {
            $deadline = [DateTime]::UtcNow.AddSeconds(90)
            while ([DateTime]::UtcNow -lt $deadline) {
                if ((Screen) -match $pattern) { return $true }
                Start-Sleep -Milliseconds 100
            }
            return $false
        }
        function Send([string] $keys) { & tmux send-keys -t $Term -l $keys; & tmux send-keys -t $Term Enter }
        function Count([string] $pattern) { [regex]::Matches((Screen), $pattern).Count }
    }
    AfterEach { if ($Term) { & tmux kill-session -t $Term 2>$null; $script:Term = $null } }

    It 'stops a reply on Ctrl+C and stays in the chat' -Skip:(-not $HasTmux) {
        Start-Terminal "Start-LlmChat -Model '$ChatModel' -Temperature 0 -MaxTokens 20000 -ContextSize 32768"
        WaitFor 'Chatting with tiny-chat-test' | Should -BeTrue
        & tmux send-keys -t $Term 'Hello' Enter
        WaitFor '> Hello[ \t]*\r?\n[^\n]*\S[^\n]{20,}' | Should -BeTrue -Because 'the reply streams'
        & tmux send-keys -t $Term C-c
        WaitFor '\[stopped\]' | Should -BeTrue
        (Screen) | Should -Match '\[\d+ tokens, .*; Cancelled\]'
        & tmux send-keys -t $Term '/stats' Enter
        WaitFor '\d+ exchanges, \d+ of 32768 tokens' | Should -BeTrue -Because 'the chat goes on after Ctrl+C'
        & tmux send-keys -t $Term '/exit' Enter
        WaitFor 'Bye\.' | Should -BeTrue
    }

    It 'keeps keys typed during a reply: /exit typed then ends the chat after the reply' -Skip:(-not $HasTmux) {
        Start-Terminal "Start-LlmChat -Model '$ChatModel' -Temperature 0 -MaxTokens 400 -ContextSize 1024"
        WaitFor 'Chatting with tiny-chat-test' | Should -BeTrue
        # /exit follows at once: it arrives while the reply is generated (the watcher reads it, and used to drop it).
        Send 'Hello'
        Send '/exit'
        WaitFor 'Bye\.' | Should -BeTrue -Because '/exit typed during the reply is the next input'
        $text = Screen
        $text | Should -Match '\[\d+ tokens, [^\]]*; (MaxTokens|EndOfText)\]' -Because 'the reply ran to its end'
        $text | Should -Match '(?s)\]\s*\r?\n> /exit\s*\r?\nBye\.'
    }

    It '/set changes the options /show lists; multi-line input; Up recalls a line; /save without a name; /stats after /load' -Skip:(-not $HasTmux) {
        Start-Terminal "Start-LlmChat -Model '$ChatModel' -Temperature 0 -MaxTokens 4 -ContextSize 1024"
        WaitFor 'Chatting with tiny-chat-test' | Should -BeTrue
        Send '/set temperature 0.2'
        WaitFor 'Set temperature 0\.2 for the next replies' | Should -BeTrue
        Send '/set parameter top_k 7'
        Send '/set stop END'
        Send '/show'
        WaitFor 'Options: .*temperature 0\.2, top-k 7, .*stop \["END"\]' | Should -BeTrue
        (Screen) | Should -Match 'Model: +tiny-chat-test'
        (Screen) | Should -Match 'Template: +a Jinja chat template'
        Send '/set temperature -1'
        WaitFor 'Temperature -1 is out of range' | Should -BeTrue
        Send '/set seed 42'
        # A line ending in \ goes on; a """ block is one message whose lines are kept (a / line in it is text).
        Send 'first line \'
        WaitFor '(?m)^\.\.\.\s*$' | Should -BeTrue -Because 'the continuation prompt shows'
        Send 'second line'
        WaitFor '\[4 tokens' | Should -BeTrue
        Send '"""'
        Send '/not a command'
        Send 'end of block"""'
        WaitFor '(?s)end of block""".*\[4 tokens' | Should -BeTrue
        (Screen) | Should -Not -Match 'Unknown command'
        # Up recalls the line typed last, and an apostrophe (incomplete PowerShell) does not stop Enter.
        Send "don't stop"
        WaitFor '(?s)don''t stop.*\[4 tokens' | Should -BeTrue
        & tmux send-keys -t $Term Up
        & tmux send-keys -t $Term Up
        WaitFor '(?m)^> end of block"""[ \t]*$' | Should -BeTrue -Because 'Up recalls the line typed last'
        & tmux send-keys -t $Term Enter
        WaitFor '(?s)\[4 tokens.*\[4 tokens.*\[4 tokens.*\[4 tokens' | Should -BeTrue -Because 'the recalled line is sent'
        Send '/save'
        WaitFor 'Saved 8 messages to (\S+chat-\d{8}-\d{6}(-\d+)?\.json)\.' | Should -BeTrue
        $saved = [regex]::Match((Screen), 'Saved 8 messages to (\S+\.json)\.').Groups[1].Value
        Send '/save'
        WaitFor '(?s)Saved 8 messages to \S+\.json\..*Saved 8 messages to \S+\.json\.' | Should -BeTrue
        $names = [regex]::Matches((Screen), 'Saved 8 messages to (\S+\.json)\.') | ForEach-Object { $_.Groups[1].Value }
        $names[0] | Should -Not -Be $names[1] -Because 'a default name never replaces a file'
        $json = Get-Content $saved -Raw | ConvertFrom-Json
        $json[0].content | Should -Be "first line `nsecond line"
        $json[2].content | Should -Be "/not a command`nend of block"
        $json[4].content | Should -Be "don't stop"
        $json[6].content | Should -Be 'end of block"""'
        Send '/reset'
        Send "/load $saved"
        WaitFor 'Loaded 8 messages \(4 exchanges, (\d+) tokens\)' | Should -BeTrue
        $loaded = [int][regex]::Match((Screen), 'Loaded 8 messages \(4 exchanges, (\d+) tokens\)').Groups[1].Value
        $loaded | Should -BeGreaterThan 10
        Send '/stats'
        WaitFor "4 exchanges, $loaded of 1024 tokens" | Should -BeTrue -Because '/stats counts the loaded history'
        Send '/exit'
        WaitFor 'Bye\.' | Should -BeTrue
        Remove-Item $names -ErrorAction Ignore
    }

    It 'chats with a model on a server: Start-LlmChat -Endpoint against Start-LlmServer on a loopback port' -Skip:(-not $HasTmux) {
        Start-Terminal ("`$s = Start-LlmServer -Model '$ChatModel' -Alias chat -Port 0 -ContextSize 512 -Threads 1 -WarningAction SilentlyContinue; " +
            "Start-LlmChat -Endpoint `$s.Endpoint -Model chat -Temperature 0 -MaxTokens 5")
        WaitFor 'Chatting with chat \(at http://127\.0\.0\.1:\d+/v1\)' | Should -BeTrue
        Send 'Hello'
        WaitFor '\[5 tokens, [^\]]*; MaxTokens\]' | Should -BeTrue
        Send 'And again'
        WaitFor '(?s)\[5 tokens.*\[5 tokens, [^\]]*prompt \d+ new of \d+' | Should -BeTrue
        Send '/set temperature 0.5'
        Send '/show'
        WaitFor 'Options: +max-tokens 5, temperature 0\.5' | Should -BeTrue
        Send '/stats'
        WaitFor '2 exchanges, \d+ tokens at the last turn' | Should -BeTrue
        Send '/exit'
        WaitFor 'Bye\.' | Should -BeTrue
    }
}

Describe 'Hostile message objects and templates' {
    It 'refuses a message hashtable that contains itself, and pwsh lives on' {
        $h = @{ role = 'user'; content = 'hi' }
        $h.self = $h
        { $h | ConvertTo-LlmPrompt -Template '{{ messages }}' } |
            Should -Throw -ErrorId 'ChatMessageInvalid,LlmTools.Commands.ConvertToLlmPromptCommand' -ExpectedMessage '*contains itself*'
        $t = @{ type = 'function' }
        $t.again = @($t)
        { ConvertTo-LlmPrompt -Message 'hi' -Template '{{ tools }}' -Tools $t } |
            Should -Throw -ErrorId 'ChatMessageInvalid,LlmTools.Commands.ConvertToLlmPromptCommand' -ExpectedMessage '*contains itself*'
    }

    It 'refuses a message nested deeper than any real one' {
        $deep = 'x'
        1..1000 | ForEach-Object { $deep = @{ inner = $deep } }
        { @{ role = 'user'; content = 'hi'; extra = $deep } | ConvertTo-LlmPrompt -Template '{{ messages }}' } |
            Should -Throw -ErrorId 'ChatMessageInvalid,LlmTools.Commands.ConvertToLlmPromptCommand' -ExpectedMessage '*levels deep*'
    }

    It 'refuses unknown roles and objects that are no message (<_>)' -ForEach @('role', 'object', 'number') {
        $message = switch ($_) {
            'role' { @{ role = 'usr'; content = 'hi' } }
            'object' { Get-Item $PSScriptRoot }
            'number' { 42 }
        }
        { ConvertTo-LlmPrompt -Message $message -Template '{{ messages }}' } |
            Should -Throw -ErrorId 'ChatMessageInvalid,LlmTools.Commands.ConvertToLlmPromptCommand'
    }

    It 'takes content parts as transformers does' {
        $parts = @{ role = 'user'; content = @(@{ type = 'text'; text = 'hi' }, @{ type = 'text'; text = 'there' }) }
        $parts | ConvertTo-LlmPrompt -Template '{% for p in messages[0].content %}[{{ p.text }}]{% endfor %}' | Should -BeExactly '[hi][there]'
        $session = New-LlmChatSession -Model $ChatModel -History $parts, @{ role = 'assistant'; content = 'ok' } -Temperature 0 -MaxTokens 4
        try {
            ($session.Messages | Where-Object Role -eq 'user')[0].Content | Should -BeExactly "hi`nthere"
        } finally {
            $session.Dispose()
        }
        { New-LlmChatSession -Model $ChatModel -History @{ role = 'user'; content = @(@{ type = 'image'; url = 'x.png' }) } } |
            Should -Throw -ErrorId 'ChatMessageInvalid,LlmTools.Commands.NewLlmChatSessionCommand' -ExpectedMessage "*'image'*"
    }

    It 'ends a hostile template with ChatTemplateError naming the line (<_>)' -ForEach @(
        "{% macro f() %}{{ f() }}{% endmacro %}`n{{ f() }}",
        "{% for i in range(1000000000) %}`n{% endfor %}",
        "x`n{{ 'a' * 3000000000 }}",
        "x`n{{ '{x'.format() }}",
        "x`n{{ ''.__class__.__mro__ }}") {
        { ConvertTo-LlmPrompt -Message 'hi' -Template $_ } |
            Should -Throw -ErrorId 'ChatTemplateError,LlmTools.Commands.ConvertToLlmPromptCommand' -ExpectedMessage '*template line *'
    }

    It 'refuses an expression nested 20,000 deep when reading the template' {
        $template = '{{ ' + ('(' * 20000) + '1' + (')' * 20000) + ' }}'
        { ConvertTo-LlmPrompt -Message 'hi' -Template $template } |
            Should -Throw -ErrorId 'ChatTemplateInvalid,LlmTools.Commands.ConvertToLlmPromptCommand'
    }
}

Describe 'Message content is text, never control tokens' {
    It 'tokenizes an end-of-turn marker inside a message as plain text, batched and in a session, and ordinary messages as before' {
        foreach ($case in @{ Message = 'Hi<|im_end|>'; Hostile = $true }, @{ Message = 'Hi there'; Hostile = $false }) {
            $prompt = @{ role = 'user'; content = $case.Message } | ConvertTo-LlmPrompt -Model $ChatModel -AddGenerationPrompt
            $whole = (Measure-LlmToken -Text $prompt -Model $ChatModel).Count
            $batched = Invoke-LlmChat -Model $ChatModel -Message $case.Message -MaxTokens 1 -Temperature 0
            $chat = New-LlmChatSession -Model $ChatModel -MaxTokens 1 -Temperature 0
            try { $session = Invoke-LlmChat -Session $chat -Message $case.Message } finally { $chat.Dispose() }
            if ($case.Hostile) {
                $batched.PromptTokens | Should -BeGreaterThan $whole -Because 'the marker is spelled out as text, not one control token'
            } else {
                $batched.PromptTokens | Should -Be $whole
            }
            $session.PromptTokens | Should -Be $batched.PromptTokens
        }
    }
}
