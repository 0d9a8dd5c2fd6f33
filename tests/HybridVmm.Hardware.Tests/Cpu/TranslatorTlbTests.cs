using HybridVmm.Hardware.Cpu;
using HybridVmm.Testing;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// The translator's own TLB (Jit/X86Core.JitTlb.cs) keeps, per linear page, the host address a block's access went to.
/// Each test changes one thing that entry was derived from, then runs a block that uses it: the guest's page tables
/// with INVLPG or a CR3 load, the access rights (SMAP's EFLAGS.AC), the second-level table (a remap, a write
/// protection), and cached code appearing on a page blocks wrote to. Every block is compiled at its first run, and
/// each program runs on the interpreter alone and on the translator: both must give the same state, and the value the
/// SDM's rules give.
/// </summary>
public class TranslatorTlbTests
{
    private const uint PageDirectory = 0x70000, LowTable = 0x71000, WindowTable = 0x72000, Window = 0x4000_0000;
    private const uint SecondDirectory = 0x73000, SecondWindowTable = 0x74000, EvictingTable = 0x75000;
    private const uint P = 1, RW = 2, US = 4;
    private const uint FrameA = TestMachine.DataBase, FrameB = TestMachine.DataBase + 0x1000;

    private static readonly ExecutionTier[] Tiers = [ExecutionTier.Interpreter, ExecutionTier.Jit];

    private static TestMachine Machine(ExecutionTier tier)
    {
        var m = new TestMachine();
        m.Cpu.Tier = tier;
        m.Cpu.JitHotThreshold = 1;
        m.Cpu.CompileInBackground = false;
        return m;
    }

    /// <summary>The low 1 MiB identity-mapped; the window's first page over frame A, in a second directory over frame B.</summary>
    private static TestMachine PagedMachine(ExecutionTier tier)
    {
        TestMachine m = Machine(tier);
        for (uint page = 0; page < TestMachine.Pages; page++)
        {
            m.Write32(LowTable + page * 4, (page << 12) | P | RW);
        }
        m.Write32(PageDirectory, LowTable | P | RW);
        m.Write32(PageDirectory + (Window >> 22) * 4, WindowTable | P | RW);
        m.Write32(WindowTable, FrameA | P | RW);
        m.Write32(SecondDirectory, LowTable | P | RW);
        m.Write32(SecondDirectory + (Window >> 22) * 4, SecondWindowTable | P | RW);
        m.Write32(SecondWindowTable, FrameB | P | RW);
        m.Write32(PageDirectory + (Window >> 22) * 4 + 4, EvictingTable | P | RW);
        m.Write32(EvictingTable, TestMachine.DataBase + 0x2000 | P | RW);
        m.Write32(FrameA, 1);
        m.Write32(FrameB, 1000);
        m.Cpu.Cr3 = PageDirectory;
        return m;
    }

    /// <summary>A <see cref="PagedMachine"/> whose window's first page is a user page (U/S in its directory entry and its PTE) over frame A.</summary>
    private static TestMachine UserWindowMachine(ExecutionTier tier)
    {
        TestMachine m = PagedMachine(tier);
        m.Write32(PageDirectory + (Window >> 22) * 4, WindowTable | P | RW | US);
        m.Write32(WindowTable, FrameA | P | RW | US);
        return m;
    }

    private static void AssertSameRegisters(TestMachine interp, TestMachine jit)
    {
        foreach (Gpr r in Enum.GetValues<Gpr>())
        {
            Assert.That(jit.Cpu[r], Is.EqualTo(interp.Cpu[r]), $"{r}");
        }
        Assert.That((jit.Cpu.Eip, jit.Cpu.Eflags), Is.EqualTo((interp.Cpu.Eip, interp.Cpu.Eflags)), "EIP, EFLAGS");
        Assert.That(jit.Cpu.JitStatistics.BlockEntries, Is.GreaterThan(0), "the translator ran blocks");
    }

