using System.Net.WebSockets;
using System.Threading.Channels;
using HybridVmm.Cli.Api;
using HybridVmm.Cli.Common;
using HybridVmm.Cli.Terminal;

namespace HybridVmm.Cli.Commands;

/// <summary>
/// <c>hybridvmm vm console NAME</c>: COM1 of a VM in serve, over the API's WebSocket, as <c>virsh console</c>. What the
/// VM wrote while no console was attached is replayed first. On a terminal, keys go to the guest in raw mode and
/// Ctrl-A x detaches (the VM runs on); with stdin a pipe or file its bytes are typed, and the console stays until the
/// VM stops or Ctrl+C. The VM stopping ends the session with status 0.
/// </summary>
internal static class VmConsoleSession
{
    private const string Help =
        "C-a h    print this help\r\n" +
        "C-a x    detach (the VM runs on; 'hybridvmm vm console' attaches again)\r\n" +
        "C-a C-a  send C-a to the guest\r\n";

    public static async Task<int> RunAsync(ApiClient client, string name, CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        (ClientWebSocket? socket, int refused) = await client.ConnectWebSocketAsync($"/api/vms/{Uri.EscapeDataString(name)}/console", cancellationToken);
        if (socket is null)
        {
            stderr.WriteLine(refused switch
            {
                404 => $"hybridvmm: error: no VM named '{name}' (404)",
                409 => $"hybridvmm: error: a console is already attached to '{name}', or it has no COM1 (409)",
                401 => "hybridvmm: error: the API refused the token (401)",
                _ => $"hybridvmm: error: the API refused the console ({refused})",
            });
            return refused switch { 401 => ExitStatus.PermissionDenied, 503 => ExitStatus.Unavailable, _ => ExitStatus.ApiRefused };
        }

        using (socket)
        {
            bool terminal = Libc.IsTerminal(Libc.StdinFileno);
            using RawTerminal? raw = terminal ? RawTerminal.Enter(out _) : null;
            if (raw is not null)
            {
                stderr.Write($"hybridvmm: attached to {name}'s COM1; Ctrl-A x detaches, Ctrl-A h lists the keys.\r\n");
            }

            using var session = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var typed = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
            var detach = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            StartReadingInput(raw is not null, typed.Writer, detach, stderr);
            Task sending = SendTypedAsync(socket, typed.Reader, session.Token);
            Task<bool> receiving = ReceiveOutputAsync(socket, session.Token);
            Task first = await Task.WhenAny(receiving, detach.Task, Task.Delay(Timeout.Infinite, session.Token).ContinueWith(_ => { }, TaskScheduler.Default));
            bool stopped = first == receiving && receiving.IsCompletedSuccessfully && receiving.Result;
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                // Detaching (or answering the API's close when the VM stopped): the close handshake, then the receiver ends.
                using var closing = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "detached", closing.Token);
                    await receiving.WaitAsync(closing.Token);
                }
                catch (Exception e) when (e is WebSocketException or OperationCanceledException or TimeoutException)
                {
                }
            }

            session.Cancel();
            try
            {
                await Task.WhenAll(sending, receiving);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException)
            {
            }

            raw?.Dispose();
            stderr.Write(stopped ? $"hybridvmm: '{name}' stopped; console closed ({socket.CloseStatusDescription}).\n"
                : first == detach.Task ? $"hybridvmm: detached from '{name}'; it runs on.\n"
                : $"hybridvmm: detached from '{name}'.\n");
            return cancellationToken.IsCancellationRequested && first != detach.Task && !stopped ? ExitStatus.Interrupted : ExitStatus.Success;
        }
    }

    /// <summary>A thread reads stdin: keys through the escape on a terminal, a pipe's bytes as they are.</summary>
    private static void StartReadingInput(bool interactive, ChannelWriter<byte[]> typed, TaskCompletionSource detach, TextWriter stderr)
    {
        var reader = new Thread(() =>
        {
            var escape = new ConsoleEscape();
            byte[] buffer = new byte[4096];
            using Stream stdin = Console.OpenStandardInput();
            while (true)
            {
                int read;
                try
                {
                    read = interactive ? Libc.ReadBytes(Libc.StdinFileno, buffer) : stdin.Read(buffer);
                }
                catch (IOException)
                {
                    read = 0;
                }

                if (read <= 0)
                {
                    typed.TryComplete(); // end of input; the console stays for the output
                    return;
                }

                if (!interactive)
                {
                    typed.TryWrite(buffer[..read]);
                    continue;
                }

                var send = new List<byte>(read);
                foreach (byte key in buffer.AsSpan(0, read))
                {
                    switch (escape.Feed(key, out byte b))
                    {
                        case EscapeAction.Send:
                            send.Add(b);
                            break;
                        case EscapeAction.Help:
                            stderr.Write("\r\n" + Help);
                            break;
                        case EscapeAction.Quit:
                            typed.TryWrite(send.ToArray());
                            typed.TryComplete();
                            detach.TrySetResult();
                            return;
                    }
                }

                typed.TryWrite(send.ToArray());
            }
        })
        { IsBackground = true, Name = "console input" };
        reader.Start();
    }

    private static async Task SendTypedAsync(WebSocket socket, ChannelReader<byte[]> typed, CancellationToken cancellationToken)
    {
        await foreach (byte[] bytes in typed.ReadAllAsync(cancellationToken))
        {
            if (bytes.Length > 0)
            {
                await socket.SendAsync(bytes, WebSocketMessageType.Binary, endOfMessage: true, cancellationToken);
            }
        }
    }

    /// <summary>Writes the VM's output to stdout until the API closes the console; true when it closed because the VM or serve stopped.</summary>
    private static async Task<bool> ReceiveOutputAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        using Stream stdout = Console.OpenStandardOutput();
        byte[] buffer = new byte[8192];
        while (true)
        {
            WebSocketReceiveResult received = await socket.ReceiveAsync(buffer, cancellationToken);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return received.CloseStatusDescription is "the VM stopped" or "serve is stopping";
            }

            await stdout.WriteAsync(buffer.AsMemory(0, received.Count), cancellationToken);
            await stdout.FlushAsync(cancellationToken);
        }
    }
}
