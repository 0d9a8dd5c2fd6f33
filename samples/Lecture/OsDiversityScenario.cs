using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// OS diversity, the lecture's first reason to virtualize: three different guests side by side in three partitions
/// of one hypervisor. Debian's own Linux kernel (booted through the Linux boot protocol, unmodified, with a BusyBox
/// initramfs) drives the emulated PC devices its VM worker serves; an enlightened guest talks to the root partition
/// over VMBus; a bare-metal Multiboot program computes and prints through the emulated UART. Each must finish as it
/// does alone, and none can tell the others are there.
/// </summary>
public static class OsDiversityScenario
{
    /// <summary>The command line of the Linux guest: its console on COM1, no crypto self-tests (3 G instructions), quiet.</summary>
    public const string LinuxCommandLine = "console=ttyS0 cryptomgr.notests panic=-1 quiet";

    private sealed record Guest(string Name, string Os, string Image, string IoPath, Func<string, PartitionExit, bool> Succeeded);

    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        if (LinuxImages() is not (string kernel, string initrd))
        {
            output.WriteLine("the Linux guest needs Debian's kernel and BusyBox: run samples/linux/fetch-debian.sh and samples/linux/make-initramfs.sh");
            return 1;
        }

        var trace = new TraceRecorder(null, keepInMemory: false);
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 192L << 20 }, console, trace);
        var guests = new (Guest Guest, VirtualMachine Vm)[]
        {
            (new Guest("linux", "Debian Linux 6.1 with a BusyBox /init", "bzImage + initramfs (Linux boot protocol)", "emulated 8250 UART, PIC, PIT, RTC, i8042 in its VM worker",
                    (text, exit) => exit.Reason == StopReason.Reset && text.Contains("init: done")),
                Create(system, new VmConfiguration
                {
                    Name = "linux", Image = File.ReadAllBytes(kernel), Initrd = File.ReadAllBytes(initrd), MemoryBytes = 128u << 20,
                    CommandLine = LinuxCommandLine,
                })),
            (new Guest("enlcon", "an enlightened kernel (TLFS hypercalls, SynIC)", "Multiboot ELF", "VMBus synthetic console to the root partition",
                    (text, exit) => exit.Reason == StopReason.GuestExit && text.Contains("100 lines")),
                Create(system, new VmConfiguration
                {
                    Name = "enlcon", Image = EmbeddedGuests.Load("enlcon")!, MemoryBytes = 8u << 20, CommandLine = "synth",
                    SyntheticDevices = new[] { "synthcon" },
                })),
            (new Guest("cpu", "a bare-metal C program, no OS at all", "Multiboot ELF", "emulated 16550 UART, polled",
                    (text, exit) => exit.Reason == StopReason.GuestExit && text.Contains("cpu: done")),
                Create(system, new VmConfiguration { Name = "cpu", Image = EmbeddedGuests.Load("cpu")!, MemoryBytes = 8u << 20 })),
        };

        var wall = System.Diagnostics.Stopwatch.StartNew();
        foreach ((_, VirtualMachine vm) in guests)
        {
            system.Root.Start(vm);
        }

        await system.RunUntilIdleAsync();
        wall.Stop();

        output.WriteLine("three guests, one hypervisor, one root partition:");
        output.WriteLine();
        output.WriteLine($"{"partition",-10} {"guest",-46} {"image",-42} {"I/O path",-58} {"how it ended",-14} as alone");
        int failures = 0;
        foreach ((Guest guest, VirtualMachine vm) in guests)
        {
            PartitionExit exit = await vm.Exited;
            bool ok = guest.Succeeded(console.Text(vm), exit);
            failures += ok ? 0 : 1;
            string ended = exit.Reason switch
            {
                StopReason.Reset => "reset (reboot)",
                StopReason.GuestExit => $"exit {exit.ExitValue}",
                _ => exit.Reason.ToString(),
            };
            output.WriteLine($"{guest.Name,-10} {guest.Os,-46} {guest.Image,-42} {guest.IoPath,-58} {ended,-14} {(ok ? "yes" : "NO")}");
            PartitionStatistics stats = vm.Statistics;
            measurements.WriteLine($"  {guest.Name}: {stats.InstructionsRetired:N0} instructions, {stats.TotalIntercepts:N0} intercepts, {stats.ChannelMessages:N0} channel messages");
        }

        output.WriteLine();
        output.WriteLine("what the Linux guest's /init printed:");
        foreach (string line in console.Text(guests[0].Vm).Split('\n').Where(l => l.StartsWith("init: ", StringComparison.Ordinal)))
        {
            output.WriteLine("  " + line.TrimEnd('\r'));
        }

        output.WriteLine($"the last line of the enlightened guest: {LastLine(console.Text(guests[1].Vm))}");
        output.WriteLine($"the last line of the bare-metal guest: {LastLine(console.Text(guests[2].Vm))}");
        measurements.WriteLine($"  wall time for all three: {wall.Elapsed.TotalSeconds:F1} s");
        return failures == 0 ? 0 : 1;
    }

    private static string LastLine(string text) => text.TrimEnd('\n', '\r').Split('\n')[^1].TrimEnd('\r');

    private static VirtualMachine Create(HybridSystem system, VmConfiguration configuration) =>
        system.Root.CreateVm(configuration, out VmCreationError? error) ?? throw new InvalidOperationException($"{configuration.Name}: {error!.Message}");

    /// <summary>samples/linux/debian/vmlinuz and initramfs.cpio.gz, found from the working directory or the program's directory upwards.</summary>
    public static (string Kernel, string Initrd)? LinuxImages()
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (DirectoryInfo? dir = new(start); dir is not null; dir = dir.Parent)
            {
                string debian = Path.Combine(dir.FullName, "samples", "linux", "debian");
                string kernel = Path.Combine(debian, "vmlinuz"), initrd = Path.Combine(debian, "initramfs.cpio.gz");
                if (File.Exists(kernel) && File.Exists(initrd)) return (kernel, initrd);
            }
        }
        return null;
    }
}
