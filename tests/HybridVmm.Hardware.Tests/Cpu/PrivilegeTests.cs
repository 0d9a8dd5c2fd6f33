using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Privilege levels (Intel SDM Vol. 3A, 5.5-5.9 and 6.12; Vol. 1, 18.5): entering ring 3 with IRET, the stack switch
/// through the TSS on an interrupt from ring 3, the gate DPL of INT n, privileged instructions, IOPL and the I/O
/// bitmap, CLI/STI/POPF, and user-mode page rights. Every expectation is the SDM's.
/// </summary>
public class PrivilegeTests
{
    private const uint Gdt = 0x30000, GdtDescriptor = 0x2F000, Idt = 0x31000, IdtDescriptor = 0x2F008, Tss = 0x32000;
    private const ushort KernelCode = 0x08, KernelData = 0x10, UserCode = 0x1B, UserData = 0x23, TssSelector = 0x28;
    private const uint KernelStack = 0x70000, UserStack = 0x60000, UserEntry = 0x8000;
    private const uint GpHandler = 0x5000, PfHandler = 0x5100, UdHandler = 0x5200, SyscallHandler = 0x5300;
    private const uint Record = 0x2E000; // the handlers store what they saw here

    private static ulong Segment(uint type, int dpl) =>
        0xFFFFUL | ((ulong)(type | 0x10u | ((uint)dpl << 5) | 0x80u) << 40) | (0xFUL << 48) | (0xCUL << 52);

    private static TestMachine Machine()
    {
        var m = new TestMachine();
        ulong tss = 0x67UL | ((ulong)(Tss & 0xFFFFFF) << 16) | (0x89UL << 40);
        ulong[] gdt = [0, Segment(0xB, 0), Segment(0x3, 0), Segment(0xB, 3), Segment(0x3, 3), tss];
        for (int i = 0; i < gdt.Length; i++) m.WriteBytes(Gdt + (uint)i * 8, BitConverter.GetBytes(gdt[i]));
        m.WriteBytes(GdtDescriptor, [0x2F, 0x00, .. BitConverter.GetBytes(Gdt)]);
        m.WriteBytes(IdtDescriptor, [0xFF, 0x07, .. BitConverter.GetBytes(Idt)]);
        m.Write32(Tss + 4, KernelStack);       // ESP0
        m.Write32(Tss + 8, KernelData);        // SS0
        SetGate(m, ExceptionVector.GeneralProtection, GpHandler, dpl: 0);
        SetGate(m, ExceptionVector.PageFault, PfHandler, dpl: 0);
        SetGate(m, ExceptionVector.InvalidOpcode, UdHandler, dpl: 0);
        SetGate(m, 0x80, SyscallHandler, dpl: 3);
        SetGate(m, 0x81, SyscallHandler, dpl: 0);
        // Fault handlers: store the error code, the pushed CS and ESP's distance from ESP0, then halt in ring 0.
        foreach (uint handler in (uint[])[GpHandler, PfHandler])
        {
            m.Load(a =>
            {
                a.pop(eax);
                a.mov(__dword_ptr[Record], eax);
                a.mov(eax, __dword_ptr[esp + 4]);
                a.mov(__dword_ptr[Record + 4], eax);
                a.mov(eax, cr2);
                a.mov(__dword_ptr[Record + 8], eax);
                a.mov(__dword_ptr[Record + 12], esp);
                a.hlt();
            }, handler);
        }
        m.Load(a => { a.mov(__dword_ptr[Record + 16], 0x0D0D); a.hlt(); }, UdHandler);
        // The system call: records the frame the CPU pushed (EIP, CS, EFLAGS, ESP, SS) and returns to ring 3.
        m.Load(a =>
        {
            a.mov(ebx, esp);
            a.mov(eax, __dword_ptr[esp + 4]); a.mov(__dword_ptr[Record + 20], eax); // CS
            a.mov(eax, __dword_ptr[esp + 12]); a.mov(__dword_ptr[Record + 24], eax); // ESP
            a.mov(eax, __dword_ptr[esp + 16]); a.mov(__dword_ptr[Record + 28], eax); // SS
            a.mov(__dword_ptr[Record + 32], ebx);
            a.iretd();
        }, SyscallHandler);
        return m;
    }

