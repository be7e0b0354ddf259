using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace LlmTools.TestModels;

/// <summary>One request the fake Hub or its CDN received.</summary>
public sealed record HubRequest(string Server, string Method, string Path, bool HadAuthorization, string? Range);

/// <summary>
/// A real HTTP server on 127.0.0.1 that speaks the Hugging Face Hub's protocol (resolve with X-Repo-Commit, ETag,
/// X-Linked-Etag/Size and a 302 to a CDN on another host and port, /api/models, /api/whoami-v2, X-Error-Code errors,
/// Range requests), with faults to inject: dropped connections, corrupted bodies, slow transfers.
/// </summary>
public sealed class FakeHub : IDisposable
{
    private readonly HttpListener _hub = new();
    private readonly HttpListener _cdn = new();
    private readonly ConcurrentDictionary<string, Repo> _repos = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte[]> _blobs = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();

    private sealed class Repo
    {
        public required string Id;
        public required string Commit;
        public required Dictionary<string, byte[]> Files;
        public bool Gated;
        public bool Private;
        public HashSet<string> Members = [];
        public long Downloads;
    }

    public FakeHub()
    {
        HubPort = FreePort();
        CdnPort = FreePort();
        _hub.Prefixes.Add($"http://127.0.0.1:{HubPort}/");
        _cdn.Prefixes.Add($"http://localhost:{CdnPort}/");
        _hub.Start();
        _cdn.Start();
        _ = Task.Run(() => Serve(_hub, "hub", HandleHub));
        _ = Task.Run(() => Serve(_cdn, "cdn", HandleCdn));
    }

    public int HubPort { get; }
    public int CdnPort { get; }
    public string Endpoint => $"http://127.0.0.1:{HubPort}";

    /// <summary>Valid tokens: token → user name. Users in a gated repo's Members are approved.</summary>
    public ConcurrentDictionary<string, string> Tokens { get; } = new();

    public ConcurrentQueue<HubRequest> Requests { get; } = new();

    /// <summary>The next N CDN downloads close the connection after <see cref="DropAfterBytes"/> bytes.</summary>
    public int DropNext { get; set; }
    public long DropAfterBytes { get; set; } = 65536;
    /// <summary>The next N CDN downloads send wrong bytes (same length).</summary>
    public int CorruptNext { get; set; }
    /// <summary>Milliseconds to wait after each 64 KiB the CDN sends.</summary>
    public int DelayPerChunkMs { get; set; }

    /// <summary>The CDN sends this many bytes of the next download, then stalls (sends nothing, keeps the connection) until released or stopped.</summary>
    public long? StallAfterBytes { get; set; }
    /// <summary>Set to let a stalled download continue.</summary>
    public ManualResetEventSlim ReleaseStall { get; } = new(false);
    /// <summary>A server that is not a Hub: 404 without X-Error-Code to every request.</summary>
    public bool NotAHub { get; set; }
    /// <summary>Hostile answers: replaces the commit (X-Repo-Commit and the repository's sha) and the ETag.</summary>
    public string? CommitOverride { get; set; }
    public string? EtagOverride { get; set; }

