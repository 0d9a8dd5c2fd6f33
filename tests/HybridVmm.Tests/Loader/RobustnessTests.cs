using HybridVmm.Guests.Multiboot;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Loader;

/// <summary>Bad input never crashes the host: damaged images are refused or run as (mis)behaving guests.</summary>
public class RobustnessTests
{
    [Test]
    public void DamagedImagesAreRefusedWithAReasonOrLoadedNeverAnException()
    {
        byte[] hello = Repository.ReadGuest("hello");
        var random = new Random(20261125);
        int refused = 0, loaded = 0;
        for (int i = 0; i < 3000; i++)
        {
            byte[] file = Mutate(hello, random);
            MultibootImage? image = MultibootImage.TryParse(file, out string error);
            if (image is null || BootInformation.Layout(image, 4u << 20, "", out error) is null)
            {
                Assert.That(error, Is.Not.Empty);
                refused++;
            }
            else
            {
                loaded++;
            }
        }

        Assert.That(refused, Is.GreaterThan(0));
        Assert.That(loaded, Is.GreaterThan(0));
    }

    [Test]
    public async Task GuestsWithCorruptedCodeStopThemselvesAndNeverTheHost()
    {
        byte[] hello = Repository.ReadGuest("hello");
        var random = new Random(7);
        using var machine = new TestMachine(hostMemoryBytes: 256L << 20);
        int created = 0;
        for (int i = 0; i < 48; i++)
        {
            // Scramble bytes of the code segment only, so the image still loads and the CPU runs garbage.
            byte[] file = (byte[])hello.Clone();
            for (int k = 0; k < 64; k++)
            {
                file[0x1000 + 16 + random.Next(0x400)] = (byte)random.Next(256);
            }

            machine.Create($"g{i}", file, 4u << 20, instructionLimit: 50_000);
            created++;
        }

        await machine.RunAsync();
        foreach (VirtualMachine vm in machine.System.Root.VirtualMachines)
        {
            PartitionExit exit = await vm.Exited;
            Assert.That(exit.Reason, Is.Not.EqualTo(StopReason.None));
        }

        Assert.That(created, Is.EqualTo(48));
    }

    private static byte[] Mutate(byte[] original, Random random)
    {
        byte[] file = (byte[])original.Clone();
        switch (random.Next(4))
        {
            case 0:
                return file.AsSpan(0, random.Next(file.Length)).ToArray();
            case 1:
                for (int k = random.Next(1, 8); k > 0; k--)
                {
                    file[random.Next(Math.Min(file.Length, 256))] = (byte)random.Next(256);
                }

                return file;
            case 2:
                for (int k = random.Next(1, 32); k > 0; k--)
                {
                    file[random.Next(file.Length)] = (byte)random.Next(256);
                }

                return file;
            default:
                int at = random.Next(0, 64) * 4;
                BitConverter.GetBytes((uint)random.Next()).CopyTo(file, at);
                return file;
        }
    }
}