    private static void SetGate(TestMachine m, int vector, uint handler, int dpl, bool trap = false)
    {
        m.Write32(Idt + (uint)vector * 8, (handler & 0xFFFF) | ((uint)KernelCode << 16));
        m.Write32(Idt + (uint)vector * 8 + 4, (handler & 0xFFFF0000) | 0x8000u | ((uint)dpl << 13) | ((trap ? 0xFu : 0xEu) << 8));
    }

    /// <summary>Code at <see cref="TestMachine.CodeBase"/> that loads the GDT and IDT, the kernel's data segments and stack, then runs <paramref name="body"/> in ring 0.</summary>
    private static void LoadInRing0(TestMachine m, Action<Assembler> body) => m.Load(a =>
    {
        a.lgdt(__[GdtDescriptor]);
        a.lidt(__[IdtDescriptor]);
        a.mov(ax, KernelData);
        a.mov(ds, ax); a.mov(es, ax); a.mov(ss, ax);
        a.mov(esp, KernelStack);
        body(a);
    });

    /// <summary>Ring 0 sets up the tables and IRETs to <paramref name="user"/> code in ring 3 with the given EFLAGS.</summary>
    private static void RunInRing3(TestMachine m, Action<Assembler> user, uint eflags = 0x202, Action<Assembler>? kernelFirst = null, bool loadUserData = true)
    {
        m.Load(a =>
        {
            if (loadUserData)
            {
                a.mov(ax, UserData); // IRET to ring 3 nulled the kernel's DS and ES
                a.mov(ds, ax);
                a.mov(es, ax);
            }
            user(a);
        }, UserEntry);
        m.Load(a =>
        {
            a.lgdt(__[GdtDescriptor]);
            a.lidt(__[IdtDescriptor]);
            a.mov(ax, TssSelector);
            a.ltr(ax);
            a.mov(ax, KernelData);
            a.mov(ds, ax); a.mov(es, ax); a.mov(ss, ax);
            kernelFirst?.Invoke(a);
            a.push(UserData);
            a.push(UserStack);
            a.push(eflags);
            a.push(UserCode);
            a.push(UserEntry);
            a.iretd();
        });
        m.Cpu.Eip = TestMachine.CodeBase;
    }

