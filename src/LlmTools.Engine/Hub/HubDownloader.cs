using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace LlmTools.Hub;

/// <summary>
/// Downloads one file into the cache: into blobs/{etag}.incomplete (resumed with a Range request after a dropped
/// connection, in this call or a later one), checked (size, then sha256 for LFS files or the git blob sha1), renamed
/// into blobs/{etag}, then linked from the snapshot. A lock file keeps two processes from writing the same blob.
/// </summary>
internal sealed class HubDownloader(HubClient client, HubCache cache)
{
    private const int Attempts = 5;

    public string Download(string repoId, HubFileMetadata meta, string revision, string path, IEngineEvents events, CancellationToken cancel)
    {
        var blob = cache.BlobPath(repoId, meta.Etag);
        if (!File.Exists(blob))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
            using var lockFile = AcquireLock(repoId, meta.Etag, path, events, cancel);
            if (!File.Exists(blob)) Fetch(repoId, meta, path, blob, events, cancel); // another process may have finished it
        }
        var link = cache.LinkSnapshot(repoId, meta.Commit, path, meta.Etag);
        cache.WriteRef(repoId, revision, meta.Commit);
        return link;
    }

    private FileStream AcquireLock(string repoId, string etag, string path, IEngineEvents events, CancellationToken cancel)
    {
        var lockPath = cache.LockPath(repoId, etag);
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        bool told = false;
        while (true)
        {
            try
            {
                // FileShare.None is an exclusive lock (flock) on Linux: a second process waits here.
                return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                if (!told)
                {
                    events.Verbose($"Another process is downloading '{path}'; waiting for it.");
                    told = true;
                }
                if (cancel.WaitHandle.WaitOne(200)) throw Cancelled(path);
            }
        }
    }

    private void Fetch(string repoId, HubFileMetadata meta, string path, string blob, IEngineEvents events, CancellationToken cancel)
    {
        var partial = blob + ".incomplete";
        string activity = $"Downloading {repoId}/{path}";
        var watch = Stopwatch.StartNew();
        long startBytes = File.Exists(partial) ? new FileInfo(partial).Length : 0;
        if (startBytes > 0) events.Verbose($"Resuming '{path}' at {startBytes} of {meta.Size} bytes.");
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                GetInto(meta, partial, path, activity, watch, startBytes, events, cancel);
                break;
            }
            catch (IOException e) when (!cancel.IsCancellationRequested && attempt < Attempts)
            {
                events.Verbose($"The connection dropped while downloading '{path}' ({e.Message}); resuming (attempt {attempt + 1} of {Attempts}).");
                if (cancel.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(250 * attempt))) throw Cancelled(path);
            }
            catch (IOException e) when (!cancel.IsCancellationRequested)
            {
                throw new LlmException("HubDownloadInterrupted", LlmErrorKind.ConnectionError,
                    $"Downloading '{repoId}/{path}' failed {Attempts} times ({e.Message}). The part already downloaded is kept: run the command again to resume.",
                    repoId, e);
            }
            catch (OperationCanceledException)
            {
                throw Cancelled(path);
            }
        }
        events.Progress(activity, "verifying", -1);
        Verify(repoId, path, meta, partial);
        File.Move(partial, blob, overwrite: true);
    }

    private void GetInto(HubFileMetadata meta, string partial, string path, string activity, Stopwatch watch, long startBytes,
        IEngineEvents events, CancellationToken cancel)
    {
        long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
        if (have > meta.Size) { File.Delete(partial); have = 0; }
        if (have == meta.Size && meta.Size > 0) return;
        using var response = client.Send(HttpMethod.Get, meta.DownloadUrl, cancel,
            r => { if (have > 0) r.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(have, null); },
            completion: HttpCompletionOption.ResponseHeadersRead);
        int status = (int)response.StatusCode;
        if (status == 416) { File.Delete(partial); throw new IOException("the server refused the resume position"); }
        if (status >= 400) throw client.Error(response, path);
        bool append = status == 206;
        if (!append) have = 0; // the range was ignored: start again
        using var source = response.Content.ReadAsStream(cancel);
        // Cancellation interrupts a read that is waiting for a stalled server (the connection is aborted).
        using var target = new FileStream(partial, append ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        var buffer = new byte[1 << 20];
        long lastReport = 0;
        while (true)
        {
            int n = client.Read(source, buffer, cancel);
            if (n == 0) break;
            target.Write(buffer, 0, n);
            have += n;
            cancel.ThrowIfCancellationRequested();
            if (watch.ElapsedMilliseconds - lastReport > 250 || have == meta.Size)
            {
                lastReport = watch.ElapsedMilliseconds;
                double speed = (have - startBytes) / Math.Max(0.001, watch.Elapsed.TotalSeconds);
                var left = speed > 0 ? TimeSpan.FromSeconds((meta.Size - have) / speed) : TimeSpan.Zero;
                events.Progress(activity, $"{Mb(have)} of {Mb(meta.Size)} MB, {Mb((long)speed)} MB/s, {left:hh\\:mm\\:ss} left",
                    meta.Size > 0 ? (double)have / meta.Size : 1);
            }
        }
        target.Flush();
        if (have < meta.Size) throw new IOException($"the connection closed after {have} of {meta.Size} bytes");
    }

    private static string Mb(long bytes) => (bytes / 1048576.0).ToString("F1");

    private static void Verify(string repoId, string path, HubFileMetadata meta, string partial)
    {
        long size = new FileInfo(partial).Length;
        string? problem = null;
        if (size != meta.Size) problem = $"it has {size} bytes where the Hub announced {meta.Size}";
        else if (meta.Etag.Length == 64 && Hash(partial, gitBlob: false) is var sha256 && sha256 != meta.Etag)
            problem = $"its sha256 is {sha256} where the Hub announced {meta.Etag}";
        else if (meta.Etag.Length == 40 && Hash(partial, gitBlob: true) is var sha1 && sha1 != meta.Etag)
            problem = $"its git hash is {sha1} where the Hub announced {meta.Etag}";
        if (problem is null) return;
        File.Delete(partial);
        throw new LlmException("HubIntegrityError", LlmErrorKind.InvalidData,
            $"The download of '{repoId}/{path}' is corrupted: {problem}. The partial file was deleted and nothing entered the cache; run the command again.",
            repoId);
    }

    private static string Hash(string file, bool gitBlob)
    {
        using var stream = File.OpenRead(file);
        if (!gitBlob) return Convert.ToHexStringLower(SHA256.HashData(stream));
        using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
        sha1.AppendData(Encoding.ASCII.GetBytes($"blob {stream.Length}\0"));
        var buffer = new byte[1 << 20];
        int n;
        while ((n = stream.Read(buffer, 0, buffer.Length)) > 0) sha1.AppendData(buffer, 0, n);
        return Convert.ToHexStringLower(sha1.GetHashAndReset());
    }

    private static LlmException Cancelled(string path) =>
        new("OperationCancelled", LlmErrorKind.OperationStopped, $"Downloading '{path}' was cancelled; the part already downloaded is kept for a resume.", path);
}
