using System.Net.WebSockets;
using HybridVmm.Cli.Hosting;
using HybridVmm.HostOS.Vm;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cli.Api;

/// <summary>The serial console over a WebSocket: COM1's output (replayed from the ring buffer, then live) and its input.</summary>
public sealed partial class VmManager
{
    private readonly Dictionary<string, ConsoleInput> _attached = new(StringComparer.Ordinal);

    /// <summary>The input of the console attached to the VM of this name, or null.</summary>
    private ConsoleInput? AttachedInput(string name)
    {
        lock (_attached)
        {
            return _attached.GetValueOrDefault(name);
        }
    }

    /// <summary>
    /// Attaches the WebSocket to the VM's COM1 until the client detaches (closes) or the VM stops; a VM that serve boots
    /// again after a reset keeps its console. Binary or text messages from the client are typed into COM1; the VM's
    /// output goes out as binary messages. One console per VM.
    /// </summary>
    public async Task<ApiProblem?> RunConsoleAsync(string name, Func<Task<WebSocket>> accept, CancellationToken cancellationToken)
    {
        var input = new ConsoleInput();
        ManagedVm? managed = null;
        ApiOutcome<VirtualMachine> attached = await AtBarrierAsync<VirtualMachine>(() =>
        {
            if (Find(name) is not { } m)
            {
                return ApiProblem.UnknownVm(name);
            }

            if (!m.Vm.Configuration.Devices.Contains("com1"))
            {
                return ApiProblem.Conflict($"'{name}' has no COM1 to attach to");
            }

            lock (_attached)
            {
                if (!_attached.TryAdd(name, input))
                {
                    return ApiProblem.Conflict($"a console is already attached to '{name}'; detach it first");
                }
            }

            // Between rounds the worker serves nothing, so the UART may take its input source; an idle guest waiting
            // for keys lets virtual time pass at the host's pace instead of racing (as run's terminal console does).
            m.Vm.Com1.ConnectInput(input);
            system.Kernel.Scheduler.PaceIdleTimeToHost = true;
            managed = m;
            return m.Vm;
        }, cancellationToken).ConfigureAwait(false);
        if (attached.Problem is { } problem)
        {
            return problem;
        }

        VirtualMachine vm = attached.Value!;
        try
        {
            using WebSocket socket = await accept().ConfigureAwait(false);
            using ConsoleRecorder.Tap tap = console.Attach(vm, out byte[] replay);
            logger.LogInformation("Console attached to VM {Name}", name);
            using var session = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            Task receiving = ReceiveInputAsync(socket, input, session.Token);
            Task sending = SendOutputAsync(socket, replay, tap, managed!, vm, session.Token);
            // serve stopping ends the session too: the web server would otherwise wait for it until its shutdown timeout.
            var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using CancellationTokenRegistration onStop = lifetime.ApplicationStopping.Register(() => stopping.TrySetResult());
            Task first = await Task.WhenAny(receiving, sending, stopping.Task).ConfigureAwait(false);
            if (first == stopping.Task || (first == sending && sending.IsCompletedSuccessfully))
            {
                // Say why in the close frame, and let the client answer it before anything is cancelled (cancelling a
                // pending receive would abort the socket instead of closing it).
                using var closing = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, first == stopping.Task ? "serve is stopping" : "the VM stopped",
                        closing.Token).ConfigureAwait(false);
                    await receiving.WaitAsync(closing.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or WebSocketException or TimeoutException)
                {
                }
            }

            session.Cancel();
            try
            {
                await Task.WhenAll(receiving, sending).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or WebSocketException)
            {
            }

            if (socket.State == WebSocketState.CloseReceived)
            {
                using var closing = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "detached", closing.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or WebSocketException)
                {
                }
            }
        }
        finally
        {
            input.End();
            lock (_attached)
            {
                _attached.Remove(name);
            }

            logger.LogInformation("Console detached from VM {Name}", name);
        }

        return null;
    }

    private static async Task ReceiveInputAsync(WebSocket socket, ConsoleInput input, CancellationToken cancellationToken)
    {
        byte[] buffer = new byte[4096];
        while (socket.State == WebSocketState.Open)
        {
            WebSocketReceiveResult received = await socket.ReceiveAsync(buffer, cancellationToken).ConfigureAwait(false);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return;
            }

            while (input.Pending + received.Count > ConsoleInput.MaxPending)
            {
                await Task.Delay(10, cancellationToken).ConfigureAwait(false); // the guest reads slower than the client types
            }

            input.Type(buffer.AsSpan(0, received.Count));
        }
    }

    /// <summary>
    /// The replay, then the VM's output as it comes; after the VM stops, what is left, and then the end, unless serve
    /// boots it again (the tap follows it to the new boot).
    /// </summary>
    private async Task SendOutputAsync(WebSocket socket, byte[] replay, ConsoleRecorder.Tap tap, ManagedVm m, VirtualMachine vm, CancellationToken cancellationToken)
    {
        if (replay.Length > 0)
        {
            await socket.SendAsync(replay, WebSocketMessageType.Binary, endOfMessage: true, cancellationToken).ConfigureAwait(false);
        }

        byte[] buffer = new byte[4096];
        Task<bool>? more = null; // one wait for output at a time, kept across a reboot
        while (true)
        {
            more ??= tap.Output.WaitToReadAsync(cancellationToken).AsTask();
            if (await Task.WhenAny(more, vm.Exited).ConfigureAwait(false) != more)
            {
                // The VM stopped: its last bytes were written before it did; send them, and end the session unless the VM
                // boots again.
                await FlushAsync(socket, tap, buffer, cancellationToken).ConfigureAwait(false);
                if (!BootsAgain(vm, await vm.Exited.ConfigureAwait(false))
                    || await NextBootAsync(m, vm).WaitAsync(cancellationToken).ConfigureAwait(false) is not { } next)
                {
                    return;
                }

                vm = next;
                continue;
            }

            if (!await more.ConfigureAwait(false))
            {
                return; // the VM was deleted
            }

            more = null;
            await FlushAsync(socket, tap, buffer, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task FlushAsync(WebSocket socket, ConsoleRecorder.Tap tap, byte[] buffer, CancellationToken cancellationToken)
    {
        int count;
        do
        {
            count = 0;
            while (count < buffer.Length && tap.Output.TryRead(out byte b))
            {
                buffer[count++] = b;
            }

            if (count > 0)
            {
                await socket.SendAsync(buffer.AsMemory(0, count), WebSocketMessageType.Binary, endOfMessage: true, cancellationToken).ConfigureAwait(false);
            }
        }
        while (count == buffer.Length);
    }
}