    [Test]
    public void IretToRing3LoadsTheOuterStackAndNullsKernelDataSegments()
    {
        var m = Machine();
        RunInRing3(m, a => { a.mov(ecx, ds); a.mov(edx, esp); a.mov(esi, cs); a.mov(edi, ss); a.hlt(); }, loadUserData: false);
        m.Cpu.Run(200);
        Assert.Multiple(() =>
        {
            Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edi]), Is.EqualTo(((uint)UserCode, (uint)UserData)));
            Assert.That(m.Cpu[Gpr.Ecx], Is.Zero, "DS held ring-0 data: IRET to ring 3 loads a null selector");
            Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(UserStack));
        });
    }

    [Test]
    public void IretToRing3MakesANullSelectorWithANonzeroRplZero()
    {
        // SDM Vol. 2B IRET, RETURN-TO-OUTER-PRIVILEGE-LEVEL: "IF (SegmentSelector == NULL) OR (...) THEN
        // SegmentSelector := 0" (found by the segmentation fuzzer: the core kept 0003).
        var m = Machine();
        RunInRing3(m, a => { a.mov(ecx, fs); a.mov(edx, gs); a.hlt(); }, loadUserData: false,
            kernelFirst: a => { a.mov(ax, 3); a.mov(fs, ax); a.mov(ax, 1); a.mov(gs, ax); });
        m.Cpu[Gpr.Ecx] = m.Cpu[Gpr.Edx] = 0xFFFF_FFFF;
        m.Cpu.Run(200);
        Assert.That((m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Edx]), Is.EqualTo((0u, 0u)));
    }

    [Test]
    public void AFarJumpToANotPresentSegmentOfAnotherDplIsAGeneralProtectionFaultNotSegmentNotPresent()
    {
        // SDM Vol. 2A JMP, NONCONFORMING-CODE-SEGMENT: "IF (RPL > CPL) OR (DPL ≠ CPL) THEN #GP(segment selector)" comes
        // before "IF segment not present THEN #NP(segment selector)" (found by the segmentation fuzzer: the core gave #NP).
        var m = Machine();
        const ushort notPresentRing3Code = 0x30;
        m.WriteBytes(Gdt + notPresentRing3Code, BitConverter.GetBytes(Segment(0xB, 3) & ~(0x80UL << 40)));
        m.WriteBytes(GdtDescriptor, [0x37, 0x00, .. BitConverter.GetBytes(Gdt)]);
        LoadInRing0(m, a =>
        {
            a.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, notPresentRing3Code, 0));
        });
        m.RunToHalt();
        Assert.That(m.Read32(Record), Is.EqualTo(notPresentRing3Code), "the #GP handler saw the selector as its error code");
    }

    [Test]
    public void AnInterruptFromRing3SwitchesToTheTssStackAndIretReturns()
    {
        var m = Machine();
        RunInRing3(m, a => { a.mov(ecx, 0x11); a.@int(0x80); a.mov(edi, cs); a.mov(ebp, esp); a.@int(0x80); a.hlt(); });
        m.Cpu.Run(500);
        Assert.Multiple(() =>
        {
            Assert.That(m.Read32(Record + 20), Is.EqualTo((uint)UserCode), "the pushed CS");
            Assert.That(m.Read32(Record + 24), Is.EqualTo(UserStack), "the pushed ESP is ring 3's");
            Assert.That(m.Read32(Record + 28), Is.EqualTo((uint)UserData), "the pushed SS");
            Assert.That(m.Read32(Record + 32), Is.EqualTo(KernelStack - 20), "the handler ran on ESP0 with a five-word frame");
            Assert.That((m.Cpu[Gpr.Edi], m.Cpu[Gpr.Ebp]), Is.EqualTo(((uint)UserCode, UserStack)), "IRET came back to ring 3");
        });
    }

    [Test]
    public void IntThroughAGateWithALowerDplIsAGeneralProtectionFaultNamingTheGate()
    {
        var m = Machine();
        RunInRing3(m, a => a.@int(0x81));
        m.Cpu.Run(500);
        Assert.That(m.Read32(Record), Is.EqualTo(0x81u * 8 + 2), "IDT bit set, vector 0x81");
        Assert.That(m.Read32(Record + 4), Is.EqualTo((uint)UserCode));
    }

    /// <summary>
    /// SDM Vol. 2A, INT n: "IF instruction pointer from IDT gate is not within new code-segment limits THEN #GP(EXT)",
    /// for a handler in an inner ring (after the new stack's checks) and in the same ring alike; nothing is pushed.
    /// </summary>
    [TestCase(true, TestName = "IntToAnInnerRingHandlerBeyondItsSegmentLimitIsAGeneralProtectionFault")]
    [TestCase(false, TestName = "IntToASameRingHandlerBeyondItsSegmentLimitIsAGeneralProtectionFault")]
    public void IntToAHandlerBeyondItsSegmentLimitIsAGeneralProtectionFault(bool fromRing3)
    {
        var m = Machine();
        const ushort smallCode = 0x30; // GDT entry 6: ring-0 code, base 0, limit 0xFFFF (byte granular), 32-bit
        m.WriteBytes(Gdt + 6 * 8, BitConverter.GetBytes(0xFFFFUL | ((ulong)(0xBu | 0x10u | 0x80u) << 40) | (0x4UL << 52)));
        m.WriteBytes(GdtDescriptor, [0x37, 0x00, .. BitConverter.GetBytes(Gdt)]);
        const uint beyond = 0x12345; // past the limit: a HLT there would stop the core in ring 0 if the INT were delivered
        m.Load(a => a.hlt(), beyond);
        m.Write32(Idt + 0x82 * 8, (beyond & 0xFFFF) | ((uint)smallCode << 16));
        m.Write32(Idt + 0x82 * 8 + 4, (beyond & 0xFFFF0000) | 0x8000u | (3u << 13) | (0xEu << 8));
        if (fromRing3)
        {
            RunInRing3(m, a => a.@int(0x82));
        }
        else
        {
            LoadInRing0(m, a =>
            {
                a.@int(0x82);
            });
            m.Cpu.Eip = TestMachine.CodeBase;
        }
        m.Cpu.Run(500);
        Assert.That((m.Read32(Record), m.Read32(Record + 4)), Is.EqualTo((0u, fromRing3 ? (uint)UserCode : KernelCode)),
            "#GP(0) raised by the INT instruction, in the ring it ran in");
    }

    /// <summary>
    /// SDM Vol. 2A, INT n, "TRAP-OR-INTERRUPT-GATE": "IF descriptor does not indicate a code segment or new code-segment
    /// DPL > CPL THEN #GP(error_code(new code-segment selector,0,EXT))" comes before "IF new code-segment descriptor is
    /// not present THEN #NP(...)": a not-present handler segment of a higher DPL is #GP, naming it.
    /// </summary>
    [Test]
    public void IntToANotPresentHandlerSegmentOfAHigherDplIsAGeneralProtectionFault()
    {
        var m = Machine();
        const ushort userCodeNotPresent = 0x30; // GDT entry 6: ring-3 code, not present
        m.WriteBytes(Gdt + 6 * 8, BitConverter.GetBytes(0xFFFFUL | ((ulong)(0xBu | 0x10u | (3u << 5)) << 40) | (0xCFUL << 48)));
        m.WriteBytes(GdtDescriptor, [0x37, 0x00, .. BitConverter.GetBytes(Gdt)]);
        m.Write32(Idt + 0x82 * 8, 0x1000u | ((uint)userCodeNotPresent << 16));
        m.Write32(Idt + 0x82 * 8 + 4, 0x8000u | (0xEu << 8));
        LoadInRing0(m, a =>
        {
            a.@int(0x82);
        });
        m.Cpu.Eip = TestMachine.CodeBase;
        m.Cpu.Run(500);
        Assert.That((m.Read32(Record), m.Read32(Record + 4)), Is.EqualTo(((uint)userCodeNotPresent, (uint)KernelCode)), "#GP(selector), not #NP");
    }

    /// <summary>
    /// 16-bit interrupt and trap gates (SDM Vol. 3A 6.11, figure 6-2 with D = 0, and 6.12.1): the frame is words (IP, CS,
    /// FLAGS, and SP, SS from an outer ring), the handler's offset is the gate's low word, and an interrupt gate clears IF.
    /// </summary>
    [TestCase(false, TestName = "IntThroughA16BitTrapGateInTheSameRingPushesAWordFrame")]
    [TestCase(true, TestName = "IntThroughA16BitInterruptGateFromRing3PushesAWordFrameOnTheTssStack")]
    public void IntThroughA16BitGatePushesAWordFrame(bool fromRing3)
    {
        var m = Machine();
        const uint handler = 0x5400;
        m.Load(a => a.hlt(), handler);
        // Gate 0x84, DPL 3, to KernelCode:5400; the upper word, which a 32-bit gate would take as offset bits 31:16, is set.
        m.Write32(Idt + 0x84 * 8, (handler & 0xFFFF) | ((uint)KernelCode << 16));
        m.Write32(Idt + 0x84 * 8 + 4, 0xABCD_0000u | 0x8000u | (3u << 13) | ((fromRing3 ? 6u : 7u) << 8));
        uint start;
        if (fromRing3)
        {
            RunInRing3(m, a => { a.@int(0x84); a.hlt(); }, eflags: 0x202);
            start = UserEntry;
        }
        else
        {
            LoadInRing0(m, a =>
            {
                a.@int(0x84);
                a.hlt();
            });
            m.Cpu.Eip = TestMachine.CodeBase;
            start = TestMachine.CodeBase;
        }
        uint intAt = start;
        while (m.Read8(intAt) != 0xCD || m.Read8(intAt + 1) != 0x84) intAt++;
        CpuExit exit = m.Cpu.Run(500);
        uint top = m.Cpu[Gpr.Esp];
        uint Word(uint offset) => m.Read32(top + offset) & 0xFFFF;
        Assert.Multiple(() =>
        {
            Assert.That((exit.Reason, m.Cpu.Eip), Is.EqualTo((CpuExitReason.Halt, handler + 1)), "the handler at the gate's 16-bit offset");
            Assert.That(top, Is.EqualTo(KernelStack - (fromRing3 ? 10u : 6u)), "five or three words pushed");
            Assert.That(Word(0), Is.EqualTo((intAt + 2) & 0xFFFF), "IP after the INT");
            Assert.That(Word(2), Is.EqualTo(fromRing3 ? (uint)UserCode : KernelCode), "CS");
            Assert.That(Word(4), Is.EqualTo(fromRing3 ? 0x202u : 0x002u), "FLAGS");
            if (fromRing3) Assert.That((Word(6), Word(8)), Is.EqualTo((UserStack & 0xFFFF, (uint)UserData)), "SP and SS of ring 3");
            Assert.That(m.Cpu.Eflags & 0x200, Is.Zero, fromRing3 ? "an interrupt gate clears IF" : "IF was clear already");
        });
    }

    /// <summary>
    /// The room check before an interrupt's pushes follows the pushes themselves: on a 16-bit stack (SS.B = 0) SP wraps at
    /// 64 KiB, so a frame from SP = 4 fits a 64 KiB segment (SDM Vol. 3A 6.12.1; Vol. 1, 6.2: the stack-address size).
    /// </summary>
    [Test]
    public void AnInterruptFrameWrapsSpOnASixteenBitStack()
    {
        var m = Machine();
        const ushort stack16 = 0x30; // GDT entry 6: ring-0 data, base 0, limit 0xFFFF, B = 0
        m.WriteBytes(Gdt + 6 * 8, BitConverter.GetBytes(0xFFFFUL | ((ulong)(0x3u | 0x10u | 0x80u) << 40)));
        m.WriteBytes(GdtDescriptor, [0x37, 0x00, .. BitConverter.GetBytes(Gdt)]);
        const uint handler = 0x5400;
        m.Load(a => a.hlt(), handler);
        m.Write32(Idt + 0x85 * 8, (handler & 0xFFFF) | ((uint)KernelCode << 16));
        m.Write32(Idt + 0x85 * 8 + 4, (handler & 0xFFFF0000) | 0x8000u | (0xEu << 8));
        m.Load(a =>
        {
            a.lgdt(__[GdtDescriptor]);
            a.lidt(__[IdtDescriptor]);
            a.mov(ax, KernelData);
            a.mov(ds, ax); a.mov(es, ax);
            a.mov(ax, stack16);
            a.mov(ss, ax);
            a.mov(esp, 0x0001_0004); // SP = 4; bits 31:16 are not part of a 16-bit stack pointer
            a.@int(0x85);
        });
        m.Cpu.Eip = TestMachine.CodeBase;
        CpuExit exit = m.Cpu.Run(500);
        Assert.That((exit.Reason, m.Cpu.Eip), Is.EqualTo((CpuExitReason.Halt, handler + 1)), "delivered, not #SS");
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(0x0001_FFF8u), "SP wrapped to FFF8, ESP's upper half kept");
        Assert.That(m.Read32(0xFFFC) & 0xFFFF, Is.EqualTo((uint)KernelCode), "CS pushed at FFFC, EIP at FFF8, EFLAGS at 0");
    }

    [TestCase("hlt")]
    [TestCase("mov cr0")]
    [TestCase("lgdt")]
    [TestCase("rdmsr")]
    [TestCase("cli")]
    [TestCase("sti")]
    [TestCase("wbinvd")]
    [TestCase("invd")]
    public void PrivilegedInstructionsInRing3AreGeneralProtectionFaults(string which)
    {
        var m = Machine();
        RunInRing3(m, a =>
        {
            switch (which)
            {
                case "hlt": a.hlt(); break;
                case "mov cr0": a.mov(cr0, eax); break;
                case "lgdt": a.lgdt(__[GdtDescriptor]); break;
                case "rdmsr": a.rdmsr(); break;
                case "cli": a.cli(); break;
                case "wbinvd": a.wbinvd(); break; // SDM Vol. 2B, WBINVD: #GP(0) if CPL is not 0
                case "invd": a.invd(); break;     // SDM Vol. 2A, INVD: likewise
                default: a.sti(); break;
            }
        });
        m.Cpu.Run(500);
        Assert.That((m.Read32(Record), m.Read32(Record + 4)), Is.EqualTo((0u, (uint)UserCode)), "#GP(0) from ring 3 (IOPL 0 for CLI/STI)");
    }

    [Test]
    public void CliInRing3IsAllowedWithIopl3()
    {
        var m = Machine();
        RunInRing3(m, a => { a.cli(); a.pushfd(); a.pop(ebx); a.jmp(UserEntry + 100); }, eflags: 0x3202);
        m.Cpu.Run(200);
        Assert.That(m.Cpu[Gpr.Ebx] & 0x200, Is.Zero);
    }

    [Test]
    public void PopfInRing3SilentlyKeepsIfAndIopl()
    {
        // Popek and Goldberg's sensitive but unprivileged instruction: no trap, the change is just dropped.
        var m = Machine();
        RunInRing3(m, a => { a.push(0x3002); a.popfd(); a.pushfd(); a.pop(ebx); a.jmp(UserEntry + 100); });
        CpuExit exit = m.Cpu.Run(200);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.BudgetExhausted), "no fault");
        Assert.That(m.Cpu[Gpr.Ebx] & 0x3200, Is.EqualTo(0x200u), "IF still set, IOPL still 0");
    }

    [Test]
    public void VmcallInRing3IsAnInvalidOpcode()
    {
        var m = Machine();
        RunInRing3(m, a => a.vmcall());
        m.Cpu.Run(200);
        Assert.That(m.Read32(Record + 16), Is.EqualTo(0x0D0Du));
    }

    [Test]
    public void TheIoBitmapDecidesWhichPortsRing3MayUse()
    {
        var m = Machine();
        // A 32-bit TSS whose I/O bitmap (at offset 0x68) allows ports 0x3F8-0x3FF and nothing else below 0x400. The
        // processor reads two bitmap bytes, so the limit takes in the 0xFF byte that ends the map (SDM Vol. 1, 18.5.2).
        m.WriteBytes(Gdt + TssSelector, BitConverter.GetBytes(0xE8UL | ((ulong)(Tss & 0xFFFFFF) << 16) | (0x89UL << 40)));
        m.WriteBytes(Tss + 0x66, [0x68, 0x00]);
        for (uint b = 0; b <= 0x80; b++) m.WriteBytes(Tss + 0x68 + b, [b == 0x3F8 / 8 ? (byte)0 : (byte)0xFF]);
        RunInRing3(m, a => { a.mov(dx, 0x3FD); a.@in(al, dx); a.mov(dx, 0x3F7); a.@in(al, dx); });
        CpuExit exit = m.Cpu.Run(200);
        Assert.That((exit.Reason, exit.Port), Is.EqualTo((CpuExitReason.IoIn, (ushort)0x3FD)), "an allowed port reaches the hypervisor");
        m.Cpu.CompleteIoIn(0x60);
        m.Cpu.Run(200);
        Assert.That((m.Read32(Record), m.Read32(Record + 4)), Is.EqualTo((0u, (uint)UserCode)), "a denied port is #GP(0)");
    }

    [Test]
    public void Ring3SeesOnlyUserPagesAndItsOwnWriteRights()
    {
        var m = Machine();
        // Paging: the low 1 MiB user-accessible and writable except page 0x50 (supervisor) and page 0x51 (user, read-only).
        const uint pd = 0x40000, pt = 0x41000;
        for (uint p = 0; p < 256; p++) m.Write32(pt + p * 4, (p << 12) | (p == 0x50 ? 3u : p == 0x51 ? 5u : 7u));
        m.Write32(pd, pt | 7);
        RunInRing3(m, a => { a.mov(eax, __dword_ptr[0x51000]); a.mov(__dword_ptr[0x50000], eax); }, kernelFirst: a =>
        {
            a.mov(eax, pd); a.mov(cr3, eax);
            a.mov(eax, 0x8000_0011); a.mov(cr0, eax);
        });
        m.Cpu.Run(300);
        Assert.That((m.Read32(Record), m.Read32(Record + 8)), Is.EqualTo((7u, 0x50000u)), "a user write to a supervisor page: P|W|U");

        var ro = Machine();
        for (uint p = 0; p < 256; p++) ro.Write32(pt + p * 4, (p << 12) | (p == 0x51 ? 5u : 7u));
        ro.Write32(pd, pt | 7);
        RunInRing3(ro, a => { a.mov(__dword_ptr[0x51000], eax); }, kernelFirst: a =>
        {
            a.mov(eax, pd); a.mov(cr3, eax);
            a.mov(eax, 0x8000_0011); a.mov(cr0, eax);
        });
        ro.Cpu.Run(300);
        Assert.That((ro.Read32(Record), ro.Read32(Record + 8)), Is.EqualTo((7u, 0x51000u)), "a user write to a read-only user page, even with CR0.WP=0");
    }

    // A ring-1 code segment (0x31), a ring-1 stack segment of 4 KiB (0x39, byte granular, limit 0xFFF) and a call gate
    // of DPL 3 to the ring-1 code (0x43); the TSS's SS1:ESP1 is that stack with ESP1 = 0x2000, beyond its limit, so the
    // first push on the new stack passes it.
    private const ushort Ring1Code = 0x31, Ring1Stack = 0x39, Ring1Gate = 0x43;
    private const uint Ring1Handler = 0x5400;

    private static TestMachine MachineWithAFullRing1Stack()
    {
        TestMachine m = Machine();
        m.WriteBytes(Gdt + 0x30, BitConverter.GetBytes(Segment(0xB, 1)));
        m.WriteBytes(Gdt + 0x38, BitConverter.GetBytes(0x0FFFUL | ((ulong)(0x3u | 0x10u | (1u << 5) | 0x80u) << 40) | (0x4UL << 52)));
        m.WriteBytes(Gdt + 0x40, BitConverter.GetBytes((Ring1Handler & 0xFFFFUL) | ((ulong)Ring1Code << 16) | (0xECUL << 40) | ((ulong)(Ring1Handler >> 16) << 48)));
        m.WriteBytes(GdtDescriptor, [0x47, 0x00, .. BitConverter.GetBytes(Gdt)]);
        m.Write32(Tss + 12, 0x2000);     // ESP1
        m.Write32(Tss + 16, Ring1Stack); // SS1
        SetGate(m, ExceptionVector.StackFault, GpHandler, dpl: 0);
        m.Write32(Idt + 0x82 * 8, (Ring1Handler & 0xFFFF) | ((uint)Ring1Code << 16));
        m.Write32(Idt + 0x82 * 8 + 4, (Ring1Handler & 0xFFFF0000) | 0x8000u | (3u << 13) | (0xEu << 8));
        m.Load(a => a.hlt(), Ring1Handler);
        return m;
    }

    /// <summary>
    /// INT n to a handler in an inner ring whose stack has no room for the frame is #SS with the new SS's selector (SDM
    /// Vol. 2A, INT n: "#SS(error_code(NewSS, 0, EXT))" when the new stack does not have room; EXT is 0 for INT n), a
    /// fault of the INT instruction in the outer ring.
    /// </summary>
    [Test]
    public void AnInterruptWhoseInnerStackHasNoRoomIsAStackFaultNamingThatStack()
    {
        TestMachine m = MachineWithAFullRing1Stack();
        RunInRing3(m, a => a.@int(0x82));
        m.Cpu.Run(500);
        Assert.Multiple(() =>
        {
            Assert.That(m.Read32(Record), Is.EqualTo((uint)(Ring1Stack & ~3)), "the error code: SS1's selector, not 0");
            Assert.That(m.Read32(Record + 4), Is.EqualTo((uint)UserCode), "a fault of the INT in ring 3");
        });
    }

    /// <summary>
    /// The same for an external interrupt taken in ring 3: the error code carries EXT (bit 0), since the fault came while
    /// delivering an event from outside the program (SDM Vol. 3A, 6.13).
    /// </summary>
    [Test]
    public void AnExternalInterruptWhoseInnerStackHasNoRoomIsAStackFaultWithExt()
    {
        TestMachine m = MachineWithAFullRing1Stack();
        RunInRing3(m, a => { a.nop(); a.jmp(UserEntry + 8); }, eflags: 0x202);
        m.Cpu.Run(100);
        m.Cpu.RequestInterrupt(0x82);
        m.Cpu.Run(100);
        Assert.That(m.Read32(Record), Is.EqualTo((uint)(Ring1Stack & ~3) | 1), "SS1's selector with EXT");
    }

    /// <summary>A CALL through a call gate to an inner ring whose stack has no room is #SS(new SS) too (SDM Vol. 2A, CALL).</summary>
    [Test]
    public void ACallGateWhoseInnerStackHasNoRoomIsAStackFaultNamingThatStack()
    {
        TestMachine m = MachineWithAFullRing1Stack();
        RunInRing3(m, a => a.call(Ring1Gate, 0));
        m.Cpu.Run(500);
        Assert.Multiple(() =>
        {
            Assert.That(m.Read32(Record), Is.EqualTo((uint)(Ring1Stack & ~3)), "the error code: SS1's selector, not 0");
            Assert.That(m.Read32(Record + 4), Is.EqualTo((uint)UserCode), "a fault of the CALL in ring 3");
        });
    }
}
