using HybridVmm.Hardware.Cpu;
using HybridVmm.Testing;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Segmentation (Intel SDM Vol. 3A, chapters 3 and 5): descriptor loads with their checks, bases and limits on every
/// access, far transfers within a privilege level, call gates, and the system-segment instructions. Each expectation
/// is the SDM's; the `segments` sample guest checks the same against QEMU (end-to-end tests).
/// </summary>
public class SegmentationTests
{
    private const uint Gdt = 0x30000;
    private const uint GdtDescriptor = 0x2F000;
    private const uint Idt = 0x31000;
    private const uint IdtDescriptor = 0x2F008;

    // Selectors of the test GDT.
    private const ushort Code = 0x08, Data = 0x10, Based = 0x18, Small = 0x20, ExpandDown = 0x28, ExecuteOnly = 0x30,
        ReadableCode = 0x38, NotPresent = 0x40, ReadOnly = 0x48, BasedCode = 0x50, Gate = 0x58, Tss = 0x60, Ldt = 0x68, Dpl3Data = 0x70;
    private const ushort GdtLimit = 0x77;
    private const uint BasedBase = 0x20000, BasedCodeBase = 0x10000, TssBase = 0x32000, LdtBase = 0x33000;

    /// <summary>A code or data descriptor (SDM Vol. 3A, figure 3-8): type with S=1, DPL 0, present unless told, 32-bit.</summary>
    private static ulong Descriptor(uint baseAddress, uint limit, uint type, bool granular = false, bool present = true, int dpl = 0, bool system = false)
    {
        ulong d = (limit & 0xFFFF) | ((ulong)(baseAddress & 0xFFFFFF) << 16);
        uint flags = type | (system ? 0u : 0x10u) | ((uint)dpl << 5) | (present ? 0x80u : 0);
        d |= (ulong)flags << 40;
        d |= (ulong)((limit >> 16) & 0xF) << 48;
        d |= (ulong)((granular ? 0x8u : 0) | (system ? 0 : 0x4u)) << 52;
        d |= (ulong)(baseAddress >> 24) << 56;
        return d;
    }

    private static TestMachine MachineWithGdt()
    {
        var m = new TestMachine();
        ulong[] gdt =
        [
            0,
            Descriptor(0, 0xFFFFF, 0xB, granular: true),         // 0x08 flat code, execute/read, accessed
            Descriptor(0, 0xFFFFF, 0x3, granular: true),         // 0x10 flat data, read/write, accessed
            Descriptor(BasedBase, 0xFFFF, 0x3),                  // 0x18 data at 0x20000, 64 KiB
            Descriptor(0x20000, 0xFFF, 0x3),                     // 0x20 data, limit 0xFFF
            Descriptor(0x20000, 0xFFF, 0x7),                     // 0x28 data, expand-down, limit 0xFFF (B=1)
            Descriptor(0, 0xFFFFF, 0x9, granular: true),         // 0x30 code, execute-only
            Descriptor(0, 0xFFFFF, 0xB, granular: true),         // 0x38 code, execute/read
            Descriptor(0, 0xFFFFF, 0x3, granular: true, present: false), // 0x40 not present
            Descriptor(0, 0xFFFFF, 0x1, granular: true),         // 0x48 data, read-only
            Descriptor(BasedCodeBase, 0xFFFF, 0xB),              // 0x50 code at 0x10000
            0,                                                   // 0x58 call gate, below
            Descriptor(TssBase, 0x67, 0x9, system: true),        // 0x60 32-bit TSS, available
            Descriptor(LdtBase, 0xF, 0x2, system: true),         // 0x68 LDT with two entries
            Descriptor(0, 0xFFFFF, 0x3, granular: true, dpl: 3), // 0x70 data, DPL 3
        ];
        for (int i = 0; i < gdt.Length; i++)
        {
            m.WriteBytes(Gdt + (uint)i * 8, BitConverter.GetBytes(gdt[i]));
        }
        m.WriteBytes(GdtDescriptor, [(byte)GdtLimit, (byte)(GdtLimit >> 8), .. BitConverter.GetBytes(Gdt)]);
        // LDT entry 1 (selector 0x0C): the based data segment again.
        m.WriteBytes(LdtBase + 8, BitConverter.GetBytes(Descriptor(BasedBase, 0xFFFF, 0x3)));
        return m;
    }

    private static void SetCallGate(TestMachine m, uint target, ushort codeSelector)
    {
        ulong gate = (target & 0xFFFF) | ((ulong)codeSelector << 16) | (0x8CUL << 40) | ((ulong)(target >> 16) << 48);
        m.WriteBytes(Gdt + Gate, BitConverter.GetBytes(gate));
    }

