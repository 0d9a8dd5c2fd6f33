using System.Buffers.Binary;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Enlightened;

/// <summary>
/// The partition reference TSC page (TLFS chapter 12, "Partition Reference Time Enlightenment"): HV_X64_MSR_REFERENCE_TSC (0x40000021) places HV_REFERENCE_TSC_PAGE
/// (TscSequence u32 at 0, TscScale u64 at 8, TscOffset i64 at 16) in guest memory, announced by the AccessPartitionReferenceTsc
/// privilege (CPUID 0x40000003 EAX bit 9). A guest computes the reference time from its TSC as ((TSC * TscScale) >> 64) +
/// TscOffset, in 100 ns units, and that must agree with HV_X64_MSR_TIME_REF_COUNT read between two RDTSCs. The test
/// computes the TLFS's formula itself from what the guest read.
/// </summary>
public class ReferenceTscPageTests
{
    private const uint Page = 0x20000, Log = 0x21000;

    private static void Rdmsr(Assembler a, uint msr, uint at)
    {
        a.mov(ecx, msr);
        a.rdmsr();
        a.mov(__dword_ptr[at], eax);
        a.mov(__dword_ptr[at + 4], edx);
    }

    private static void Rdtsc(Assembler a, uint at)
    {
        a.rdtsc();
        a.mov(__dword_ptr[at], eax);
        a.mov(__dword_ptr[at + 4], edx);
    }

    private static void Spin(Assembler a, int iterations)
    {
        a.mov(ecx, iterations);
        Label top = a.CreateLabel();
        a.Label(ref top);
        a.dec(ecx);
        a.jnz(top);
    }

    /// <summary>
    /// One sample at <paramref name="at"/>: RDTSC, TIME_REF_COUNT, RDTSC, then the page's sequence, scale and offset
    /// (40 bytes: u64 TSC before, u64 counter, u64 TSC after, u32 sequence, u32 pad, u64 scale... laid out as below).
    /// </summary>
    private static void Sample(Assembler a, uint at)
    {
        Rdtsc(a, at);
        Rdmsr(a, HvMsr.TimeRefCount, at + 8);
        Rdtsc(a, at + 16);
        a.mov(eax, __dword_ptr[Page]); a.mov(__dword_ptr[at + 24], eax);
        a.mov(eax, __dword_ptr[Page + 8]); a.mov(__dword_ptr[at + 32], eax);
        a.mov(eax, __dword_ptr[Page + 12]); a.mov(__dword_ptr[at + 36], eax);
        a.mov(eax, __dword_ptr[Page + 16]); a.mov(__dword_ptr[at + 40], eax);
        a.mov(eax, __dword_ptr[Page + 20]); a.mov(__dword_ptr[at + 44], eax);
    }

    private const int SampleSize = 48;

