using System.Runtime.InteropServices;
using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.Memory;
using HybridVmm.Testing.Reference;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>The state one CPU ended a set-up or a test instruction in.</summary>
internal sealed class SystemOutcome
{
    public OutcomeKind Kind;
    public int Vector;
    /// <summary>The exception's error code (null: the reference could not report it).</summary>
    public uint? ErrorCode;
    public readonly uint[] Gprs = new uint[8];
    public uint Eip, Eflags;
    /// <summary>ES, CS, SS, DS, FS, GS selectors.</summary>
    public readonly ushort[] Selectors = new ushort[6];
    public uint Cr0, Cr2, Cr3, Cr4;
    /// <summary>GDTR base and limit, IDTR base and limit, LDTR selector, base and limit, TR selector, base and limit (<see cref="TableNames"/>).</summary>
    public readonly uint[] Tables = new uint[10];
    public static readonly string[] TableNames = ["gdtr.base", "gdtr.limit", "idtr.base", "idtr.limit", "ldtr", "ldtr.base", "ldtr.limit", "tr", "tr.base", "tr.limit"];

    public void CopyFrom(SystemOutcome o)
    {
        Kind = o.Kind; Vector = o.Vector; ErrorCode = o.ErrorCode;
        o.Gprs.CopyTo(Gprs, 0); o.Selectors.CopyTo(Selectors, 0); o.Tables.CopyTo(Tables, 0);
        Eip = o.Eip; Eflags = o.Eflags; Cr0 = o.Cr0; Cr2 = o.Cr2; Cr3 = o.Cr3; Cr4 = o.Cr4;
    }

    public static bool HasErrorCode(int vector) => vector is 8 or 10 or 11 or 12 or 13 or 14 or 17;

    public string Describe()
    {
        string head = Kind switch
        {
            OutcomeKind.Retired => "retired",
            OutcomeKind.Exception => $"{ExceptionVector.Mnemonic((byte)Vector)}" + (HasErrorCode(Vector) ? $"({(ErrorCode is uint e ? e.ToString("x") : "?")})" : ""),
            OutcomeKind.MemoryFault => $"memory fault (physical address outside RAM; {Vector})",
            _ => "skipped",
        };
        return $"{head} eip={Eip:x8} {Outcome.Registers(Gprs)} eflags={Eflags:x8} es={Selectors[0]:x4} cs={Selectors[1]:x4} ss={Selectors[2]:x4} " +
            $"ds={Selectors[3]:x4} fs={Selectors[4]:x4} gs={Selectors[5]:x4} cr0={Cr0:x8} cr2={Cr2:x8} cr3={Cr3:x8} cr4={Cr4:x8}";
    }

    /// <summary>GDTR, IDTR, LDTR and TR, for the reproducer of a case that compares them.</summary>
    public string DescribeTables() =>
        $"gdtr={Tables[0]:x8}:{Tables[1]:x4} idtr={Tables[2]:x8}:{Tables[3]:x4} ldtr={Tables[4]:x4}({Tables[5]:x8}:{Tables[6]:x}) tr={Tables[7]:x4}({Tables[8]:x8}:{Tables[9]:x})";
}

/// <summary>The core under test on its own 1 MiB (every page writable in the second-level table).</summary>
internal sealed class CoreSystemSide
{
    private readonly HostPhysicalMemory _memory;

    public CoreSystemSide()
    {
        const int pages = (int)(SystemLayout.MemorySize >> 12);
        _memory = new HostPhysicalMemory(pages);
        var slat = new SecondLevelPageTable(pages);
        for (uint page = 0; page < pages; page++) slat.Map(page, (int)page, writable: true);
        Cpu = new X86Core(_memory, slat);
        Bytes.Fill(0xF4);
    }

    public X86Core Cpu { get; }
    public Span<byte> Bytes => _memory.Bytes;

    public void Begin(SystemCase c)
    {
        c.Image.CopyTo(Bytes);
        Cpu.InvalidateCode(0, SystemLayout.ImageSize);
        for (int i = 0; i < c.Pages.Count; i++)
        {
            c.PageSlot(i).CopyTo(Bytes[(int)c.Pages[i]..]);
            Cpu.InvalidateCode(c.Pages[i], 0x1000);
        }
        Cpu.ResetToFlatProtectedMode(SystemLayout.Stub);
    }

    public void Run(int instructions, SystemOutcome o)
    {
        uint eip = Cpu.Eip;
        CpuExit exit = Cpu.Run(instructions);
        // Port I/O exits to the hypervisor; Unicorn without IN/OUT hooks reads 0 and drops writes (softmmu/ioport.c):
        // complete them so, element by element for a REP INS/OUTS, until the instruction retires or stops.
        for (int n = 0; n < 1_000 && exit.Reason is CpuExitReason.IoIn or CpuExitReason.IoOut; n++)
        {
            if (exit.Reason == CpuExitReason.IoIn) Cpu.CompleteIoIn(0); else Cpu.CompleteIoOut();
            exit = Cpu.Eip == eip ? Cpu.Run(1) : new CpuExit(CpuExitReason.BudgetExhausted);
        }
        o.Kind = exit.Reason switch
        {
            CpuExitReason.BudgetExhausted => OutcomeKind.Retired,
            CpuExitReason.Exception => OutcomeKind.Exception,
            CpuExitReason.MemoryIntercept => OutcomeKind.MemoryFault,
            _ => OutcomeKind.Skipped,
        };
        o.Vector = exit.Vector;
        o.ErrorCode = exit.ErrorCode;
        Capture(o);
    }