    private static void LoadGdt(Assembler a) => a.lgdt(__[GdtDescriptor]);

    private static CpuExit RunExpectingFault(TestMachine m, Action<Assembler> code)
    {
        m.Load(a => { code(a); a.hlt(); });
        return m.Cpu.Run(1000);
    }

    [Test]
    public void ADataSegmentsBaseIsAddedToEveryOffset()
    {
        var m = MachineWithGdt();
        m.Write32(BasedBase + 0x10, 0x1234_5678);
        m.Write32(BasedBase + 0x200, 0xAAAA_0001);
        m.Execute(a =>
        {
            LoadGdt(a);
            a.mov(ax, Based);
            a.mov(gs, ax);
            a.mov(ebx, __dword_ptr.gs[0x10]);          // a GS-relative per-CPU variable, as kvm-unit-tests and Linux use
            a.mov(es, ax);
            a.mov(ds, ax);
            a.mov(esi, 0x200);
            a.mov(edi, 0x300);
            a.movsd();                                  // DS:ESI -> ES:EDI, both based
            a.mov(ax, Data);
            a.mov(ds, ax);
            a.mov(es, ax);
        });
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0x1234_5678u));
        Assert.That(m.Read32(BasedBase + 0x300), Is.EqualTo(0xAAAA_0001u));
        Assert.That(m.Cpu.GetSegment(Sreg.Gs), Is.EqualTo(new SegmentRegister(Based, BasedBase, 0xFFFF, 0x4093)),
            "the hidden cache: base, byte-granular limit, attributes with the accessed bit set");
    }

    [Test]
    public void LeaComputesTheOffsetWithoutTheSegmentBase()
    {
        var m = MachineWithGdt();
        m.Execute(a => { LoadGdt(a); a.mov(ax, Based); a.mov(ds, ax); a.lea(ecx, __[ebx + 0x40]); a.mov(ax, Data); a.mov(ds, ax); });
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(0x40u));
    }

    [Test]
    public void AnAccessBeyondTheLimitIsAGeneralProtectionFaultAndChangesNothing()
    {
        var m = MachineWithGdt();
        CpuExit exit = RunExpectingFault(m, a =>
        {
            LoadGdt(a);
            a.mov(ax, Small);
            a.mov(fs, ax);
            a.mov(ecx, 5);
            a.mov(__dword_ptr.fs[0xFFC], ecx);          // bytes 0xFFC-0xFFF: inside
            a.add(ecx, __dword_ptr.fs[0xFFE]);          // bytes 0xFFE-0x1001: past the limit
        });
        Assert.That((exit.Reason, exit.Vector, exit.ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.GeneralProtection, 0u)));
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(5u));
        Assert.That(m.Read32(0x20FFC), Is.EqualTo(5u));
    }

    [Test]
    public void AnExpandDownSegmentAllowsOnlyOffsetsAboveItsLimit()
    {
        var m = MachineWithGdt();
        m.Execute(a => { LoadGdt(a); a.mov(ax, ExpandDown); a.mov(fs, ax); a.mov(__dword_ptr.fs[0x1000], 0x77); });
        Assert.That(m.Read32(0x21000), Is.EqualTo(0x77u));

        var below = MachineWithGdt();
        CpuExit exit = RunExpectingFault(below, a => { LoadGdt(a); a.mov(ax, ExpandDown); a.mov(fs, ax); a.mov(__dword_ptr.fs[0xFFF], 0x77); });
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((ExceptionVector.GeneralProtection, 0u)));
    }

    [Test]
    public void APushPastTheStackSegmentsLimitIsAStackFaultAndChangesNothing()
    {
        // SDM Vol. 3A, 6.15 (interrupt 12): a stack access outside SS's limit is #SS(0). SS = 0x20: base 0x20000, limit 0xFFF.
        var m = MachineWithGdt();
        m.Execute(a => { LoadGdt(a); a.mov(ax, Small); a.mov(ss, ax); a.mov(esp, 0x1000); a.push(0x11223344); a.pop(ebx); });
        Assert.That((m.Read32(0x20FFC), m.Cpu[Gpr.Ebx]), Is.EqualTo((0x11223344u, 0x11223344u)), "the last dword below the limit is usable");

        var past = MachineWithGdt();
        CpuExit exit = RunExpectingFault(past, a => { LoadGdt(a); a.mov(ax, Small); a.mov(ss, ax); a.mov(esp, 0x1002); a.push(0x55); });
        Assert.That((exit.Reason, exit.Vector, exit.ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.StackFault, 0u)));
        Assert.That(past.Cpu[Gpr.Esp], Is.EqualTo(0x1002u), "ESP is not moved by the faulting push");
        Assert.That(past.Read32(0x20FFE), Is.Zero);
    }

    [Test]
    public void AnExpandDownStackFaultsWhenItGrowsToItsLimit()
    {
        // SS = 0x28: expand-down, limit 0xFFF, B=1: valid offsets are 0x1000-0xFFFFFFFF.
        var m = MachineWithGdt();
        m.Execute(a => { LoadGdt(a); a.mov(ax, ExpandDown); a.mov(ss, ax); a.mov(esp, 0x1004); a.push(0x66); });
        Assert.That(m.Read32(0x21000), Is.EqualTo(0x66u));

        var below = MachineWithGdt();
        CpuExit exit = RunExpectingFault(below, a => { LoadGdt(a); a.mov(ax, ExpandDown); a.mov(ss, ax); a.mov(esp, 0x1002); a.push(0x66); });
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((ExceptionVector.StackFault, 0u)));
        Assert.That(below.Cpu[Gpr.Esp], Is.EqualTo(0x1002u));
    }

    [Test]
    public void ANullSelectorLoadsIntoDsButFaultsWhenUsed()
    {
        var m = MachineWithGdt();
        CpuExit exit = RunExpectingFault(m, a => { LoadGdt(a); a.xor(eax, eax); a.mov(fs, ax); a.mov(ebx, 9); a.mov(ebx, __dword_ptr.fs[0]); });
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((ExceptionVector.GeneralProtection, 0u)));
        Assert.That((m.Cpu.Fs, m.Cpu[Gpr.Ebx]), Is.EqualTo(((ushort)0, 9u)));
    }

    // SDM Vol. 2B, MOV (Operation): the checks of a data-segment or stack-segment load, in order.
    [TestCase("ds", NotPresent, ExceptionVector.SegmentNotPresent, NotPresent)]
    [TestCase("ss", NotPresent, ExceptionVector.StackFault, NotPresent)]
    [TestCase("ds", ExecuteOnly, ExceptionVector.GeneralProtection, ExecuteOnly)]
    [TestCase("ss", ReadOnly, ExceptionVector.GeneralProtection, ReadOnly)]
    [TestCase("ss", ReadableCode, ExceptionVector.GeneralProtection, ReadableCode)]
    [TestCase("ss", (ushort)0, ExceptionVector.GeneralProtection, (ushort)0)]
    [TestCase("ss", Dpl3Data, ExceptionVector.GeneralProtection, Dpl3Data)]
    [TestCase("ds", (ushort)0x78, ExceptionVector.GeneralProtection, (ushort)0x78)]
    [TestCase("ds", (ushort)0x7B, ExceptionVector.GeneralProtection, (ushort)0x78)]
    [TestCase("es", Tss, ExceptionVector.GeneralProtection, Tss)]
    [TestCase("ds", (ushort)(Data | 3), ExceptionVector.GeneralProtection, Data)]
    public void RefusedSegmentLoadsFaultWithTheSelectorAndLeaveTheRegister(string register, ushort selector, byte vector, ushort errorCode)
    {
        var m = MachineWithGdt();
        CpuExit exit = RunExpectingFault(m, a =>
        {
            LoadGdt(a);
            a.mov(ax, selector);
            if (register == "ds") a.mov(ds, ax); else if (register == "es") a.mov(es, ax); else a.mov(ss, ax);
        });
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((vector, (uint)errorCode)));
        Assert.That((m.Cpu.Ds, m.Cpu.Es, m.Cpu.Ss), Is.EqualTo(((ushort)0x10, (ushort)0x10, (ushort)0x10)));
    }

    [Test]
    public void ReadableCodeLoadsIntoADataSegmentRegister()
    {
        var m = MachineWithGdt();
        m.Execute(a => { LoadGdt(a); a.mov(ax, ReadableCode); a.mov(fs, ax); a.mov(ebx, __dword_ptr.fs[TestMachine.CodeBase]); });
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(m.Read32(TestMachine.CodeBase)));
    }

    [Test]
    public void AFarJumpLoadsCsFromTheGdtAndAFarCallReturnsThroughRetf()
    {
        var m = MachineWithGdt();
        m.Load(a =>
        {
            a.mov(ebx, __dword_ptr[esp]);   // the pushed EIP
            a.mov(ecx, __dword_ptr[esp + 4]); // the pushed CS
            a.retf(4);
        }, 0x6000);
        m.Load(a =>
        {
            LoadGdt(a);
            a.push(0x1234);                  // the argument RETF 4 drops
            a.call(ReadableCode, 0x6000);
            a.mov(esi, esp);
            a.jmp(Code, TestMachine.CodeBase + 0x40);
        });
        m.Load(a => a.hlt(), TestMachine.CodeBase + 0x40);
        m.Cpu.Eip = TestMachine.CodeBase;
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo((uint)Code), "CALL far pushes the old CS");
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(TestMachine.StackTop), "RETF 4 popped EIP, CS and the argument");
        Assert.That(m.Cpu.Cs, Is.EqualTo(Code));
    }

    [TestCase(Data, ExceptionVector.GeneralProtection, Data, Description = "a data segment")]
    [TestCase(NotPresent, ExceptionVector.GeneralProtection, NotPresent, Description = "not code: the type is checked before P")]
    [TestCase((ushort)0, ExceptionVector.GeneralProtection, (ushort)0, Description = "null")]
    public void AFarJumpToSomethingOtherThanCodeFaults(ushort selector, byte vector, ushort errorCode)
    {
        var m = MachineWithGdt();
        CpuExit exit = RunExpectingFault(m, a => { LoadGdt(a); a.jmp(selector, 0x5000); });
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((vector, (uint)errorCode)));
        Assert.That(m.Cpu.Cs, Is.EqualTo(0x08));
    }

    [Test]
    public void ACodeSegmentsBaseMovesInstructionFetchAndEipIsTheOffset()
    {
        var m = MachineWithGdt();
        // At linear 0x10100 (offset 0x100 in the based code segment): call next; next: pop eax; hlt.
        m.Load(a => { Label next = a.CreateLabel(); a.call(next); a.Label(ref next); a.pop(eax); a.hlt(); }, BasedCodeBase + 0x100);
        m.Load(a => { LoadGdt(a); a.jmp(BasedCode, 0x100); });
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x105u), "CALL pushed the offset, not the linear address");
        Assert.That(m.Cpu.Eip, Is.EqualTo(0x107u));
    }

    [Test]
    public void AFarCallThroughACallGateGoesToTheGatesTarget()
    {
        var m = MachineWithGdt();
        SetCallGate(m, 0x6000, Code);
        m.Load(a => { a.mov(edx, 0x6A7E); a.retf(); }, 0x6000);
        m.Execute(a => { LoadGdt(a); a.call(Gate, 0xDEAD); a.mov(ecx, 1); });
        Assert.That((m.Cpu[Gpr.Edx], m.Cpu[Gpr.Ecx]), Is.EqualTo((0x6A7Eu, 1u)), "the pointer's offset is ignored; RETF comes back");
    }

    [Test]
    public void LtrLoadsTheTaskRegisterAndMarksTheTssBusy()
    {
        var m = MachineWithGdt();
        m.Execute(a => { LoadGdt(a); a.mov(ax, Tss); a.ltr(ax); a.str(ebx); });
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo((uint)Tss));
        Assert.That(m.Read8(Gdt + Tss + 5) & 0xF, Is.EqualTo(0xB), "busy 32-bit TSS");
        Assert.That(m.Cpu.TaskRegister.Base, Is.EqualTo(TssBase));

        var again = MachineWithGdt();
        CpuExit exit = RunExpectingFault(again, a => { LoadGdt(a); a.mov(ax, Tss); a.ltr(ax); a.ltr(ax); });
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((ExceptionVector.GeneralProtection, (uint)Tss)), "a busy TSS cannot be loaded");
    }

    [Test]
    public void LldtMakesLdtSelectorsUsable()
    {
        var m = MachineWithGdt();
        m.Write32(BasedBase + 4, 0x4D4D);
        m.Execute(a => { LoadGdt(a); a.mov(ax, Ldt); a.lldt(ax); a.mov(ax, 0x0C); a.mov(fs, ax); a.mov(ebx, __dword_ptr.fs[4]); a.sldt(ecx); });
        Assert.That((m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx]), Is.EqualTo((0x4D4Du, (uint)Ldt)));
    }

    [Test]
    public void LarLslVerrVerwReportWhatTheDescriptorAllows()
    {
        var m = MachineWithGdt();
        m.Execute(a =>
        {
            LoadGdt(a);
            a.mov(ecx, Based); a.lar(eax, ecx); a.pushfd(); a.pop(__dword_ptr[TestMachine.DataBase]);
            a.lsl(ebx, ecx);
            a.mov(ecx, 0x78); a.lsl(edx, ecx); a.pushfd(); a.pop(__dword_ptr[TestMachine.DataBase + 4]);   // outside the GDT
            a.mov(ecx, ExecuteOnly); a.verr(cx); a.pushfd(); a.pop(__dword_ptr[TestMachine.DataBase + 8]);
            a.mov(ecx, ReadOnly); a.verw(cx); a.pushfd(); a.pop(__dword_ptr[TestMachine.DataBase + 12]);
            a.mov(ecx, Data); a.verw(cx); a.pushfd(); a.pop(__dword_ptr[TestMachine.DataBase + 16]);
        });
        const uint zf = 0x40;
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x0040_9300u), "LAR: access rights of the (now accessed) descriptor");
            Assert.That(m.Read32(TestMachine.DataBase) & zf, Is.EqualTo(zf));
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0xFFFFu), "LSL: the byte-granular limit");
            Assert.That(m.Read32(TestMachine.DataBase + 4) & zf, Is.Zero, "outside the table: ZF=0, no fault");
            Assert.That(m.Read32(TestMachine.DataBase + 8) & zf, Is.Zero, "execute-only code is not readable");
            Assert.That(m.Read32(TestMachine.DataBase + 12) & zf, Is.Zero, "read-only data is not writable");
            Assert.That(m.Read32(TestMachine.DataBase + 16) & zf, Is.EqualTo(zf));
        });
    }

    [Test]
    public void ArplRaisesTheRequestedPrivilegeLevel()
    {
        var m = MachineWithGdt();
        m.Execute(a => { a.mov(eax, 0x10); a.mov(ecx, 0x3); a.arpl(ax, cx); a.setz(bl); a.arpl(ax, cx); a.setz(bh); });
        Assert.That((m.Cpu[Gpr.Eax] & 0xFFFF, m.Cpu[Gpr.Ebx] & 0xFFFF), Is.EqualTo((0x13u, 0x0001u)));
    }

    [Test]
    public void SmswLmswAndCltsWorkOnTheLowBitsOfCr0()
    {
        var m = MachineWithGdt();
        m.Execute(a =>
        {
            a.mov(eax, 0xE);
            a.lmsw(ax);        // MP, EM, TS; PE stays
            a.smsw(ebx);
            a.clts();
            a.smsw(ecx);
            a.xor(eax, eax);
            a.lmsw(ax);        // cannot clear PE
            a.mov(edx, cr0);
        });
        Assert.That((m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Edx]), Is.EqualTo((0x1Fu, 0x17u, 0x11u)));
    }

    [Test]
    public void InterruptDeliveryAndIretLoadCsThroughTheGdt()
    {
        var m = MachineWithGdt();
        m.WriteBytes(IdtDescriptor, [0xFF, 0x07, .. BitConverter.GetBytes(Idt)]);
        // Vector 0x40: a trap gate to ReadableCode:0x6000.
        m.Write32(Idt + 0x40 * 8, 0x6000 | ((uint)ReadableCode << 16));
        m.Write32(Idt + 0x40 * 8 + 4, 0x8F00);
        m.Load(a => { a.mov(ebx, cs); a.iretd(); }, 0x6000);
        m.Execute(a => { LoadGdt(a); a.lidt(__[IdtDescriptor]); a.@int(0x40); a.mov(ecx, cs); });
        Assert.That((m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx]), Is.EqualTo(((uint)ReadableCode, (uint)Code)));
    }

    [Test]
    public void SavedStateKeepsTheHiddenCachesEvenIfTheGdtChanges()
    {
        var m = MachineWithGdt();
        m.Write32(BasedBase + 8, 0x5A5A);
        m.Load(a => { LoadGdt(a); a.mov(ax, Based); a.mov(gs, ax); a.hlt(); a.mov(ebx, __dword_ptr.gs[8]); a.hlt(); });
        m.RunToHalt();
        CpuState saved = m.Cpu.SaveState();
        m.WriteBytes(Gdt + Based, new byte[8]); // the descriptor is gone, but the loaded cache stays (SDM 3.4.3)

        var copy = new TestMachine();
        m.Memory.Bytes.Slice(0, TestMachine.Pages * 4096).CopyTo(copy.Memory.Bytes);
        copy.Cpu.RestoreState(saved);
        copy.RunToHalt();
        Assert.That(copy.Cpu[Gpr.Ebx], Is.EqualTo(0x5A5Au));
        Assert.That(copy.Cpu.SaveState(), Is.EqualTo(m.Cpu.SaveState() with { Ebx = 0x5A5A, Eip = copy.Cpu.Eip, InstructionsRetired = copy.Cpu.InstructionsRetired }));
    }
}
