using System.Net;
using System.Net.Sockets;
using System.Text;
using HybridVmm.Cli.Api;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// The <c>vm</c> client's deadlines (docs/serve.md#live-migration): an ordinary request gives up when the API does not
/// answer in time, but a save, restore or migration waits for its answer however long the work takes, since serve
/// bounds that work itself. The server here is a plain TCP listener that answers one request late.
/// </summary>
public class ApiClientDeadlineTests
{
    private static readonly TimeSpan ShortDeadline = TimeSpan.FromMilliseconds(300);
    private static readonly TimeSpan Late = TimeSpan.FromSeconds(2);

    [Test]
    public async Task AnOrdinaryRequestGivesUpAtItsDeadline()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        (Task serving, ApiClient client) = LateServer(listener);
        using (client)
        {
            Assert.That(async () => await client.GetAsync("/api/vms", CancellationToken.None), Throws.InstanceOf<TaskCanceledException>());
        }

        await serving;
    }

    [Test]
    public async Task ASaveRestoreOrMigrationWaitsPastThatDeadlineForItsAnswer()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        (Task serving, ApiClient client) = LateServer(listener);
        using (client)
        {
            ApiResponse response = await client.PostUntilDoneAsync("/api/vms/slow/migrate", new MigrateVmRequest { To = "127.0.0.1:1" }, CancellationToken.None);
            await serving;
            Assert.That((response.Status, response.Body), Is.EqualTo((200, "{\"done\":true}")));
        }
    }

    /// <summary>Starts <paramref name="listener"/> answering one request late, and a client of it with the short deadline.</summary>
    private static (Task Serving, ApiClient Client) LateServer(TcpListener listener)
    {
        listener.Start();
        return (AnswerLateAsync(listener), ApiClient.ForTcp((IPEndPoint)listener.LocalEndpoint, "token", ShortDeadline));
    }

    /// <summary>Reads one request's head, waits <see cref="Late"/>, then answers 200 with a small JSON body.</summary>
    private static async Task AnswerLateAsync(TcpListener listener)
    {
        using TcpClient accepted = await listener.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromMinutes(1));
        NetworkStream stream = accepted.GetStream();
        var request = new StringBuilder();
        var buffer = new byte[4096];
        while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            int read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromMinutes(1));
            if (read == 0)
            {
                return;
            }

            request.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        await Task.Delay(Late);
        byte[] body = "{\"done\":true}"u8.ToArray();
        byte[] head = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
        try
        {
            await stream.WriteAsync(head);
            await stream.WriteAsync(body);
            // Read what is left of the request (its body) until the client hangs up, so that closing does not reset the answer away.
            accepted.Client.Shutdown(SocketShutdown.Send);
            while (await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromMinutes(1)) > 0)
            {
            }
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            // the client that gave up has closed the connection
        }
    }
}
