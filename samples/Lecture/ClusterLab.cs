using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using HybridVmm.Guests.Multiboot;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// A real cluster on this machine for the lecture (docs/cluster.md): a redis-server on a free loopback port and one
/// <c>hybridvmm serve --cluster</c> process per host, each with its management API on a Unix socket and a live-migration
/// listener, driven through the <c>hybridvmm</c> CLI as a user drives it. Disposing kills every process and removes the
/// lab's directory.
/// </summary>
public sealed class ClusterLab : IDisposable
{
    /// <summary>How long the cluster may take to do one thing asked of it.</summary>
    public static readonly TimeSpan Deadline = TimeSpan.FromMinutes(3);

    private readonly List<Process> _processes = [];
    private readonly Dictionary<string, string> _sockets = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Process> _hosts = new(StringComparer.Ordinal);
    private readonly string _cli;

    private ClusterLab(string cli, string directory)
    {
        _cli = cli;
        Directory = directory;
    }

    public string Directory { get; }

    /// <summary>The Redis connection string, for <c>--cluster</c>.</summary>
    public string Redis { get; private set; } = "";

    /// <summary>
    /// Where the hybridvmm program is: $HYBRIDVMM_CLI, next to this program (the test project has it there), or the
    /// repository's build of src/HybridVmm.Cli; null if none is built.
    /// </summary>
    public static string? FindCli()
    {
        if (Environment.GetEnvironmentVariable("HYBRIDVMM_CLI") is { Length: > 0 } given)
        {
            return File.Exists(given) ? Path.GetFullPath(given) : null;
        }

        string beside = Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll");
        if (File.Exists(beside))
        {
            return beside;
        }

        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            foreach (string configuration in new[] { "Release", "Debug" })
            {
                string built = Path.Combine(dir.FullName, "src", "HybridVmm.Cli", "bin", configuration, "net10.0", "hybridvmm.dll");
                if (File.Exists(built))
                {
                    return built;
                }
            }
        }