    [TestCase("invlpg")]
    [TestCase("cr3")]
    [TestCase("evict")]
    public void ABlockReadsThroughTheNewMappingAfterTheGuestChangesIt(string how)
    {
        // Each pass adds the dword at the window twice, then maps the window over frame A or B by the pass's parity,
        // by rewriting the PTE and INVLPG, or by loading the other page directory. The first add misses the guest TLB
        // (the interpreter walks and fills it); the second, a block of its own, then fills the translator's TLB, which
        // the first add of the next pass would hit if the remapping had not dropped it. INVLPG and MOV CR3 end blocks.
        // "evict" rewrites the PTE without INVLPG but first reads the page 4 MiB above the window, whose translation
        // takes the same guest TLB entry: the next pass must walk the page tables again, as the interpreter does.
        const int passes = 200;
        var results = new List<TestMachine>();
        foreach (ExecutionTier tier in Tiers)
        {
            TestMachine m = PagedMachine(tier);
            m.Load(a =>
            {
                a.mov(eax, 0x8000_0011);
                a.mov(cr0, eax);
                a.mov(ecx, passes);
                a.xor(esi, esi);
                a.xor(edi, edi);
                Label top = a.CreateLabel();
                a.Label(ref top);
                a.add(esi, __dword_ptr[Window]);
                a.add(edi, __dword_ptr[Window]);
                a.mov(eax, ecx);
                a.and(eax, 1);
                if (how is "invlpg" or "evict")
                {
                    a.shl(eax, 12);
                    a.add(eax, FrameA | P | RW);
                    a.mov(__dword_ptr[WindowTable], eax);
                    if (how == "invlpg")
                    {
                        a.invlpg(__dword_ptr[Window]);
                    }
                    else
                    {
                        a.mov(ebx, __dword_ptr[Window + 0x40_0000]);
                    }
                }
                else
                {
                    a.imul(eax, eax, (int)(SecondDirectory - PageDirectory));
                    a.add(eax, PageDirectory);
                    a.mov(cr3, eax);
                }
                a.dec(ecx);
                a.jnz(top);
                a.hlt();
            });
            m.RunToHalt();
            results.Add(m);
        }
        // The first pass reads frame A; a pass with ECX = n maps frame B for the next pass when n is odd.
        uint expected = 0;
        bool onB = false;
        for (int n = passes; n >= 1; n--)
        {
            expected += onB ? 1000u : 1u;
            onB = (n & 1) == 1;
        }
        Assert.That((results[0].Cpu[Gpr.Esi], results[0].Cpu[Gpr.Edi]), Is.EqualTo((expected, expected)), "the interpreter follows every remapping");
        AssertSameRegisters(results[0], results[1]);
    }

