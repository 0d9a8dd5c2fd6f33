using System.Text;
using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Samples.EnlightenedIo;

/// <summary>
/// Enlightened I/O in three acts. (1) The same guest prints the same text through the emulated COM1 UART,
/// where every byte is an intercept served by the root, and through the synthetic console, where a batch of
/// 2 KiB costs one HvSignalEvent; the exits and messages are counted side by side. (2) A guest writes a record
/// to its synthetic disk (a host file), flushes, is deleted and booted again, and finds its data intact.
/// (3) Two guests exchange pings (ICMP echo over Ethernet) through the root partition's virtual switch.
/// </summary>
public static class EnlightenedIoScenario
{
    private const uint GuestMemory = 8u << 20;

    /// <summary>The result of one guest run: its output, how it ended, its counters and its trace.</summary>
    public sealed record GuestRun(string Name, string Output, PartitionExit Exit, IReadOnlyDictionary<string, long> Exits,
        long TotalExits, long Messages, long Instructions, long VirtualTicks, IReadOnlyList<string> Trace);

    /// <summary>Runs the three acts, writing the report to <paramref name="output"/>. Returns 0 when everything held.</summary>
    /// <param name="traces">Receives each run's trace by name (console-uart, console-synth, disk-boot1, disk-boot2, ping), if given.</param>
    /// <param name="diskImage">The disk-image file for act 2; a temporary file (deleted afterwards) when null.</param>
    public static async Task<int> RunAsync(TextWriter output, IDictionary<string, IReadOnlyList<string>>? traces = null, string? diskImage = null)
    {
        int failures = 0;
        output.WriteLine("Enlightened I/O: emulated versus synthetic devices on the hybrid hypervisor");
        output.WriteLine();

        // Act 1: the same output through the UART and through the synthetic console.
        GuestRun uart = await RunGuestsAsync("enlcon", "uart", Array.Empty<string>(), null);
        GuestRun synth = await RunGuestsAsync("enlcon", "synth", new[] { "synthcon" }, null);
        traces?.Add("console-uart", uart.Trace);
        traces?.Add("console-synth", synth.Trace);
        bool same = uart.Output == synth.Output && uart.Exit.Reason == StopReason.GuestExit && synth.Exit.Reason == StopReason.GuestExit;
        int bytes = Encoding.Latin1.GetByteCount(uart.Output);
        output.WriteLine($"1. Console: {bytes} bytes of guest output, {(same ? "identical" : "DIFFERENT")} on both paths");
        output.WriteLine();
        output.WriteLine($"   {"",-30} {"UART (COM1)",14} {"synthetic",14}");
        foreach (string kind in new[] { "io-read", "io-write", "cpuid", "rdmsr", "wrmsr", "hypercall", "hlt" })
        {
            output.WriteLine($"   {"exits: " + kind,-30} {Get(uart, kind),14} {Get(synth, kind),14}");
        }

        output.WriteLine($"   {"exits: total",-30} {uart.TotalExits,14} {synth.TotalExits,14}");
        output.WriteLine($"   {"exits per 100 bytes",-30} {Per100(uart.TotalExits, bytes),14} {Per100(synth.TotalExits, bytes),14}");
        output.WriteLine($"   {"messages to/from the root",-30} {uart.Messages,14} {synth.Messages,14}");
        output.WriteLine($"   {"instructions",-30} {uart.Instructions,14} {synth.Instructions,14}");
        output.WriteLine($"   {"virtual time (ticks)",-30} {uart.VirtualTicks,14} {synth.VirtualTicks,14}");
        bool target = synth.TotalExits * 100 <= bytes;
        output.WriteLine($"   target <= 1 exit per 100 bytes on the synthetic path: {(target ? "met" : "MISSED")}");
        failures += same && target ? 0 : 1;
        output.WriteLine();

        // Act 2: a synthetic disk across a VM restart.
        string disk = diskImage ?? Path.Combine(Path.GetTempPath(), $"hybridvmm-enlblk-{Guid.NewGuid():N}.img");
        try
        {
            File.WriteAllBytes(disk, new byte[128 * 512]);
            output.WriteLine("2. Disk: a 64 KiB disk image on the host; the guest boots, writes, flushes, is deleted, boots again");
            for (int boot = 1; boot <= 2; boot++)
            {
                GuestRun run = await RunGuestsAsync("enlblk", "", new[] { "synthcon", "synthblk" }, disk);
                traces?.Add($"disk-boot{boot}", run.Trace);
                output.WriteLine($"   boot {boot}:");
                foreach (string line in run.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    output.WriteLine($"     {line}");
                }

                failures += run.Exit.Reason == StopReason.GuestExit && run.Exit.ExitValue == 0 ? 0 : 1;
            }

            bool kept = File.ReadAllBytes(disk).AsSpan(0, 8).SequenceEqual("HVMMDISK"u8);
            output.WriteLine($"   on the host after both boots: record {(kept ? "present" : "MISSING")} in sector 0 of the image");
            failures += kept ? 0 : 1;
        }
        finally
        {
            if (diskImage is null)
            {
                File.Delete(disk);
            }
        }

        output.WriteLine();

        // Act 3: two guests ping each other through the root's virtual switch.
        (GuestRun pong, GuestRun ping, long forwarded, IReadOnlyList<string> pingTrace) = await RunPingPairAsync();
        traces?.Add("ping", pingTrace);
        output.WriteLine("3. Network: 'pong' (10.0.0.2) and 'ping' (10.0.0.1), each with a synthetic NIC on the root's virtual switch");
        foreach (GuestRun run in new[] { pong, ping })
        {
            foreach (string line in run.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                output.WriteLine($"   {line}");
            }

            failures += run.Exit.Reason == StopReason.GuestExit && run.Exit.ExitValue == 0 ? 0 : 1;
        }

        output.WriteLine($"   frames forwarded by the switch: {forwarded}; exits: pong {pong.TotalExits}, ping {ping.TotalExits}");
        output.WriteLine();
        output.WriteLine(failures == 0 ? "Everything held." : $"{failures} check(s) FAILED.");
        return failures == 0 ? 0 : 1;
    }

