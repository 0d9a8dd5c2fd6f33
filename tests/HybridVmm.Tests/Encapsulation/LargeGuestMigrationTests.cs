using HybridVmm.HostOS;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.EndToEnd;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// A guest of 4 GiB, with data above 4 GiB, live-migrated and cloned copy-on-write: the <see cref="RamAbove4GiBTests"/>
/// guest writes its patterns above 4 GiB, is paused in its countdown, moves (or is cloned), and the copy reads the patterns
/// back and prints what QEMU prints for the same guest (<c>-m 4G -cpu qemu32,+pse36</c>).
/// </summary>
[NonParallelizable]
public sealed class LargeGuestMigrationTests
{
    private const ulong Memory = 4UL << 30;
    private const long PauseAt = 1_000_000;

    private static VmConfiguration Config(byte[] image) => new() { Name = "high", Image = image, MemoryBytes = Memory };

    private static (byte[] Image, string Expected) GuestAndQemusOutput()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-high-{Guid.NewGuid():N}.elf");
        byte[] image = RamAbove4GiBTests.Guest(countdown: 2_000_000);
        File.WriteAllBytes(path, image);
        try
        {
            string qemu = QemuReference.RunLinux(path, "", "4G", cpu: "qemu32,+pse36");
            Assert.That(qemu, Does.StartWith("CAFEBABE 12345678 A5A55A5A 0BADF00D "), "QEMU read back what the guest wrote above 4 GiB");
            return (image, qemu.Replace(RamAbove4GiBTests.QemuRsvd, RamAbove4GiBTests.SdmRsvd));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Creates the guest on <paramref name="system"/> and runs it to <see cref="PauseAt"/>, in its countdown between its writes and its reads.</summary>
    private static async Task<VirtualMachine> PausedInTheWindowAsync(HybridSystem system, byte[] image)
    {
        VirtualMachine vm = system.Root.CreateVm(Config(image), out VmCreationError? error)!;
        Assert.That(vm, Is.Not.Null, error?.Message);
        system.Root.PauseAtInstruction(vm, PauseAt);
        system.Root.Start(vm);
        await system.RunUntilIdleAsync();
        Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));
        return vm;
    }

    [Test]
    public async Task AGuestOf4GiBMigratedOverLoopbackReadsItsRamAbove4GiBOnTheTarget()
    {
        (byte[] image, string expected) = GuestAndQemusOutput();
        var sourceConsole = new CapturingConsole();
        var targetConsole = new CapturingConsole();
        using var source = new HybridSystem(new HypervisorOptions { HostMemoryBytes = (long)Memory + (16L << 20) }, sourceConsole, new TraceRecorder(null));
        using var target = new HybridSystem(new HypervisorOptions { HostMemoryBytes = (long)Memory + (16L << 20) }, targetConsole, new TraceRecorder(null));
        VirtualMachine vm = await PausedInTheWindowAsync(source, image);

        (MigrationReport report, VirtualMachine? moved) = await LiveMigration.OverLoopbackAsync(source, vm, target, new MigrationOptions());
        Assert.That(report.Succeeded, Is.True, report.Failure);
        target.Root.Start(moved!);
        await target.RunUntilIdleAsync();
        Assert.That(sourceConsole.Text(vm) + targetConsole.Text(moved!), Is.EqualTo(expected));
    }

    [Test]
    public async Task ACloneOfAGuestOf4GiBSharesItsRamAbove4GiB()
    {
        (byte[] image, string expected) = GuestAndQemusOutput();
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = (long)Memory + (16L << 20) }, console, new TraceRecorder(null));
        VirtualMachine template = await PausedInTheWindowAsync(system, image);

        VirtualMachine clone = system.Root.CloneVm(template, "copy", 1);
        system.Root.Start(clone);
        await system.RunUntilIdleAsync();
        Assert.That(console.Text(template) + console.Text(clone), Is.EqualTo(expected), "the clone read the template's pages above 4 GiB");
        Assert.That(clone.Statistics.Translator.BlockEntries, Is.GreaterThan(0), "the translator ran the hot loop over the page above 4 GiB");
    }
}