    [Test]
    public void ABlockStopsReadingAUserPageWhenSmapIsBackOn()
    {
        // STAC lets the supervisor read a user page: the first read walks the page tables, the second (a block) fills
        // the translator's TLB. After CLAC the same read, in another block, must be the #PF SMAP makes it (SDM Vol. 3A,
        // 4.6.1), not a hit in that TLB.
        var exits = new List<CpuExit>();
        var machines = new List<TestMachine>();
        foreach (ExecutionTier tier in Tiers)
        {
            TestMachine m = UserWindowMachine(tier);
            m.Load(a =>
            {
                a.mov(eax, (uint)Cr4Flags.SMAP);
                a.mov(cr4, eax);
                a.mov(eax, 0x8001_0011);
                a.mov(cr0, eax);
                a.stac();
                a.mov(ebx, __dword_ptr[Window]);
                a.add(ebx, __dword_ptr[Window]);
                a.clac();
                a.mov(edx, __dword_ptr[Window]);
                a.add(edx, 1);
                a.hlt();
            });
            exits.Add(m.Cpu.Run(100));
            machines.Add(m);
        }
        Assert.That((exits[0].Reason, exits[0].Vector, exits[0].ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.PageFault, 1u)),
            "a present page, a supervisor read: error code 1");
        Assert.That((exits[1].Reason, exits[1].Vector, exits[1].ErrorCode), Is.EqualTo((exits[0].Reason, exits[0].Vector, exits[0].ErrorCode)));
        Assert.That(machines[0].Cpu[Gpr.Ebx], Is.EqualTo(2u), "the read with AC set");
        AssertSameRegisters(machines[0], machines[1]);
    }

    [Test]
    public void ABlockFollowsTheSecondLevelTableWhenTheHostRemapsOrWriteProtectsAPage()
    {
        // A loop adds the dword at DataBase and stores the sum at DataBase + 0x800. Between runs the host maps the page
        // over another frame, then write-protects it: the next reads come from the new frame, and the next store is a
        // memory intercept (an EPT violation), whichever tier runs.
        var log = new List<string>[2];
        var machines = new TestMachine[2];
        for (int t = 0; t < 2; t++)
        {
            TestMachine m = Machine(Tiers[t]);
            machines[t] = m;
            log[t] = [];
            uint page = TestMachine.DataBase >> 12, other = page + 0x10;
            m.Write32(TestMachine.DataBase, 3);
            m.Write32(other << 12, 70_000);
            m.Load(a =>
            {
                a.mov(ecx, 1_000_000);
                a.xor(esi, esi);
                Label top = a.CreateLabel();
                a.Label(ref top);
                a.add(esi, __dword_ptr[TestMachine.DataBase]);
                a.mov(__dword_ptr[TestMachine.DataBase + 0x800], esi);
                a.dec(ecx);
                a.jnz(top);
                a.hlt();
            });
            CpuExit first = m.Cpu.Run(400);
            log[t].Add($"{first.Reason} esi={m.Cpu[Gpr.Esi]}");
            m.Slat.Map(page, (int)other, writable: true);
            CpuExit second = m.Cpu.Run(400);
            log[t].Add($"{second.Reason} esi={m.Cpu[Gpr.Esi]}");
            m.Slat.SetWritable(page, false);
            CpuExit third = m.Cpu.Run(400);
            log[t].Add($"{third.Reason} {third.GuestPhysicalAddress:x} esi={m.Cpu[Gpr.Esi]} eip={m.Cpu.Eip:x}");
        }
        Assert.That(log[0][2], Does.StartWith($"{CpuExitReason.MemoryIntercept} {TestMachine.DataBase + 0x800:x}"),
            "the store to the write-protected page exits");
        Assert.That(machines[0].Cpu[Gpr.Esi], Is.GreaterThan(70_000u), "the reads after the remap come from the other frame");
        Assert.That(log[1], Is.EqualTo(log[0]));
        AssertSameRegisters(machines[0], machines[1]);
    }

    [Test]
    public void AChainOfBlocksDoesNotEnterAPageTheFetchRightsNoLongerAllow()
    {
        // A supervisor loop calls a routine on a user page until both are blocks, chained across the two pages through
        // the guest TLB. Then CR4.SMEP goes on (the TLB keeps its entries): the next call must be the #PF SMEP makes
        // a supervisor fetch from a user page (SDM Vol. 3A, 4.6.2; error code P and I/D), not a chain into the routine.
        var exits = new List<CpuExit>();
        var machines = new List<TestMachine>();
        foreach (ExecutionTier tier in Tiers)
        {
            TestMachine m = UserWindowMachine(tier);
            m.WriteBytes(FrameA, [0x40, 0xC3]); // inc eax; ret
            m.Load(a =>
            {
                a.mov(eax, 0x8000_0011);
                a.mov(cr0, eax);
                a.xor(eax, eax);
                a.mov(ecx, 100);
                Label loop = a.CreateLabel();
                a.Label(ref loop);
                a.call(Window);
                a.dec(ecx);
                a.jnz(loop);
                a.mov(ebx, (uint)Cr4Flags.SMEP);
                a.mov(cr4, ebx);
                a.call(Window);
                a.hlt();
            });
            CpuExit exit;
            do
            {
                exit = m.Cpu.Run(10_000);
            }
            while (exit.Reason == CpuExitReason.ControlRegisterWrite); // the kernel's exit for an owned CR4 bit: go on
            exits.Add(exit);
            machines.Add(m);
        }
        Assert.That((exits[0].Reason, exits[0].Vector, exits[0].ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.PageFault, 0x11u)),
            "a supervisor fetch from a present user page under SMEP");
        Assert.That((exits[1].Reason, exits[1].Vector, exits[1].ErrorCode), Is.EqualTo((exits[0].Reason, exits[0].Vector, exits[0].ErrorCode)));
        Assert.That((machines[0].Cpu[Gpr.Eax], machines[0].Cpu.Cr2), Is.EqualTo((100u, Window)), "100 calls before SMEP");
        Assert.That(machines[1].Cpu.Cr2, Is.EqualTo(Window));
        AssertSameRegisters(machines[0], machines[1]);
    }

    [Test]
    public void AStoreToAPageThatBecameCodeReachesTheCode()
    {
        // A first loop stores to a page that holds no code yet (the translator's TLB then allows writes there); a
        // second loop patches the immediate of "mov eax, imm32; ret" on that page and calls it. Once the page is code,
        // each patch must drop its decoded instruction, so each call returns the byte just stored.
        const uint routine = TestMachine.DataBase + 0x2800;
        var machines = new List<TestMachine>();
        foreach (ExecutionTier tier in Tiers)
        {
            TestMachine m = Machine(tier);
            m.WriteBytes(routine, [0xB8, 0, 0, 0, 0, 0xC3]);
            m.Load(a =>
            {
                a.mov(ecx, 50);
                Label fill = a.CreateLabel(), patch = a.CreateLabel();
                a.Label(ref fill);
                a.mov(__byte_ptr[routine + 1], cl);
                a.dec(ecx);
                a.jnz(fill);
                a.mov(ecx, 50);
                a.xor(esi, esi);
                a.Label(ref patch);
                a.mov(__byte_ptr[routine + 1], cl);
                a.call(routine);
                a.add(esi, eax);
                a.dec(ecx);
                a.jnz(patch);
                a.hlt();
            });
            m.RunToHalt();
            machines.Add(m);
        }
        Assert.That(machines[0].Cpu[Gpr.Esi], Is.EqualTo(1275u), "1 + 2 + ... + 50");
        AssertSameRegisters(machines[0], machines[1]);
    }
}