        return null;
    }

    public static string? FindRedis() => new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists);

    /// <summary>Starts Redis and the hosts; null, with the reason on <paramref name="why"/>, when this machine lacks hybridvmm or redis-server.</summary>
    public static ClusterLab? Start(IReadOnlyList<string> hosts, IReadOnlyList<string> serveOptions, TextWriter why)
    {
        string? cli = FindCli();
        string? redis = FindRedis();
        if (cli is null || redis is null)
        {
            why.WriteLine(cli is null
                ? "this scenario runs real 'hybridvmm serve --cluster' processes: build src/HybridVmm.Cli first (or set HYBRIDVMM_CLI)"
                : "this scenario needs a real Redis: apt-get install redis-server");
            return null;
        }

        string directory = Path.Combine(Path.GetTempPath(), $"hybridvmm-lab-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(directory);
        var lab = new ClusterLab(cli, directory);
        try
        {
            lab.StartRedis(redis);
            string token = Path.Combine(directory, "migration-token");
            File.WriteAllText(token, Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)) + "\n");
            foreach (string host in hosts)
            {
                lab.StartHost(host, [.. serveOptions, "--migration-listen", "127.0.0.1:0", "--migration-token-file", token]);
            }

            lab.WaitFor(() => lab.Hosts().Count(h => h.TryGetProperty("migrationEndpoint", out JsonElement e) && e.ValueKind == JsonValueKind.String) == hosts.Count,
                "every host to join with its migration listener");
            return lab;
        }
        catch
        {
            lab.Dispose();
            throw;
        }
    }

    /// <summary>Runs <c>hybridvmm ARGS --cluster REDIS --json</c> and returns its JSON; a failure throws with its stderr.</summary>
    public JsonElement Cluster(params string[] args)
    {
        (int status, string stdout, string stderr) = Run([.. args, "--cluster", Redis, "--json"]);
        if (status != 0)
        {
            throw new InvalidOperationException($"hybridvmm {string.Join(' ', args)} ended with {status}: {stderr.Trim()}");
        }

        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    public JsonElement[] Hosts() => Cluster("cluster", "status").GetProperty("hosts").EnumerateArray().ToArray();

    public JsonElement[] Vms() => Cluster("vm", "list").GetProperty("vms").EnumerateArray().ToArray();

    /// <summary>
    /// The VMs, or null while the cluster cannot answer: a list whose call reaches a grain that was active on a host
    /// that died, before the cluster has declared that host dead, goes unanswered (status 69); ask again.
    /// </summary>
    public JsonElement[]? TryVms()
    {
        try
        {
            return Vms();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>Runs the hybridvmm program with <paramref name="args"/> and waits (at most <see cref="Deadline"/>).</summary>
    public (int Status, string Stdout, string Stderr) Run(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Directory };
        start.ArgumentList.Add(_cli);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Deadline))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"hybridvmm {string.Join(' ', args)} did not end within {Deadline.TotalMinutes:0} minutes");
        }

        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>What a host's VM wrote to its console, read through that host's management API.</summary>
    public string ConsoleOf(string host, string vm)
    {
        string socket = _sockets[host];
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), cancellationToken);
                return new NetworkStream(s, ownsSocket: true);
            },
        };
        using var client = new HttpClient(handler) { BaseAddress = new Uri("http://localhost"), Timeout = TimeSpan.FromMinutes(1) };
        return Encoding.Latin1.GetString(client.GetByteArrayAsync($"/api/vms/{Uri.EscapeDataString(vm)}/console").Result);
    }

    /// <summary>Polls <paramref name="condition"/> twice a second until it holds, or throws after <see cref="Deadline"/>.</summary>
    public void WaitFor(Func<bool> condition, string what)
    {
        DateTime deadline = DateTime.UtcNow + Deadline;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"the cluster did not get there within {Deadline.TotalMinutes:0} minutes: {what}");
            }

            Thread.Sleep(500);
        }
    }

    private void StartRedis(string program)
    {
        int port = FreePort();
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[] { "--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" })
        {
            start.ArgumentList.Add(arg);
        }

        Process process = Process.Start(start)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _processes.Add(process);
        Redis = $"127.0.0.1:{port}";
        WaitFor(() => RedisAnswers(port), $"redis-server on port {port} to answer");
    }

    private void StartHost(string name, IReadOnlyList<string> options)
    {
        string directory = Path.Combine(Directory, name);
        System.IO.Directory.CreateDirectory(directory);
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        string[] args =
        [
            _cli, "serve", "--api-socket", "api.sock", "--cluster", Redis, "--host-name", name,
            "--silo-port", FreePort().ToString(), "--gateway-port", FreePort().ToString(), "--checkpoint-dir", CheckpointDirectory,
            .. options,
        ];
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Process process = Process.Start(start)!;
        _processes.Add(process);
        process.StandardInput.Close();
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                listening.TrySetException(new InvalidOperationException($"host {name} ended before its API listened"));
            }
            else if (e.Data.Contains("Management API listening on ", StringComparison.Ordinal))
            {
                listening.TrySetResult();
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!listening.Task.Wait(Deadline))
        {
            throw new TimeoutException($"host {name} did not start within {Deadline.TotalMinutes:0} minutes");
        }

        _sockets[name] = Path.Combine(directory, "api.sock");
        _hosts[name] = process;
    }

    /// <summary>The shared directory protected VMs are checkpointed into.</summary>
    public string CheckpointDirectory => Path.Combine(Directory, "checkpoints");

    /// <summary>Kills a host with SIGKILL, as a machine that loses power: nothing of it runs on, nothing is cleaned up.</summary>
    public void Kill(string host)
    {
        Process process = _hosts[host];
        process.Kill();
        process.WaitForExit();
    }

    /// <summary>
    /// Writes the ticking guest into the lab and runs it alone with <c>hybridvmm run</c>, the reference a lesson compares
    /// its VMs with: the guest's path and that output, or null after one line on <paramref name="output"/> saying why.
    /// </summary>
    public (string Guest, string Alone)? TickingGuestRunAlone(int ticks, int instructionsPerTick, TextWriter output)
    {
        string guest = Path.Combine(Directory, "ticks.elf");
        File.WriteAllBytes(guest, TickingGuest(ticks, instructionsPerTick));
        (int status, string alone, string errors) = Run("run", guest);
        if (status != 0)
        {
            output.WriteLine($"the guest alone ended with {status}: {errors.Trim()}");
            return null;
        }

        return (guest, alone);
    }

    /// <summary>A guest that prints "tick A" and on, <paramref name="instructionsPerTick"/> apart, <paramref name="ticks"/> lines, then exits with 0.</summary>
    public static byte[] TickingGuest(int ticks, int instructionsPerTick)
    {
        var a = new Assembler(32);
        var outer = a.CreateLabel();
        var inner = a.CreateLabel();
        var halt = a.CreateLabel();
        a.mov(esi, 0);
        a.Label(ref outer);
        a.mov(ecx, instructionsPerTick / 2);
        a.Label(ref inner);
        a.dec(ecx);
        a.jnz(inner);
        a.mov(dx, 0x3F8);
        foreach (char c in "tick ")
        {
            a.mov(al, (byte)c);
            a.@out(dx, al);
        }

        a.mov(eax, esi);
        a.add(al, (byte)'A');
        a.@out(dx, al);
        a.mov(al, (byte)'\n');
        a.@out(dx, al);
        a.inc(esi);
        a.cmp(esi, ticks);
        a.jne(outer);
        a.mov(dx, 0xF4);
        a.mov(al, 0);
        a.@out(dx, al);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        using var code = new MemoryStream();
        a.Assemble(new StreamCodeWriter(code), FlatMultibootImage.Entry);
        return FlatMultibootImage.Wrap(code.ToArray());
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Whether a Redis on this machine's loopback <paramref name="port"/> answers PING.</summary>
    public static bool RedisAnswers(int port)
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(IPAddress.Loopback, port);
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
        foreach (Process process in Enumerable.Reverse(_processes))
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException)
            {
            }

            process.Dispose();
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