    private readonly record struct Sampled(ulong TscBefore, ulong Counter, ulong TscAfter, uint Sequence, ulong Scale, long Offset)
    {
        /// <summary>TLFS chapter 12: ((TSC * TscScale) >> 64) + TscOffset.</summary>
        public ulong Reference(ulong tsc) => (ulong)(((UInt128)tsc * Scale) >> 64) + (ulong)Offset;

        public static Sampled Read(byte[] log, int at) => new(
            BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(at)), BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(at + 8)),
            BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(at + 16)), BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(at + 24)),
            BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(at + 32)), BinaryPrimitives.ReadInt64LittleEndian(log.AsSpan(at + 40)));
    }

    /// <summary>
    /// Enables the page, samples, spins, samples; writes IA32_TIME_STAMP_COUNTER to <paramref name="tscWritten"/> (a whole
    /// number of reference units or not), samples; reads the MSR and CPUID 0x40000003 EAX back; exits with 0.
    /// </summary>
    private static byte[] Guest(uint tscWritten) => FlatKernel.Build(a =>
    {
        a.mov(ecx, HvMsr.ReferenceTsc);
        a.mov(eax, Page | 0x1 | 0x10); // enabled, and a reserved-to-preserve bit (11:1) that reads back as written
        a.xor(edx, edx);
        a.wrmsr();
        Sample(a, Log);
        Spin(a, 123_457);
        Sample(a, Log + SampleSize);
        a.mov(ecx, 0x10); // IA32_TIME_STAMP_COUNTER
        a.mov(eax, tscWritten);
        a.mov(edx, 2);
        a.wrmsr();
        Spin(a, 1_001);
        Sample(a, Log + 2 * SampleSize);
        Rdmsr(a, HvMsr.ReferenceTsc, Log + 3 * SampleSize);
        a.mov(eax, 0x40000003);
        a.cpuid();
        a.mov(__dword_ptr[Log + 3 * SampleSize + 8], eax);
        Spin(a, 50_000);
        a.xor(eax, eax);
        a.@out(0xF4, eax);
    });

    private static VmConfiguration Config(byte[] image) => new() { Name = "reftsc", Image = image, MemoryBytes = 4u << 20 };

    private static async Task<(PartitionExit Exit, byte[] Log, TestMachine Machine)> Run(byte[] image)
    {
        var machine = new TestMachine();
        VirtualMachine vm = machine.Create(Config(image));
        await machine.RunAsync();
        byte[] log = new byte[4 * SampleSize];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Log, log);
        return (await vm.Exited, log, machine);
    }

    /// <summary>The page's time from the TSCs read just before and after the MSR brackets the MSR's value.</summary>
    private static void AssertAgrees(Sampled s, string what)
    {
        Assert.That(s.Reference(s.TscBefore), Is.LessThanOrEqualTo(s.Counter), $"{what}: the page's time before the MSR read is not after it");
        Assert.That(s.Reference(s.TscAfter), Is.GreaterThanOrEqualTo(s.Counter), $"{what}: the page's time after the MSR read is not before it");
        Assert.That(s.Reference(s.TscAfter) - s.Reference(s.TscBefore), Is.LessThanOrEqualTo(20UL), $"{what}: a few instructions apart");
    }

    [Test]
    public async Task TheReferenceTscPageGivesTheReferenceCounterFromTheTsc()
    {
        (PartitionExit exit, byte[] log, TestMachine machine) = await Run(Guest(1_000_000_000));
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            Sampled first = Sampled.Read(log, 0), second = Sampled.Read(log, SampleSize);
            ulong msr = BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(3 * SampleSize));
            uint privileges = BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(3 * SampleSize + 8));
            Assert.Multiple(() =>
            {
                Assert.That(privileges & (1u << 9), Is.Not.Zero, "CPUID 0x40000003 EAX bit 9: AccessPartitionReferenceTsc");
                Assert.That(msr, Is.EqualTo(Page | 0x11UL), "the MSR reads back as written");
                Assert.That(second.Sequence, Is.EqualTo(first.Sequence), "nothing changed the page meanwhile");
                Assert.That(first.Sequence, Is.Not.Zero, "the page is valid");
                AssertAgrees(first, "at the start");
                AssertAgrees(second, "after the spin");
                Assert.That(second.Counter - first.Counter, Is.GreaterThan(2_000UL), "time passed over the spin, on both clocks");
            });
        }
    }

    /// <summary>
    /// A write to IA32_TIME_STAMP_COUNTER moves the TSC by an amount the guest chose. The page is rewritten: it agrees with
    /// the counter when the move is a whole number of reference units (100 ns), and is marked invalid otherwise
    /// (TscSequence 0, TLFS chapter 12: read the MSR instead), since no TscOffset in 100 ns units could agree then. Two runs
    /// that write TSC values one apart at the same instant cannot both move it by whole units, so one of them at least must
    /// find the page invalid; the TSC counts on from the value written in both.
    /// </summary>
    [Test]
    public async Task AfterATscWriteThePageAgreesWithTheCounterOrIsMarkedInvalid()
    {
        const uint written = 1_000_000_000;
        var valid = new List<bool>();
        foreach (uint value in new[] { written, written + 1 })
        {
            (PartitionExit exit, byte[] log, TestMachine machine) = await Run(Guest(value));
            using (machine)
            {
                Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
                Sampled before = Sampled.Read(log, SampleSize), after = Sampled.Read(log, 2 * SampleSize);
                ulong tsc = (2UL << 32) + value;
                Assert.That(after.TscBefore, Is.InRange(tsc, tsc + 10_000), "the TSC counts on from the value written");
                Assert.That(after.Sequence, Is.Not.EqualTo(before.Sequence), "the page was rewritten");
                if (after.Sequence != 0)
                {
                    AssertAgrees(after, $"after writing {value}");
                }

                valid.Add(after.Sequence != 0);
            }
        }

        Assert.That(valid, Has.Some.False, "TSC values one apart cannot both be whole reference units from the counter");
    }

    /// <summary>Enabling the page on a GPA outside the partition's RAM is refused with #GP, never a host exception.</summary>
    [Test]
    public async Task EnablingThePageOutsideRamIsAGeneralProtectionFault()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(ecx, HvMsr.ReferenceTsc);
            a.mov(eax, 0x7FF0_0001u); // 2 GiB less 1 MiB: beyond the 4 MiB of RAM
            a.xor(edx, edx);
            a.wrmsr();
            a.xor(eax, eax);
            a.@out(0xF4, eax);
        });
        (PartitionExit exit, _, TestMachine machine) = await Run(image);
        using (machine)
        {
            Assert.Multiple(() =>
            {
                Assert.That(machine.TraceLines, Has.Some.Contains("wrmsr HV_X64_MSR_REFERENCE_TSC (0x40000021) value=0x000000007ff00001 -> #GP"));
                Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault), "no IDT: the #GP ends the guest");
            });
        }
    }

    /// <summary>
    /// The MSR travels in the snapshot (chunk "hv.partition", version 3) and the page with the guest's RAM: a guest saved
    /// between its samples reads, after the restore, what an uninterrupted run reads (the MSR back, a valid page that agrees
    /// with the counter, the page rewritten at its TSC write).
    /// </summary>
    [TestCase(60_000L)]
    [TestCase(200_000L)]
    public async Task AGuestRestoredWithItsReferenceTscPageReadsWhatAnUninterruptedRunReads(long saveAt)
    {
        byte[] image = Guest(1_000_000_000);
        (PartitionExit whole, byte[] reference, TestMachine first) = await Run(image);
        first.Dispose();
        Assert.That(whole.Reason, Is.EqualTo(StopReason.GuestExit), whole.Diagnostic);

        byte[] file;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create(Config(image));
            machine.System.Root.PauseAtInstruction(vm, saveAt);
            await machine.RunAsync();
            Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));
            VmSnapshot snapshot = machine.System.Root.CaptureSnapshot(vm);
            Assert.That(snapshot.Enlightened.Partition.ReferenceTscMsr, Is.EqualTo(Page | 0x11UL), "the snapshot holds the MSR");
            file = SnapshotFormat.Serialize(snapshot);
        }

        VmSnapshot restored = SnapshotFormat.TryDeserialize(file, out string error)!;
        Assert.That(restored, Is.Not.Null, error);
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(restored, out VmCreationError? refused)!;
            Assert.That(vm, Is.Not.Null, refused?.Message);
            await machine.RunAsync();
            byte[] log = new byte[4 * SampleSize];
            machine.System.Root.ReadMemoryOfStoppedVm(vm, Log, log);
            Assert.That((await vm.Exited).Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That(log, Is.EqualTo(reference));
        }
    }
}
