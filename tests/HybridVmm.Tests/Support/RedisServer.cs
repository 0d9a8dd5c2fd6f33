using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace HybridVmm.Tests.Support;

/// <summary>
/// A real redis-server on a free loopback port for the cluster tests; disposing kills it. Without a data directory it
/// keeps nothing on disk; with one it logs every write to an append-only file, synced before it answers, so that
/// <see cref="Kill"/> then <see cref="Restart"/> brings back every write it acknowledged, as a durable store must. A
/// machine without redis-server skips those tests with a message saying so (.ci/run installs it).
/// </summary>
public sealed class RedisServer : IDisposable
{
    private readonly string _program;
    private readonly string? _dataDirectory;
    private Process _process;

    private RedisServer(string program, string? dataDirectory, Process process, int port)
    {
        _program = program;
        _dataDirectory = dataDirectory;
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public string Connection => $"127.0.0.1:{Port}";

    /// <summary>Starts redis-server; with <paramref name="dataDirectory"/>, durable there (append-only file, fsync always).</summary>
    public static RedisServer Start(string? dataDirectory = null)
    {
        string? program = new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists);
        if (program is null)
        {
            Assert.Ignore("redis-server is not installed (apt-get install redis-server; .ci/run installs it): the cluster tests need a real Redis");
        }

        int port = FreePort();
        var redis = new RedisServer(program!, dataDirectory, Launch(program!, port, dataDirectory), port);
        redis.WaitUntilItAnswers();
        return redis;
    }

    public int ProcessId => _process.Id;

    /// <summary>SIGKILL, as a crash: nothing is flushed that was not already (with a data directory, everything acknowledged was).</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }
    }

    /// <summary>Starts redis-server again on the same port with the same data directory, after <see cref="Kill"/>.</summary>
    public void Restart()
    {
        Assert.That(_process.HasExited, Is.True, "Restart follows Kill");
        _process.Dispose();
        _process = Launch(_program, Port, _dataDirectory);
        WaitUntilItAnswers();
    }

    private static Process Launch(string program, int port, string? dataDirectory)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string[] persistence = dataDirectory is null
            ? ["--save", "", "--appendonly", "no"]
            : ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dataDirectory];
        foreach (string arg in (string[])["--port", port.ToString(), "--bind", "127.0.0.1", .. persistence])
        {
            start.ArgumentList.Add(arg);
        }

        Process process = Process.Start(start)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private void WaitUntilItAnswers()
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(30);
        while (!Answers())
        {
            if (_process.HasExited || DateTime.UtcNow > deadline)
            {
                Dispose();
                Assert.Fail($"redis-server on port {Port} did not answer PING within 30 s");
            }

            Thread.Sleep(100);
        }
    }

    /// <summary>A TCP port nobody listens on now (the OS picks it; another process could take it before we bind it).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private bool Answers() => HybridVmm.Samples.Lecture.ClusterLab.RedisAnswers(Port); // the lecture's own PING

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
