using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace HybridVmm.Tests.Support;

/// <summary>
/// A real redis-server on a free loopback port, with no persistence, for the cluster tests; disposing kills it. A
/// machine without redis-server skips those tests with a message saying so (.ci/run installs it).
/// </summary>
public sealed class RedisServer : IDisposable
{
    private readonly Process _process;

    private RedisServer(Process process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public string Connection => $"127.0.0.1:{Port}";

    public static RedisServer Start()
    {
        string? program = new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists);
        if (program is null)
        {
            Assert.Ignore("redis-server is not installed (apt-get install redis-server; .ci/run installs it): the cluster tests need a real Redis");
        }

        int port = FreePort();
        var start = new ProcessStartInfo(program!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[] { "--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" })
        {
            start.ArgumentList.Add(arg);
        }

        Process process = Process.Start(start)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var redis = new RedisServer(process, port);
        DateTime deadline = DateTime.UtcNow.AddSeconds(30);
        while (!redis.Answers())
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                redis.Dispose();
                Assert.Fail($"redis-server on port {port} did not answer PING within 30 s");
            }

            Thread.Sleep(100);
        }

        return redis;
    }

    /// <summary>A TCP port nobody listens on now (the OS picks it; another process could take it before we bind it).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private bool Answers()
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(IPAddress.Loopback, Port);
            NetworkStream stream = client.GetStream();
            stream.ReadTimeout = 2000;
            stream.Write("PING\r\n"u8);
            var buffer = new byte[16];
            int read = stream.Read(buffer);
            return Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }

        _process.Dispose();
    }
}