    public void SetRegisters(ReadOnlySpan<uint> gprs, uint eflags)
    {
        for (int i = 0; i < 8; i++) Cpu[(Gpr)i] = gprs[i];
        Cpu.Eflags = eflags;
    }

    private void Capture(SystemOutcome o)
    {
        for (int i = 0; i < 8; i++) o.Gprs[i] = Cpu[(Gpr)i];
        o.Eip = Cpu.Eip;
        o.Eflags = Cpu.Eflags;
        for (int i = 0; i < 6; i++) o.Selectors[i] = Cpu.GetSegment((Sreg)i).Selector;
        (o.Cr0, o.Cr2, o.Cr3, o.Cr4) = (Cpu.Cr0, Cpu.Cr2, Cpu.Cr3, Cpu.Cr4);
        (o.Tables[0], o.Tables[1], o.Tables[2], o.Tables[3]) = (Cpu.Gdtr.Base, Cpu.Gdtr.Limit, Cpu.Idtr.Base, Cpu.Idtr.Limit);
        (o.Tables[4], o.Tables[5], o.Tables[6]) = (Cpu.Ldtr.Selector, Cpu.Ldtr.Base, Cpu.Ldtr.Limit);
        (o.Tables[7], o.Tables[8], o.Tables[9]) = (Cpu.TaskRegister.Selector, Cpu.TaskRegister.Base, Cpu.TaskRegister.Limit);
    }
}

/// <summary>
/// Unicorn on its own 1 MiB, every page read/write/execute (the guest's page tables decide). Unicorn stops at the
/// first exception (its interrupt hook); the error code comes from the saved CPU context (<see cref="Unicorn.CalibrateErrorCode"/>).
/// </summary>
internal sealed unsafe class UnicornSystemSide : IDisposable
{
    private readonly byte* _memory;
    private Unicorn _unicorn;

    private UnicornSystemSide(byte* memory, Unicorn unicorn)
    {
        _memory = memory;
        _unicorn = unicorn;
    }

    public bool ErrorCodesAvailable { get; private set; }

    public static UnicornSystemSide? TryCreate()
    {
        byte* memory = (byte*)NativeMemory.AlignedAlloc(SystemLayout.MemorySize, 4096);
        new Span<byte>(memory, (int)SystemLayout.MemorySize).Fill(0xF4);
        Unicorn? unicorn = Open(memory);
        if (unicorn is null)
        {
            NativeMemory.AlignedFree(memory);
            return null;
        }
        var side = new UnicornSystemSide(memory, unicorn);
        side.Prepare();
        return side;
    }

    private static Unicorn? Open(byte* memory)
    {
        Unicorn? unicorn = Unicorn.TryCreate(memory, SystemLayout.MemorySize, _ => true, executeWritable: true);
        if (unicorn is null) return null;
        unicorn.StopByCountOnly();
        // Linear addresses above 1 MiB must fall in a mapped region too (Unicorn.MapRam); the guest's page tables
        // never map a physical address there, so this memory is never really accessed.
        if (!unicorn.MapRam(SystemLayout.MemorySize, 0x1_0000_0000 - SystemLayout.MemorySize))
        {
            unicorn.Dispose();
            return null;
        }
        return unicorn;
    }

    private void Prepare()
    {
        _unicorn.SaveResetState();
        ErrorCodesAvailable = _unicorn.CalibrateErrorCode(RaiseSelectorFault);
    }

    /// <summary>A fresh instance on the same memory (Unicorn 2.0.1 aborts after very many translated blocks).</summary>
    public void Renew()
    {
        _unicorn.Dispose();
        _unicorn = Open(_memory) ?? throw new InvalidOperationException(Unicorn.UnavailableReason);
        Prepare();
    }

    /// <summary>MOV DS with a selector beyond a 3-entry GDT: #GP(selector) (SDM Vol. 2B, MOV, protected-mode exceptions).</summary>
    private bool RaiseSelectorFault(uint code)
    {
        Begin(null);
        byte[] stub = GuestCodeFor(code);
        stub.CopyTo(Bytes[(int)SystemLayout.Stub..]);
        BitConverter.TryWriteBytes(Bytes[(int)SystemLayout.StubGdtr..], (ushort)0x17);
        BitConverter.TryWriteBytes(Bytes[((int)SystemLayout.StubGdtr + 2)..], SystemLayout.Gdt);
        _unicorn.InvalidateCode(SystemLayout.Stub, SystemLayout.Stub + 0x1000);
        _unicorn.Step(SystemLayout.Stub, 0xFFFFFFFF, 3);
        return _unicorn.LastInterrupt == 13;
    }

