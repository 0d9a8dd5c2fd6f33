using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// MMIO through the whole machine: the kernel forwards an access no RAM backs to the root, the worker's device
/// map finds the device, and the CPU completes the instruction with the device's value. The reference is the
/// same code on RAM holding the same bytes: a memory-like device must be indistinguishable from memory.
/// </summary>
public class MmioDeviceTests
{
    private const uint Window = 0xE000_0000;
    private const uint RamTwin = 0x0030_0000;
    private const int WindowBytes = 0x2000; // two pages, so an access can cross from one to the other

    private static byte Pattern(int i) => (byte)(i * 7 + 3);

    /// <summary>
    /// Accesses of every width at EBX, a read-modify-write, a read crossing the window's page boundary, REP MOVSD
    /// out of it and REP STOSD into it; then sums what it wrote back and exits with the sum.
    /// </summary>
    private static byte[] Guest(uint at, bool initialiseRam) => FlatKernel.Build(a =>
    {
        Label fill = a.CreateLabel(), sum = a.CreateLabel();
        a.mov(esp, 0x90000);
        if (initialiseRam)
        {
            // The reference: RAM holding the bytes the device starts with.
            a.xor(ecx, ecx);
            a.Label(ref fill);
            a.mov(eax, ecx); a.imul(eax, eax, 7); a.add(eax, 3);
            a.mov(__byte_ptr[ecx + (int)at], al);
            a.inc(ecx); a.cmp(ecx, WindowBytes); a.jb(fill);
        }

        a.mov(ebx, at);
        a.mov(ebp, __dword_ptr[ebx]);                 // 32-bit read
        a.movzx(edx, __byte_ptr[ebx + 5]); a.add(ebp, edx);   // 8-bit read
        a.movsx(edx, __word_ptr[ebx + 6]); a.add(ebp, edx);   // 16-bit read, sign-extended
        a.mov(__dword_ptr[ebx + 8], ebp);             // 32-bit write
        a.mov(__byte_ptr[ebx + 12], 0x5A);            // 8-bit write
        a.mov(__word_ptr[ebx + 14], 0x1234);          // 16-bit write
        a.add(__dword_ptr[ebx + 16], ebp);            // read-modify-write
        a.mov(edx, __dword_ptr[ebx + 0xFFE]); a.add(ebp, edx); // crosses the page boundary inside the window
        a.mov(esi, ebx); a.mov(edi, 0x200000); a.mov(ecx, 8); a.cld(); a.rep.movsd(); // string read out of it
        a.lea(edi, __[ebx + 0x100]); a.mov(eax, 0xCAFEBABE); a.mov(ecx, 4); a.rep.stosd(); // string write into it
        // Read back: the window's first 0x20 bytes, the stored block and the copy in RAM.
        a.xor(ecx, ecx);
        a.Label(ref sum);
        a.add(ebp, __dword_ptr[ebx + ecx * 4]);
        a.add(ebp, __dword_ptr[ebx + ecx * 4 + 0x100]);
        a.add(ebp, __dword_ptr[ecx * 4 + 0x200000]);
        a.inc(ecx); a.cmp(ecx, 4); a.jb(sum);
        a.mov(eax, ebp);
        a.@out(0xF4, eax);
    });

    [Test]
    public async Task AMemoryLikeDeviceGivesTheGuestExactlyWhatRamWould()
    {
        var device = new MemoryLikeDevice(Window, WindowBytes, Pattern);
        (PartitionExit viaDevice, string[] trace) = await Run(Guest(Window, initialiseRam: false), device);
        (PartitionExit viaRam, _) = await Run(Guest(RamTwin, initialiseRam: true), null);

        Assert.Multiple(() =>
        {
            Assert.That(viaDevice.Reason, Is.EqualTo(StopReason.GuestExit), viaDevice.Diagnostic);
            Assert.That(viaRam.Reason, Is.EqualTo(StopReason.GuestExit), viaRam.Diagnostic);
            Assert.That(viaDevice.ExitValue, Is.EqualTo(viaRam.ExitValue), "the device's answers equal memory's");
            // The page-crossing read reaches the device as one access per page part.
            Assert.That(device.Log.Count(l => l.StartsWith("read 0xe0000ffe/2 ")), Is.EqualTo(1));
            Assert.That(device.Log.Count(l => l.StartsWith("read 0xe0001000/2 ")), Is.EqualTo(1));
            // The read-modify-write reads once and writes once.
            Assert.That(device.Log.Count(l => l.StartsWith("read 0xe0000010/4")), Is.EqualTo(2), "the RMW's read and the read-back");
            Assert.That(device.Log.Count(l => l.StartsWith("write 0xe0000010/4")), Is.EqualTo(1));
            // REP STOSD: four writes, each once.
            Assert.That(device.Log.Count(l => l.StartsWith("write 0xe0000100/4") || l.StartsWith("write 0xe0000104/4")
                || l.StartsWith("write 0xe0000108/4") || l.StartsWith("write 0xe000010c/4")), Is.EqualTo(4));
            Assert.That(trace.Count(l => l.Contains("window read gpa=0xe0000000 size=4")), Is.EqualTo(3), "the first read, the REP MOVSD's first element and the read-back");
            Assert.That(trace.Any(l => l.Contains("unmapped-gpa gpa=0xe000000c write size=1 value=0x5a")), Is.True);
        });
    }

    [Test]
    public async Task AnInstructionFetchFromMmioFaultsTheGuestWithAClearReason()
    {
        var device = new MemoryLikeDevice(Window, WindowBytes, _ => 0x90);
        (PartitionExit exit, _) = await Run(FlatKernel.Build(a =>
        {
            a.mov(eax, Window);
            a.jmp(eax);
        }), device);
        Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault));
        Assert.That(exit.Diagnostic, Does.Contain("cannot complete a device access"));
    }

    private static async Task<(PartitionExit Exit, string[] Trace)> Run(byte[] image, MemoryLikeDevice? device)
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration { Name = "mmio", Image = image, MemoryBytes = 4u << 20, Devices = new[] { "debug-exit" }, InstructionLimit = 1_000_000 });
        if (device is not null)
        {
            vm.Worker.Attach(device);
        }

        await machine.RunAsync();
        return (await vm.Exited, machine.TraceLines.ToArray());
    }

    /// <summary>A device that behaves as memory over its window and logs every access it gets.</summary>
    private sealed class MemoryLikeDevice(uint first, int bytes, Func<int, byte> initial) : IChipsetDevice, IMmioDevice
    {
        private readonly byte[] _data = Enumerable.Range(0, bytes).Select(initial).ToArray();

        public List<string> Log { get; } = new();

        public string Name => "window";

        public IMmioDevice Mmio => this;

        public IReadOnlyList<MmioRange> Regions { get; } = new[] { new MmioRange(first, first + (uint)bytes - 1) };

        public IoResult Read(uint gpa, int size)
        {
            uint value = 0;
            for (int i = 0; i < size; i++)
            {
                value |= (uint)_data[gpa - first + i] << (8 * i);
            }

            Log.Add($"read 0x{gpa:x8}/{size} = 0x{value:x}");
            return IoResult.Ok(value);
        }

        public IoResult Write(uint gpa, int size, uint value)
        {
            for (int i = 0; i < size; i++)
            {
                _data[gpa - first + i] = (byte)(value >> (8 * i));
            }

            Log.Add($"write 0x{gpa:x8}/{size} = 0x{value:x}");
            return IoResult.Ok();
        }
    }
}
