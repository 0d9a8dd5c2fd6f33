using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Testing;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Apic;

/// <summary>
/// Guests for the local APIC tests, written with Iced's Assembler: the test's code at the entry, an IDT at 0x20000 whose
/// gates lead to one stub per vector (at the entry + 0x1000, 64 bytes each), and a log where each stub records its vector
/// and the PPR it saw (8 bytes an entry at <see cref="Log"/>, the count at <see cref="LogCount"/>). A stub writes EOI
/// before its IRET when asked to; a fault with an error code (#GP) ends the guest with its vector as the exit value. Results the code stores go from <see cref="Results"/> on.
/// </summary>
internal static class ApicGuest
{
    public const uint ApicPage = 0xFEE0_0000;
    public const uint Results = 0x30000, Log = 0x31000, LogCount = 0x30FFC;
    private const uint Idt = 0x20000, Stubs = FlatKernel.Entry + 0x1000, StubSize = 64;

    /// <summary>APIC register offsets used by the tests.</summary>
    public const uint Id = 0x20, VersionRegister = 0x30, Tpr = 0x80, Apr = 0x90, Ppr = 0xA0, Eoi = 0xB0, Ldr = 0xD0, Dfr = 0xE0, Svr = 0xF0,
        Isr = 0x100, Tmr = 0x180, Irr = 0x200, Esr = 0x280, IcrLow = 0x300, IcrHigh = 0x310, LvtTimer = 0x320, LvtThermal = 0x330,
        LvtPerf = 0x340, Lint0 = 0x350, Lint1 = 0x360, LvtError = 0x370, InitialCount = 0x380, CurrentCount = 0x390, Divide = 0x3E0;

    /// <summary>
    /// Builds the image: <paramref name="program"/> runs after the stack and IDT are set up (IF=0), with a gate for each of
    /// <paramref name="vectors"/>; the stubs of <paramref name="eoiVectors"/> write EOI.
    /// </summary>
    public static byte[] Build(Action<Assembler> program, byte[] vectors, byte[]? eoiVectors = null)
    {
        byte[] main = GuestCode.Assemble(a =>
        {
            a.mov(esp, 0x90000);
            a.mov(__dword_ptr[LogCount], 0);
            for (int i = 0; i < vectors.Length; i++)
            {
                uint handler = Stubs + (uint)i * StubSize;
                uint gate = Idt + vectors[i] * 8u;
                a.mov(__dword_ptr[gate], (0x08u << 16) | (handler & 0xFFFF));
                a.mov(__dword_ptr[gate + 4], (handler & 0xFFFF0000) | 0x8E00);
            }

            a.mov(__dword_ptr[0x8000], 0x07FF0000);
            a.mov(__dword_ptr[0x8004], Idt);
            a.lidt(__[0x8002]);
            program(a);
        }, FlatKernel.Entry);
        if (main.Length > 0x1000) throw new InvalidOperationException("test program too long");

        var image = new byte[0x1000 + vectors.Length * StubSize];
        main.CopyTo(image, 0);
        for (int i = 0; i < vectors.Length; i++)
        {
            byte vector = vectors[i];
            bool eoi = eoiVectors is not null && Array.IndexOf(eoiVectors, vector) >= 0;
            byte[] stub = GuestCode.Assemble(a =>
            {
                a.push(eax); a.push(ebx);
                a.mov(ebx, __dword_ptr[LogCount]);
                a.mov(__dword_ptr[ebx * 8 + Log], (uint)vector);
                a.mov(eax, __dword_ptr[ApicPage + Ppr]);
                a.mov(__dword_ptr[ebx * 8 + Log + 4], eax);
                a.inc(__dword_ptr[LogCount]);
                if (eoi) a.mov(__dword_ptr[ApicPage + Eoi], eax);
                if (vector is 8 or (>= 10 and <= 14) or 17)
                {
                    // A fault with an error code ends the guest with its vector: the tests look no further.
                    a.mov(eax, (uint)vector);
                    a.@out(0xF4, eax);
                }

                a.pop(ebx); a.pop(eax);
                a.iretd();
            }, Stubs + (uint)i * StubSize);
            stub.CopyTo(image, 0x1000 + i * (int)StubSize);
        }

        return FlatKernel.Wrap(image);
    }

    /// <summary>Stores APIC register <paramref name="offset"/> at result slot <paramref name="slot"/>.</summary>
    public static void Save(Assembler a, uint offset, int slot)
    {
        a.mov(eax, __dword_ptr[ApicPage + offset]);
        a.mov(__dword_ptr[Results + (uint)slot * 4], eax);
    }

    public static void Write(Assembler a, uint offset, uint value) => a.mov(__dword_ptr[ApicPage + offset], value);

    /// <summary>Ends the guest through the debug-exit port with 0.</summary>
    public static void Exit(Assembler a)
    {
        a.mov(eax, 0);
        a.@out(0xF4, eax);
    }

    public sealed record Run(PartitionExit Exit, uint[] Results, (uint Vector, uint Ppr)[] Log, IReadOnlyList<string> Trace);

    public static async Task<Run> RunAsync(byte[] image, int results = 32)
    {
        (_, PartitionExit exit, HostOS.Vm.VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image, instructionLimit: 50_000_000);
        using (machine)
        {
            uint[] values = new uint[results];
            byte[] bytes = new byte[results * 4];
            machine.System.Root.ReadMemoryOfStoppedVm(vm, Results, bytes);
            Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
            byte[] count = new byte[4];
            machine.System.Root.ReadMemoryOfStoppedVm(vm, LogCount, count);
            int n = Math.Min(BitConverter.ToInt32(count), 64);
            byte[] log = new byte[n * 8];
            machine.System.Root.ReadMemoryOfStoppedVm(vm, Log, log);
            var entries = new (uint, uint)[n];
            for (int i = 0; i < n; i++)
            {
                entries[i] = (BitConverter.ToUInt32(log, i * 8), BitConverter.ToUInt32(log, i * 8 + 4));
            }

            return new Run(exit, values, entries, machine.TraceLines.ToArray());
        }
    }
}
