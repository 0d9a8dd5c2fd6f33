using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Enlightened;

public class SyntheticDiskTests
{
    [Test]
    public async Task DataWrittenAndFlushedSurvivesAVmRestart()
    {
        string image = Path.Combine(Path.GetTempPath(), $"hybridvmm-disk-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(image, new byte[64 * 512]);
        try
        {
            string first = await Boot(image);
            string second = await Boot(image);
            Assert.That(first, Does.Contain("enlblk: blank disk\n"));
            Assert.That(second, Does.Contain("enlblk: found record: boot 1 wrote 'hello from boot 1'\n"));
            Assert.That(second, Does.Contain("enlblk: previous pattern intact\n"));
            Assert.That(second, Does.Contain("read past the end -> status 1, write across the end -> status 1"));
            byte[] disk = File.ReadAllBytes(image);
            Assert.That(System.Text.Encoding.ASCII.GetString(disk, 0, 8), Is.EqualTo("HVMMDISK"));
            Assert.That(BitConverter.ToUInt32(disk, 8), Is.EqualTo(2u));
        }
        finally
        {
            File.Delete(image);
        }
    }

    [Test]
    public void ASynthblkWithoutADiskImageIsRefused()
    {
        using var machine = new TestMachine();
        VirtualMachine? vm = machine.System.Root.CreateVm(new VmConfiguration
        {
            Name = "nodisk", Image = Repository.ReadGuest("enlblk"), SyntheticDevices = new[] { "synthblk" },
        }, out VmCreationError? error);
        Assert.That(vm, Is.Null);
        Assert.That(error!.Message, Does.Contain("disk image"));
    }

    private static async Task<string> Boot(string image)
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration
        {
            Name = "enlblk", Image = Repository.ReadGuest("enlblk"), MemoryBytes = 8u << 20,
            SyntheticDevices = new[] { "synthblk" }, DiskImage = image,
        });
        await machine.RunAsync();
        PartitionExit exit = await vm.Exited;
        Assert.That((exit.Reason, exit.ExitValue), Is.EqualTo((StopReason.GuestExit, 0u)),
            () => exit.Diagnostic + "\n" + machine.Output(vm) + string.Join("\n", machine.TraceLines.TakeLast(20)));
        return machine.Output(vm);
    }
}
