using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace LlmTools.Hub;

/// <summary>Metadata of a file from HEAD /{repo}/resolve/{revision}/{path}.</summary>
public sealed record HubFileMetadata(string Commit, string Etag, long Size, Uri DownloadUrl);

/// <summary>
/// The Hugging Face Hub's HTTP API as its own clients speak it: Bearer token on Hub calls (never on a redirect to
/// another host), X-Error-Code turned into errors that say what to do, X-Repo-Commit / ETag / X-Linked-* headers.
/// </summary>
public sealed class HubClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly string? _token;

    public HubClient(HubSettings settings, string? token, TimeSpan? timeout = null)
    {
        Settings = settings;
        _token = token;
        if (!Uri.TryCreate(settings.Endpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https")
            || string.IsNullOrEmpty(endpoint.Host))
            throw new LlmException("HubInvalidEndpoint", LlmErrorKind.InvalidArgument,
                $"HF_ENDPOINT is '{settings.Endpoint}', which is not an http(s) URL. Set it to the Hub's address " +
                $"(for example {HubSettings.DefaultEndpoint}) or remove it.", settings.Endpoint);
        _origin = endpoint;
        // A token is sent in an HTTP header, which holds only visible ASCII: anything else is a paste error, not a
        // network problem.
        if (token is not null && token.Any(c => c is < '!' or > '~'))
            throw new LlmException("HubMalformedToken", LlmErrorKind.InvalidArgument,
                "The Hugging Face token contains characters a token cannot have (non-ASCII letters, spaces or control " +
                "characters). Tokens look like hf_... : copy it again from https://huggingface.co/settings/tokens.");
        ReadTimeout = timeout ?? settings.ReadTimeout;
        // Redirects are followed by hand: the Authorization header must not reach another host (the CDN).
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(10),
        };
        // No overall limit: a download takes as long as it takes. Each wait for the next bytes is limited instead
        // (ReadTimeout), and the caller's cancellation interrupts any wait at once.
        _http = new HttpClient(handler) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd($"llmtools/{typeof(HubClient).Assembly.GetName().Version?.ToString(3)}");
        _http.DefaultRequestHeaders.UserAgent.ParseAdd($"dotnet/{Environment.Version.ToString(2)}");
    }

    private readonly Uri _origin;

    public HubSettings Settings { get; }
    public bool HasToken => _token is not null;

    /// <summary>The longest wait for an answer or for the next bytes of one (HF_HUB_DOWNLOAD_TIMEOUT).</summary>
    public TimeSpan ReadTimeout { get; }

    /// <summary>
    /// Reads from a response body, giving up when no byte comes for <see cref="ReadTimeout"/> (an IOException, which
    /// the downloader resumes from) and returning at once when <paramref name="cancel"/> fires.
    /// </summary>
    internal int Read(Stream body, byte[] buffer, CancellationToken cancel)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        limit.CancelAfter(ReadTimeout);
        try
        {
            return body.ReadAsync(buffer.AsMemory(), limit.Token).AsTask().GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            throw new IOException($"no data came for {ReadTimeout.TotalSeconds:0.#} s (HF_HUB_DOWNLOAD_TIMEOUT)");
        }
    }

    public void Dispose() => _http.Dispose();

    private void EnsureOnline(string what)
    {
        if (Settings.Offline)
            throw new LlmException("HubOffline", LlmErrorKind.ResourceUnavailable,
                $"HF_HUB_OFFLINE is set, so LlmTools makes no network call ({what}). Unset it to reach the Hub, or use a model already in the cache.");
    }

    /// <summary>Sends a request to the Hub, following redirects by hand (dropping the token when the host changes).</summary>
    internal HttpResponseMessage Send(HttpMethod method, Uri url, CancellationToken cancel, Action<HttpRequestMessage>? configure = null,
        bool followRedirects = true, HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead)
    {
        EnsureOnline(url.AbsolutePath);
        var origin = _origin;
        for (int hop = 0; ; hop++)
        {
            var request = new HttpRequestMessage(method, url);
            if (_token is not null && SameOrigin(url, origin))
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
            configure?.Invoke(request);
            HttpResponseMessage response;
            // The answer (its headers, and its body unless the caller streams it) must come within ReadTimeout.
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            limit.CancelAfter(ReadTimeout);
            try
            {
                response = _http.Send(request, completion, limit.Token);
            }
            catch (HttpRequestException e)
            {
                throw new LlmException("HubUnreachable", LlmErrorKind.ResourceUnavailable,
                    $"The Hub at {Settings.Endpoint} cannot be reached ({e.Message}). Check the network or HF_ENDPOINT; " +
                    "models already downloaded still work (HF_HUB_OFFLINE=1 skips the network).", url.GetLeftPart(UriPartial.Path), e);
            }
            catch (OperationCanceledException e) when (!cancel.IsCancellationRequested)
            {
                throw new LlmException("HubTimeout", LlmErrorKind.ResourceUnavailable,
                    $"The Hub at {Settings.Endpoint} did not answer within {ReadTimeout.TotalSeconds:0.#} s (HF_HUB_DOWNLOAD_TIMEOUT sets the limit).",
                    url.GetLeftPart(UriPartial.Path), e);
            }
            catch (OperationCanceledException e)
            {
                throw new LlmException("OperationCancelled", LlmErrorKind.OperationStopped, "The request to the Hub was cancelled.",
                    url.GetLeftPart(UriPartial.Path), e);
            }
            int status = (int)response.StatusCode;
            if (followRedirects && status is 301 or 302 or 303 or 307 or 308 && response.Headers.Location is { } location && hop < 10)
            {
                url = location.IsAbsoluteUri ? location : new Uri(url, location);
                response.Dispose();
                continue;
            }
            return response;
        }
    }

    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port && a.Scheme == b.Scheme;

    internal Uri Url(string relative) => new(_origin.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/" + relative.TrimStart('/'));

    /// <summary>Turns a Hub error reply into an error that says what to do.</summary>
    internal LlmException Error(HttpResponseMessage response, string repoId, string? revision = null, string? path = null)
    {
        string? code = response.Headers.TryGetValues("X-Error-Code", out var codes) ? codes.FirstOrDefault() : null;
        string? message = response.Headers.TryGetValues("X-Error-Message", out var messages) ? messages.FirstOrDefault() : null;
        int status = (int)response.StatusCode;
        string page = $"{Settings.Endpoint}/{repoId}";
        return code switch
        {
            "GatedRepo" => new LlmException("HubGatedRepo", LlmErrorKind.PermissionDenied,
                status == 403
                    ? $"'{repoId}' is gated and this account is not (yet) in its authorized list. Accept the terms at {page}, wait for approval, then try again."
                    : $"'{repoId}' is gated: accept its terms at {page}, then sign in with a token (Connect-HuggingFace -Token hf_... or HF_TOKEN).",
                repoId),
            "RepoNotFound" => new LlmException("HubRepoNotFound", LlmErrorKind.ObjectNotFound,
                HasToken
                    ? $"Repository '{repoId}' was not found, or it is private and this token has no access to it. Check the name (Find-LlmModel searches)."
                    : $"Repository '{repoId}' was not found, or it is private. Check the name (Find-LlmModel searches); for a private repository sign in first (Connect-HuggingFace).",
                repoId),
            "RevisionNotFound" => new LlmException("HubRevisionNotFound", LlmErrorKind.ObjectNotFound,
                $"Revision '{revision}' does not exist in '{repoId}'. Use a branch, tag or commit of the repository (main by default).", repoId),
            "EntryNotFound" => new LlmException("HubFileNotFound", LlmErrorKind.ObjectNotFound,
                $"File '{path}' does not exist in '{repoId}' at '{revision}'. Find-LlmModel -Name {repoId} -Files lists its GGUF files.", repoId),
            _ when status == 401 => new LlmException("HubInvalidToken", LlmErrorKind.PermissionDenied,
                $"The Hub refused the token ({message ?? "Invalid credentials in Authorization header"}). It may be revoked or mistyped: " +
                "create one at https://huggingface.co/settings/tokens and Connect-HuggingFace -Token again.", repoId),
            _ when status == 403 => new LlmException("HubAccessDenied", LlmErrorKind.PermissionDenied,
                $"The Hub refused access to '{repoId}' ({message ?? "forbidden"}).", repoId),
            _ when status == 404 && !AnswersLikeAHub() => new LlmException("HubEndpointNotAHub", LlmErrorKind.ResourceUnavailable,
                $"{Settings.Endpoint} answers 404 to the Hub's API, so it is not a Hugging Face Hub. Check HF_ENDPOINT " +
                $"(default {HubSettings.DefaultEndpoint}).", Settings.Endpoint),
            _ when status == 404 => new LlmException("HubRepoNotFound", LlmErrorKind.ObjectNotFound,
                $"'{repoId}' was not found on the Hub ({message ?? "404"}).", repoId),
            _ => new LlmException("HubError", LlmErrorKind.ResourceUnavailable,
                $"The Hub answered {status} {response.ReasonPhrase} for '{repoId}'{(message is null ? "" : $": {message}")}. Try again later.", repoId),
        };
    }

    /// <summary>
    /// A 404 without the Hub's X-Error-Code: is this server a Hub at all? A Hub lists models at /api/models; a web
    /// server that answers 404 to everything does not.
    /// </summary>
    private bool AnswersLikeAHub()
    {
        try
        {
            using var probe = Send(HttpMethod.Get, Url("api/models?limit=1"), CancellationToken.None);
            return probe.IsSuccessStatusCode;
        }
        catch (LlmException)
        {
            return false;
        }
    }

    private JsonDocument GetJson(string relative, string repoId, CancellationToken cancel, string? revision = null)
    {
        using var response = Send(HttpMethod.Get, Url(relative), cancel);
        if (!response.IsSuccessStatusCode) throw Error(response, repoId, revision);
        using var stream = response.Content.ReadAsStream(cancel);
        return JsonDocument.Parse(stream);
    }

    public HubUser WhoAmI(HubTokenSource source, CancellationToken cancel)
    {
        if (_token is null)
            throw new LlmException("HubNotSignedIn", LlmErrorKind.InvalidOperation,
                "No Hugging Face token: pass -Token, set HF_TOKEN, or sign in once with Connect-HuggingFace -Token hf_... -Persist.");
        using var doc = GetJson("api/whoami-v2", "whoami", cancel);
        var root = doc.RootElement;
        var orgs = root.TryGetProperty("orgs", out var o) && o.ValueKind == JsonValueKind.Array
            ? o.EnumerateArray().Select(x => x.TryGetProperty("name", out var n) ? n.GetString() ?? "" : "").ToList()
            : [];
        string? role = null, tokenName = null;
        if (root.TryGetProperty("auth", out var auth) && auth.TryGetProperty("accessToken", out var at))
        {
            role = at.TryGetProperty("role", out var r) ? r.GetString() : null;
            tokenName = at.TryGetProperty("displayName", out var d) ? d.GetString() : null;
        }
        return new HubUser
        {
            Name = root.GetProperty("name").GetString() ?? "",
            Type = root.TryGetProperty("type", out var t) ? t.GetString() ?? "user" : "user",
            Organizations = orgs,
            TokenRole = role,
            TokenName = tokenName,
            TokenSource = source.ToString(),
            Endpoint = Settings.Endpoint,
        };
    }

    /// <summary>Searches GGUF models: /api/models?search=&amp;author=&amp;filter=gguf&amp;sort=&amp;limit=.</summary>
    public IReadOnlyList<HubModel> Search(string? search, string? author, string sort, int limit, CancellationToken cancel)
    {
        var query = new List<string> { "filter=gguf", "sort=" + Uri.EscapeDataString(sort), "direction=-1", "limit=" + limit,
            "expand[]=downloads", "expand[]=likes", "expand[]=gated", "expand[]=lastModified", "expand[]=private", "expand[]=pipeline_tag", "expand[]=tags" };
        if (!string.IsNullOrEmpty(search)) query.Add("search=" + Uri.EscapeDataString(search));
        if (!string.IsNullOrEmpty(author)) query.Add("author=" + Uri.EscapeDataString(author));
        using var doc = GetJson("api/models?" + string.Join("&", query), search ?? author ?? "search", cancel);
        return doc.RootElement.EnumerateArray().Select(ParseModel).ToList();
    }

    internal static HubModel ParseModel(JsonElement e) => new()
    {
        Id = e.GetProperty("id").GetString() ?? "",
        Downloads = e.TryGetProperty("downloads", out var d) && d.TryGetInt64(out var dl) ? dl : 0,
        Likes = e.TryGetProperty("likes", out var l) && l.TryGetInt64(out var lk) ? lk : 0,
        Gated = e.TryGetProperty("gated", out var g) ? g.ValueKind switch
        {
            JsonValueKind.String => g.GetString() ?? "False",
            JsonValueKind.True => "True",
            _ => "False",
        } : "False",
        Private = e.TryGetProperty("private", out var p) && p.ValueKind == JsonValueKind.True,
        LastModified = e.TryGetProperty("lastModified", out var m) && m.TryGetDateTime(out var dt) ? dt : null,
        PipelineTag = e.TryGetProperty("pipeline_tag", out var pt) ? pt.GetString() : null,
        Tags = e.TryGetProperty("tags", out var tags) && tags.ValueKind == JsonValueKind.Array
            ? tags.EnumerateArray().Select(x => x.GetString() ?? "").ToList() : [],
    };

    /// <summary>A repository at a revision: its commit and files (with sizes and LFS sha256).</summary>
    public HubRepoInfo GetRepoInfo(string repoId, string revision, CancellationToken cancel)
    {
        if (!HubCache.IsSafeRevision(revision)) throw HubCache.InvalidRevision(revision);
        using var doc = GetJson($"api/models/{repoId}/revision/{Uri.EscapeDataString(revision)}?blobs=true", repoId, cancel, revision);
        var root = doc.RootElement;
        var files = new List<HubRepoFile>();
        if (root.TryGetProperty("siblings", out var siblings))
            foreach (var s in siblings.EnumerateArray())
            {
                long size = s.TryGetProperty("size", out var sz) && sz.TryGetInt64(out var n) ? n : -1;
                string? sha = s.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object && lfs.TryGetProperty("sha256", out var h) ? h.GetString() : null;
                if (sha is not null && lfs.TryGetProperty("size", out var ls) && ls.TryGetInt64(out var lsize)) size = lsize;
                files.Add(new HubRepoFile(s.GetProperty("rfilename").GetString() ?? "", size, sha));
            }
        return new HubRepoInfo(ParseModel(root), root.TryGetProperty("sha", out var c) ? c.GetString() ?? revision : revision, files);
    }

    /// <summary>HEAD of a file: commit, etag (sha256 for LFS files, git sha1 otherwise), size, where to download it.</summary>
    public HubFileMetadata Head(string repoId, string revision, string path, CancellationToken cancel)
    {
        if (!HubCache.IsSafeRevision(revision)) throw HubCache.InvalidRevision(revision);
        HubCache.RequireFilePath(path);
        var url = Url($"{repoId}/resolve/{Uri.EscapeDataString(revision)}/{EscapePath(path)}");
        for (int hop = 0; hop < 5; hop++)
        {
            using var response = Send(HttpMethod.Head, url, cancel, r => r.Headers.AcceptEncoding.ParseAdd("identity"), followRedirects: false);
            int status = (int)response.StatusCode;
            var location = response.Headers.Location;
            if (status is >= 300 and < 400 && location is not null && !location.IsAbsoluteUri)
            {
                url = new Uri(url, location); // a renamed repository: follow on the Hub itself
                continue;
            }
            if (status >= 400 || (status >= 300 && location is null)) throw Error(response, repoId, revision, path);
            string? commit = Header(response, "X-Repo-Commit");
            string? etag = Header(response, "X-Linked-Etag") ?? response.Headers.ETag?.Tag ?? Header(response, "ETag");
            string? size = Header(response, "X-Linked-Size") ?? (status < 300 ? response.Content.Headers.ContentLength?.ToString() : null);
            if (commit is null || etag is null || size is null || !long.TryParse(size, out long bytes))
                throw new LlmException("HubBadResponse", LlmErrorKind.InvalidData,
                    $"The Hub's answer for '{repoId}/{path}' lacks X-Repo-Commit, ETag or size headers, so the file cannot be cached safely.", repoId);
            etag = etag.Replace("W/", "").Trim('"');
            // Both name files in the cache: only hashes are accepted, so no answer can steer a path.
            HubCache.RequireCommit(commit);
            HubCache.RequireEtag(etag);
            if (bytes < 0)
                throw new LlmException("HubBadResponse", LlmErrorKind.InvalidData, $"The Hub announced a size of {bytes} bytes for '{repoId}/{path}'.", repoId);
            return new HubFileMetadata(commit, etag, bytes, status >= 300 ? location! : url);
        }
        throw new LlmException("HubBadResponse", LlmErrorKind.InvalidData, $"Too many redirects for '{repoId}/{path}'.", repoId);
    }

    private static string? Header(HttpResponseMessage r, string name) =>
        r.Headers.TryGetValues(name, out var v) ? v.FirstOrDefault() : r.Content.Headers.TryGetValues(name, out var c) ? c.FirstOrDefault() : null;

    internal static string EscapePath(string path) => string.Join("/", path.Split('/').Select(Uri.EscapeDataString));
}

/// <summary>A file of a repository as the Hub lists it.</summary>
public sealed record HubRepoFile(string Path, long Size, string? Sha256);

/// <summary>A repository at a commit.</summary>
public sealed record HubRepoInfo(HubModel Model, string Commit, IReadOnlyList<HubRepoFile> Files);