    private static long Get(GuestRun run, string kind) => run.Exits.TryGetValue(kind, out long n) ? n : 0;

    private static string Per100(long exits, int bytes) => bytes == 0 ? "-" : (exits * 100.0 / bytes).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Boots one guest alone on a fresh hybrid machine and collects what it did.</summary>
    public static async Task<GuestRun> RunGuestsAsync(string guest, string commandLine, IReadOnlyList<string> synthetic, string? diskImage)
    {
        var trace = new TraceRecorder(null, keepInMemory: true);
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 32L << 20 }, console, trace);
        byte[] image = EmbeddedGuests.Load(guest) ?? throw new InvalidOperationException($"missing embedded guest {guest}");
        VirtualMachine vm = system.Root.CreateVm(new VmConfiguration
        {
            Name = guest, Image = image, MemoryBytes = GuestMemory, CommandLine = commandLine,
            SyntheticDevices = synthetic, DiskImage = diskImage,
        }, out VmCreationError? error) ?? throw new InvalidOperationException(error!.Message);
        system.Root.Start(vm);
        await system.RunUntilIdleAsync();
        PartitionExit exit = await vm.Exited;
        system.Root.Delete(vm);
        PartitionStatistics stats = vm.Statistics;
        return new GuestRun(guest, console.Text, exit, new Dictionary<string, long>(stats.InterceptsByKind), stats.TotalIntercepts,
            stats.ChannelMessages, stats.InstructionsRetired, stats.VirtualTicks(system.Kernel.Clock.Ticks), trace.Lines!);
    }

    /// <summary>Boots 'pong' then 'ping' side by side on one machine; both have a console and a NIC.</summary>
    public static async Task<(GuestRun Pong, GuestRun Ping, long Forwarded, IReadOnlyList<string> Trace)> RunPingPairAsync()
    {
        var trace = new TraceRecorder(null, keepInMemory: true);
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 32L << 20 }, console, trace);
        byte[] image = EmbeddedGuests.Load("enlnet") ?? throw new InvalidOperationException("missing embedded guest enlnet");
        var vms = new List<VirtualMachine>();
        foreach (string name in new[] { "pong", "ping" })
        {
            vms.Add(system.Root.CreateVm(new VmConfiguration
            {
                Name = name, Image = image, MemoryBytes = GuestMemory, CommandLine = name,
                SyntheticDevices = new[] { "synthcon", "synthnet" },
            }, out VmCreationError? error) ?? throw new InvalidOperationException(error!.Message));
        }

        foreach (VirtualMachine vm in vms) system.Root.Start(vm);
        await system.RunUntilIdleAsync();
        var runs = new List<GuestRun>();
        foreach (VirtualMachine vm in vms)
        {
            PartitionExit exit = await vm.Exited;
            PartitionStatistics stats = vm.Statistics;
            runs.Add(new GuestRun(vm.Name, console.TextOf(vm), exit, new Dictionary<string, long>(stats.InterceptsByKind), stats.TotalIntercepts,
                stats.ChannelMessages, stats.InstructionsRetired, stats.VirtualTicks(system.Kernel.Clock.Ticks), Array.Empty<string>()));
        }

        long forwarded = system.Root.VirtualSwitch.Forwarded;
        foreach (VirtualMachine vm in vms) system.Root.Delete(vm);
        return (runs[0], runs[1], forwarded, trace.Lines!);
    }

    private sealed class CapturingConsole : IGuestConsole
    {
        private readonly List<byte> _bytes = new();
        private readonly Dictionary<string, List<byte>> _byVm = new();

        public string Text
        {
            get
            {
                lock (_bytes) return Encoding.Latin1.GetString(_bytes.ToArray());
            }
        }

        public string TextOf(VirtualMachine vm)
        {
            lock (_bytes) return _byVm.TryGetValue(vm.Name, out List<byte>? b) ? Encoding.Latin1.GetString(b.ToArray()) : "";
        }

        public void Write(VirtualMachine vm, long virtualTime, byte value)
        {
            lock (_bytes)
            {
                _bytes.Add(value);
                if (!_byVm.TryGetValue(vm.Name, out List<byte>? b)) _byVm[vm.Name] = b = new List<byte>();
                b.Add(value);
            }
        }

        public void Flush()
        {
        }
    }
}