    /// <summary>Adds a repository; returns its commit.</summary>
    public string AddRepo(string id, IDictionary<string, byte[]> files, bool gated = false, bool isPrivate = false, IEnumerable<string>? members = null)
    {
        var commit = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(id + string.Join(",", files.Keys.Order()) + files.Sum(f => f.Value.Length))));
        var repo = new Repo
        {
            Id = id, Commit = commit, Files = new Dictionary<string, byte[]>(files), Gated = gated, Private = isPrivate,
            Members = [.. members ?? []], Downloads = 1000 - _repos.Count,
        };
        _repos[id] = repo;
        foreach (var (path, bytes) in files)
            if (IsLfs(path)) _blobs[Sha256(bytes)] = bytes;
        return commit;
    }

    public string CommitOf(string id) => _repos[id].Commit;

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    public static string GitSha1(byte[] bytes) =>
        Convert.ToHexStringLower(SHA1.HashData(Encoding.ASCII.GetBytes($"blob {bytes.Length}\0").Concat(bytes).ToArray()));

    private static bool IsLfs(string path) => path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private async Task Serve(HttpListener listener, string name, Action<HttpListenerContext> handle)
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext ctx;
            try { ctx = await listener.GetContextAsync(); }
            catch (Exception) { return; }
            _ = Task.Run(() =>
            {
                Requests.Enqueue(new HubRequest(name, ctx.Request.HttpMethod, ctx.Request.Url!.AbsolutePath,
                    ctx.Request.Headers["Authorization"] is not null, ctx.Request.Headers["Range"]));
                try { handle(ctx); }
                catch (Exception) { try { ctx.Response.Abort(); } catch (Exception) { } }
            });
        }
    }

    private static void Error(HttpListenerResponse r, int status, string? code, string message, string? commit = null)
    {
        r.StatusCode = status;
        if (code is not null) r.Headers["X-Error-Code"] = code;
        r.Headers["X-Error-Message"] = message;
        if (commit is not null) r.Headers["X-Repo-Commit"] = commit;
        var body = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { error = message }));
        r.ContentType = "application/json";
        r.ContentLength64 = body.Length;
        r.OutputStream.Write(body);
        r.Close();
    }

    private static void Json(HttpListenerResponse r, object value)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(value);
        r.ContentType = "application/json";
        r.ContentLength64 = body.Length;
        r.OutputStream.Write(body);
        r.Close();
    }

    /// <summary>Checks the token and the repository's access rules; answers the error itself and returns false when refused.</summary>
    private bool Authorize(HttpListenerContext ctx, Repo? repo, bool content)
    {
        var auth = ctx.Request.Headers["Authorization"];
        string? user = null;
        if (auth is not null)
        {
            var token = auth.StartsWith("Bearer ", StringComparison.Ordinal) ? auth[7..] : auth;
            if (!Tokens.TryGetValue(token, out user))
            {
                Error(ctx.Response, 401, null, "Invalid credentials in Authorization header");
                return false;
            }
        }
        if (repo is null || (repo.Private && (user is null || !repo.Members.Contains(user))))
        {
            Error(ctx.Response, user is null ? 401 : 404, "RepoNotFound", "Repository not found");
            return false;
        }
        if (content && repo.Gated && (user is null || !repo.Members.Contains(user)))
        {
            if (user is null)
                Error(ctx.Response, 401, "GatedRepo", $"Access to model {repo.Id} is restricted. You must have access to it and be authenticated to access it. Please log in.");
            else
                Error(ctx.Response, 403, "GatedRepo", $"Access to model {repo.Id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{repo.Id} to ask for access.");
            return false;
        }
        return true;
    }

    private void HandleHub(HttpListenerContext ctx)
    {
        var req = ctx.Request;
        var path = Uri.UnescapeDataString(req.Url!.AbsolutePath.TrimStart('/'));
        if (NotAHub)
        {
            Error(ctx.Response, 404, null, "Not found");
            return;
        }
        if (path == "api/whoami-v2")
        {
            var auth = req.Headers["Authorization"];
            if (auth is null || !auth.StartsWith("Bearer ") || !Tokens.TryGetValue(auth[7..], out var name))
            {
                Error(ctx.Response, 401, null, "Invalid user token");
                return;
            }
            Json(ctx.Response, new
            {
                type = "user", name, orgs = new[] { new { name = "test-org" } },
                auth = new { type = "access_token", accessToken = new { displayName = "test-token", role = "read" } },
            });
            return;
        }
        if (path == "api/models")
        {
            if (!Authorize(ctx, new Repo { Id = "", Commit = "", Files = [] }, content: false)) return;
            var search = req.QueryString["search"] ?? "";
            var author = req.QueryString["author"];
            var items = _repos.Values
                .Where(r => r.Id.Contains(search, StringComparison.OrdinalIgnoreCase) && (author is null || r.Id.StartsWith(author + "/")) && !r.Private)
                .OrderByDescending(r => r.Downloads)
                .Take(int.TryParse(req.QueryString["limit"], out var lim) ? lim : 100)
                .Select(r => new
                {
                    _id = r.Commit[..24], id = r.Id, downloads = r.Downloads, likes = 3, gated = r.Gated ? (object)"manual" : false,
                    @private = r.Private, lastModified = "2026-11-01T12:00:00.000Z", pipeline_tag = "text-generation", tags = new[] { "gguf" },
                });
            Json(ctx.Response, items);
            return;
        }
        if (path.StartsWith("api/models/", StringComparison.Ordinal))
        {
            // api/models/{org}/{name}/revision/{rev}
            var rest = path["api/models/".Length..].Split('/', 4);
            var repoId = rest[0] + "/" + rest[1];
            _repos.TryGetValue(repoId, out var repo);
            if (!Authorize(ctx, repo, content: false)) return;
            var rev = rest.Length >= 4 && rest[2] == "revision" ? rest[3] : "main";
            if (rev != "main" && rev != "HEAD" && rev != repo!.Commit)
            {
                Error(ctx.Response, 404, "RevisionNotFound", $"Invalid rev id: {rev}");
                return;
            }
            Json(ctx.Response, new
            {
                _id = repo!.Commit[..24], id = repo.Id, sha = CommitOverride ?? repo.Commit, gated = repo.Gated ? (object)"manual" : false, @private = repo.Private,
                downloads = repo.Downloads, likes = 3, lastModified = "2026-11-01T12:00:00.000Z",
                siblings = repo.Files.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => IsLfs(f.Key)
                    ? (object)new { rfilename = f.Key, size = f.Value.Length, blobId = GitSha1(f.Value), lfs = new { sha256 = Sha256(f.Value), size = f.Value.Length, pointerSize = 134 } }
                    : new { rfilename = f.Key, size = f.Value.Length, blobId = GitSha1(f.Value) }),
            });
            return;
        }
        // {org}/{name}/resolve/{rev}/{path}
        var parts = path.Split('/', 5);
        if (parts.Length == 5 && parts[2] == "resolve")
        {
            var repoId = parts[0] + "/" + parts[1];
            _repos.TryGetValue(repoId, out var repo);
            if (!Authorize(ctx, repo, content: true)) return;
            var rev = parts[3];
            if (rev != "main" && rev != repo!.Commit)
            {
                Error(ctx.Response, 404, "RevisionNotFound", $"Invalid rev id: {rev}");
                return;
            }
            if (!repo!.Files.TryGetValue(parts[4], out var bytes))
            {
                Error(ctx.Response, 404, "EntryNotFound", $"{parts[4]} does not exist on \"{rev}\"", repo.Commit);
                return;
            }
            var r = ctx.Response;
            r.Headers["X-Repo-Commit"] = CommitOverride ?? repo.Commit;
            if (IsLfs(parts[4]))
            {
                var sha = Sha256(bytes);
                r.StatusCode = 302;
                r.Headers["Location"] = $"http://localhost:{CdnPort}/blobs/{sha}?expires=3600&signature=abc";
                r.Headers["X-Linked-Etag"] = $"\"{EtagOverride ?? sha}\"";
                r.Headers["X-Linked-Size"] = bytes.Length.ToString();
                r.Headers["ETag"] = $"\"{GitSha1(Encoding.UTF8.GetBytes("version https://git-lfs.github.com/spec/v1"))}\"";
                r.ContentLength64 = 0;
                r.Close();
                return;
            }
            r.Headers["ETag"] = $"\"{GitSha1(bytes)}\"";
            r.ContentLength64 = bytes.Length;
            if (req.HttpMethod == "GET") r.OutputStream.Write(bytes);
            r.Close();
            return;
        }
        Error(ctx.Response, 404, null, "Not found");
    }

    private void HandleCdn(HttpListenerContext ctx)
    {
        var parts = ctx.Request.Url!.AbsolutePath.Trim('/').Split('/');
        if (parts.Length != 2 || parts[0] != "blobs" || !_blobs.TryGetValue(parts[1], out var bytes))
        {
            Error(ctx.Response, 404, null, "NoSuchKey");
            return;
        }
        var r = ctx.Response;
        long start = 0;
        var range = ctx.Request.Headers["Range"];
        if (range is not null && range.StartsWith("bytes=") && long.TryParse(range[6..].TrimEnd('-').Split('-')[0], out start))
        {
            if (start >= bytes.Length)
            {
                r.StatusCode = 416;
                r.Headers["Content-Range"] = $"bytes */{bytes.Length}";
                r.Close();
                return;
            }
            r.StatusCode = 206;
            r.Headers["Content-Range"] = $"bytes {start}-{bytes.Length - 1}/{bytes.Length}";
        }
        var body = bytes;
        if (CorruptNext > 0)
        {
            CorruptNext--;
            body = (byte[])bytes.Clone();
            for (int i = 0; i < body.Length; i += 997) body[i] ^= 0x5A;
        }
        long length = bytes.Length - start;
        r.ContentLength64 = length;
        r.SendChunked = false;
        bool drop = false;
        if (DropNext > 0)
        {
            DropNext--;
            drop = true;
        }
        var output = r.OutputStream;
        long sent = 0;
        const int chunk = 65536;
        for (long offset = start; offset < bytes.Length; offset += chunk)
        {
            int n = (int)Math.Min(chunk, bytes.Length - offset);
            if (StallAfterBytes is { } stallAt && sent + n > stallAt)
            {
                StallAfterBytes = null;
                n = (int)Math.Max(0, stallAt - sent);
                output.Write(body, (int)offset + 0, n);
                output.Flush();
                sent += n;
                offset += n - chunk; // continue after the bytes just sent, once released
                WaitHandle.WaitAny([ReleaseStall.WaitHandle, _stop.Token.WaitHandle]);
                if (_stop.IsCancellationRequested) { r.Abort(); return; }
                continue;
            }
            if (drop && sent + n > DropAfterBytes)
            {
                n = (int)Math.Max(0, DropAfterBytes - sent);
                output.Write(body, (int)offset, n);
                output.Flush();
                r.Abort(); // the connection drops mid-file
                return;
            }
            output.Write(body, (int)offset, n);
            sent += n;
            if (DelayPerChunkMs > 0) Thread.Sleep(DelayPerChunkMs);
        }
        r.Close();
    }

    public void Dispose()
    {
        _stop.Cancel();
        try { _hub.Stop(); _cdn.Stop(); } catch (ObjectDisposedException) { }
        _hub.Close();
        _cdn.Close();
    }
}
