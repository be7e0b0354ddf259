namespace LlmTools.Engine.Remote;

/// <summary>
/// Piped inputs sent to a server with bounded concurrency: at most ThrottleLimit requests in flight, results taken in
/// input order as soon as they and those before them are done, a failure belonging to its input only.
/// </summary>
public class RemotePipeline<T> : IDisposable where T : class
{
    private readonly SemaphoreSlim _slots;
    private readonly Queue<Entry> _order = new();
    private readonly CancellationTokenSource _stop = new();

    private sealed class Entry
    {
        public required object? State;
        public required Task<T> Task;
    }

    public RemotePipeline(int throttleLimit)
    {
        if (throttleLimit < 1) throw new ArgumentOutOfRangeException(nameof(throttleLimit));
        _slots = new SemaphoreSlim(throttleLimit, throttleLimit);
    }

    /// <summary>Starts one request once a slot is free (waits for one here).</summary>
    public void Add(Func<CancellationToken, T> request, object? state, CancellationToken cancel)
    {
        _slots.Wait(cancel);
        var token = CancellationTokenSource.CreateLinkedTokenSource(cancel, _stop.Token);
        // A thread of its own: the request blocks while it waits for the server, and ThrottleLimit blocked pool
        // threads would starve the pool (and whatever else the process runs on it) on a small machine.
        var task = Task.Factory.StartNew(() =>
        {
            try { return request(token.Token); }
            finally
            {
                token.Dispose();
                _slots.Release();
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);
        lock (_order) _order.Enqueue(new Entry { State = state, Task = task });
    }

    /// <summary>An input whose request could not even be built: it takes its place in the order.</summary>
    public void AddFailed(LlmException error, object? state)
    {
        lock (_order) _order.Enqueue(new Entry { State = state, Task = Task.FromException<T>(error) });
    }

    /// <summary>The finished results at the head of the queue, in input order.</summary>
    public IEnumerable<(object? State, T? Result, LlmException? Error)> TakeReady()
    {
        while (true)
        {
            Entry e;
            lock (_order)
            {
                if (_order.Count == 0 || !_order.Peek().Task.IsCompleted) yield break;
                e = _order.Dequeue();
            }
            if (e.Task.IsCompletedSuccessfully) yield return (e.State, e.Task.Result, null);
            else yield return (e.State, null, e.Task.Exception?.InnerException as LlmException
                ?? new LlmException("RemoteRequestFailed", LlmErrorKind.InvalidOperation,
                    e.Task.Exception?.InnerException?.Message ?? "The request failed.", null, e.Task.Exception?.InnerException));
        }
    }

    /// <summary>Waits until every request in flight has ended (Ctrl+C aborts them).</summary>
    public void WaitAll(CancellationToken cancel)
    {
        Task[] all;
        lock (_order) all = [.. _order.Select(e => e.Task)];
        try
        {
            Task.WaitAll(all, cancel);
        }
        catch (AggregateException) { } // failures are the inputs' own: TakeReady reports them
        catch (OperationCanceledException)
        {
            _stop.Cancel();
            try { Task.WaitAll(all); } catch (AggregateException) { }
        }
    }

    /// <summary>Cancels what is still in flight and waits for it: no request outlives the command.</summary>
    public void Dispose()
    {
        GC.SuppressFinalize(this);
        _stop.Cancel();
        Task[] all;
        lock (_order) all = [.. _order.Select(e => e.Task)];
        try { Task.WaitAll(all); } catch (AggregateException) { }
        _stop.Dispose();
    }
}

/// <summary>Piped completion requests (Invoke-LlmCompletion, Invoke-LlmChat -Endpoint).</summary>
public sealed class RemotePipeline(int throttleLimit) : RemotePipeline<LlmCompletionResult>(throttleLimit);