    private static byte[] GuestCodeFor(uint selector) => HybridVmm.Testing.GuestCode.Assemble(a =>
    {
        a.lgdt(Iced.Intel.AssemblerRegisters.__[SystemLayout.StubGdtr]);
        a.mov(Iced.Intel.AssemblerRegisters.eax, 0xABCD_0000 | selector);
        a.mov(Iced.Intel.AssemblerRegisters.ds, Iced.Intel.AssemblerRegisters.ax);
    }, SystemLayout.Stub);

    public Span<byte> Bytes => new(_memory, (int)SystemLayout.MemorySize);

    /// <summary>
    /// Back to the flat ring-0 start, then the case's memory. QEMU's TLB survives a context restore (and the register
    /// API does not flush it); the set-up's MOV CR0 that turns paging on flushes it before any translated access, and
    /// the identity mappings every case makes for the set-up page, the GDT and the LDT leave nothing stale before it.
    /// </summary>
    public void Begin(SystemCase? c)
    {
        _unicorn.ResetCpu();
        if (c is null) return;
        c.Image.CopyTo(Bytes);
        for (int i = 0; i < c.Pages.Count; i++) c.PageSlot(i).CopyTo(Bytes[(int)c.Pages[i]..]);
        // Paging is off here, so the addresses are physical: drop every translated block of the image and the pages.
        _unicorn.InvalidateCode(0, SystemLayout.ImageSize);
        foreach (uint page in c.Pages) _unicorn.InvalidateCode(page, page + 0x1000);
    }

    /// <summary>Runs <paramref name="instructions"/> from the current EIP (the set-up from <see cref="SystemLayout.Stub"/>).</summary>
    public void Run(uint eip, int instructions, SystemOutcome o)
    {
        int err = _unicorn.Step(eip, Until, instructions);
        o.ErrorCode = null;
        if (_unicorn.LastInterrupt >= 0)
        {
            o.Kind = OutcomeKind.Exception;
            o.Vector = _unicorn.LastInterrupt;
            if (SystemOutcome.HasErrorCode(o.Vector)) o.ErrorCode = _unicorn.LastErrorCode;
        }
        else if (err == Unicorn.ErrOk)
        {
            o.Kind = OutcomeKind.Retired;
            o.Vector = 0;
        }
        else if (err == Unicorn.ErrInsnInvalid)
        {
            o.Kind = OutcomeKind.Exception;
            o.Vector = 6;
        }
        else
        {
            o.Kind = OutcomeKind.MemoryFault;
            o.Vector = err;
        }
        Capture(o);
    }

    /// <summary>
    /// Executes one instruction. Unicorn counts every iteration of a REP string instruction as an instruction, so
    /// a REP instruction is stepped until it leaves its EIP or stops.
    /// </summary>
    public void Step(Iced.Intel.Instruction? ins, SystemOutcome o)
    {
        uint eip = Eip;
        Run(eip, 1, o);
        if (ins is not { } i || !(i.HasRepPrefix || i.HasRepePrefix || i.HasRepnePrefix)) return;
        for (int n = 0; n < 1_000 && o.Kind == OutcomeKind.Retired && o.Eip == eip; n++) Run(eip, 1, o);
    }

    public uint Eip => _unicorn.GetReg(Unicorn.RegEip);

    /// <summary>Ignored: runs stop by count (<see cref="Unicorn.StopByCountOnly"/>).</summary>
    private const uint Until = 0xFFFFFFFF;

    public void SetRegisters(ReadOnlySpan<uint> gprs, uint eflags) => _unicorn.SetState(gprs, eflags, Eip);

    private void Capture(SystemOutcome o)
    {
        _unicorn.GetState(o.Gprs, out o.Eflags, out o.Eip);
        for (int i = 0; i < 6; i++) o.Selectors[i] = (ushort)_unicorn.GetReg(Unicorn.SegmentIds[i]);
        o.Cr0 = _unicorn.GetReg(Unicorn.RegCr0);
        o.Cr2 = _unicorn.GetReg(Unicorn.RegCr2);
        o.Cr3 = _unicorn.GetReg(Unicorn.RegCr3);
        o.Cr4 = _unicorn.GetReg(Unicorn.RegCr4);
        int k = 0;
        foreach (int reg in (ReadOnlySpan<int>)[Unicorn.RegGdtr, Unicorn.RegIdtr, Unicorn.RegLdtr, Unicorn.RegTr])
        {
            (ushort selector, uint baseAddress, uint limit) = _unicorn.GetMmr(reg);
            if (reg is Unicorn.RegLdtr or Unicorn.RegTr) o.Tables[k++] = selector;
            o.Tables[k++] = baseAddress;
            o.Tables[k++] = limit;
        }
    }

    public void Dispose()
    {
        _unicorn.Dispose();
        NativeMemory.AlignedFree(_memory);
    }
}
