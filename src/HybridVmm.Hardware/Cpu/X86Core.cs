using System.Runtime.CompilerServices;
using HybridVmm.Hardware.Memory;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// One x86 logical processor executing protected-mode code (32-bit, and 16-bit code segments) and real-mode code,
/// decoded by Iced. With CR0.PG set, the guest's page tables translate a linear address to a
/// guest-physical one (System/X86Core.Paging.cs); every guest-physical access then goes through the
/// <see cref="SecondLevelPageTable"/>.
/// </summary>
/// <remarks>
/// The core is split over partial files, one folder per seam (Cpu/README.md): the architectural state in
/// <see cref="CpuContext"/> (State/), the decode cache (Decode/), the interpreter (Interp/), memory access,
/// segmentation and interrupts (System/) and exits with their completion (Exits/). Flags are computed eagerly into
/// <see cref="CpuContext.Eflags"/>. An instruction that touches memory the second-level table refuses is rolled back
/// from a register snapshot taken at its start, so a guest fault never leaves partial architectural state.
/// </remarks>
public sealed unsafe partial class X86Core
{
    // The architectural state (State/CpuContext.cs). A field, not a property: handlers reach it as _ctx.Eax etc.
    // and a future MMU, FPU or translator takes it by ref.
    private CpuContext _ctx;

    // Snapshot of the register file at the start of the current instruction, for rollback.
    private GprFile _savedGpr;
    private uint _savedEip;
    private uint _savedFlags;

    public X86Core(HostPhysicalMemory memory, SecondLevelPageTable slat) : this(memory, slat, null)
    {
    }

    /// <param name="sibling">
    /// Another core of the same partition, whose decoded-code cache this one shares: a write by either to a page of
    /// code drops it for both, so code one processor patches is never run stale by another (cross-modifying code, SDM
    /// Vol. 3A, 9.1.3). The cores run one at a time, and each looks its code page up again when it starts to run.
    /// </param>
    public X86Core(HostPhysicalMemory memory, SecondLevelPageTable slat, X86Core? sibling)
    {
        Memory = memory;
        Slat = slat;
        _ram = memory.Base;
        _slatEntries = slat.RawEntries;
        _codePages = sibling?._codePages ?? new CodePage?[slat.GuestPageCount];
        _jitCache = sibling?._jitCache ?? new JitCache();
        _codeReader = new GuestCodeReader(this);
        _decoder = Decoder.Create(32, _codeReader);
        _decoder16 = Decoder.Create(16, _codeReader);
        _ctx.Eflags = (uint)EFlags.Reserved1;
        ResetDebugRegisters();
        _ctx.Fpu.Initialize();
    }

    public HostPhysicalMemory Memory { get; }
    public SecondLevelPageTable Slat { get; }

    public uint Eip { get => _ctx.Eip; set => _ctx.Eip = value; }

    /// <summary>EFLAGS fully materialised (bit 1 always set).</summary>
    public uint Eflags
    {
        get => _ctx.Eflags;
        set
        {
            _ctx.Eflags = (value & EFlagsWritableMask) | (uint)EFlags.Reserved1;
            FlagsChanged();
        }
    }

    // Setting a control register from outside (reset, restore, tests) applies it to the paging state and drops the TLB.
    public uint Cr0 { get => _ctx.Cr0; set => SetControlRegisters(value, _ctx.Cr3, _ctx.Cr4); }
    public uint Cr2 { get => _ctx.Cr2; set => _ctx.Cr2 = value; }
    public uint Cr3 { get => _ctx.Cr3; set => SetControlRegisters(_ctx.Cr0, value, _ctx.Cr4); }
    public uint Cr4 { get => _ctx.Cr4; set => SetControlRegisters(_ctx.Cr0, _ctx.Cr3, value); }

    // Segment selectors. Setting one loads its hidden descriptor cache (flat for now, System/X86Core.Segmentation.cs).
    public ushort Cs { get => _ctx.Cs.Selector; set => LoadSegment(Sreg.Cs, value); }
    public ushort Ds { get => _ctx.Ds.Selector; set => LoadSegment(Sreg.Ds, value); }
    public ushort Es { get => _ctx.Es.Selector; set => LoadSegment(Sreg.Es, value); }
    public ushort Fs { get => _ctx.Fs.Selector; set => LoadSegment(Sreg.Fs, value); }
    public ushort Gs { get => _ctx.Gs.Selector; set => LoadSegment(Sreg.Gs, value); }
    public ushort Ss { get => _ctx.Ss.Selector; set => LoadSegment(Sreg.Ss, value); }

    /// <summary>A segment register with its hidden descriptor cache (selector, base, limit, attributes).</summary>
    public SegmentRegister GetSegment(Sreg segment) => _ctx.Segments[(int)segment];

    /// <summary>GDTR as loaded by LGDT (stored only; flat segments ignore descriptors for now).</summary>
    public DescriptorTableRegister Gdtr { get => _ctx.Gdtr; set => _ctx.Gdtr = value; }
    /// <summary>IDTR as loaded by LIDT; a non-empty table turns on exception and interrupt delivery (System/X86Core.Interrupts.cs).</summary>
    public DescriptorTableRegister Idtr { get => _ctx.Idtr; set => _ctx.Idtr = value; }

    /// <summary>
    /// The guest's own offset of the time-stamp counter (like VMX TSC offsetting): what a write to IA32_TIME_STAMP_COUNTER
    /// sets, and what a snapshot keeps. RDTSC returns <see cref="TimeStampCounter"/>.
    /// </summary>
    public ulong TscOffset { get; set; }

    /// <summary>
    /// Set by whoever runs the core before each run: the clock the TSC follows minus <see cref="InstructionsRetired"/>.
    /// The kernel makes it the partition's virtual time, so that the TSC counts at 1 GHz of the same time the PIT, the
    /// PM timer and the local APIC's timer run on (retired instructions, exit costs, idle); 0 on a bare core, whose
    /// TSC counts instructions.
    /// </summary>
    public long TscTimeBias { get; set; }

    /// <summary>The value RDTSC returns: <see cref="InstructionsRetired"/> + <see cref="TscTimeBias"/> + <see cref="TscOffset"/>.</summary>
    public ulong TimeStampCounter => (ulong)(InstructionsRetired + TscTimeBias) + TscOffset;

    public uint this[Gpr r]
    {
        get => _ctx.Gpr[(int)r];
        set => _ctx.Gpr[(int)r] = value;
    }

    /// <summary>Instructions retired since reset (virtual time for this core; RDTSC derives from it).</summary>
    public long InstructionsRetired { get; private set; }

    /// <summary>Sets the flat 4 GiB protected-mode state Multiboot requires (CS/DS/ES/FS/GS/SS flat, CR0.PE=1, IF=0).</summary>
    public void ResetToFlatProtectedMode(uint eip)
    {
        _ctx.Gpr = default;
        _ctx.Eip = eip;
        _ctx.Eflags = (uint)EFlags.Reserved1;
        Cr0 = (uint)(Cr0Flags.PE | Cr0Flags.ET); // protected mode, paging off; ET is hardwired to 1 (SDM Vol. 3A, 2.5)
        Cr2 = Cr3 = Cr4 = 0;
        ResetDebugRegisters();
        Cs = 0x08;
        Ds = Es = Fs = Gs = Ss = 0x10;
        Gdtr = default;
        Idtr = default;
        _pending = default;
        DiscardReplay();
        ResetInterruptState();
        _ctx.Fpu.Initialize();
    }

    /// <summary>
    /// The state INIT leaves and a start-up IPI completes (SDM Vol. 3A, 10.1.1 and 9.4.4): real mode, CR0 = 0x60000010
    /// (CD, NW, ET), EFLAGS 2, EDX the processor signature, every segment a real-mode one with selector 0 and limit
    /// 0xFFFF but CS = <paramref name="cs"/> (base cs × 16), EIP = <paramref name="ip"/>, GDTR and IDTR base 0 limit
    /// 0xFFFF, the x87 initialized, no pending event. An application processor starts at vector × 0x1000 with
    /// cs = vector × 0x100, ip = 0.
    /// </summary>
    public void ResetToRealMode(ushort cs, ushort ip, uint signature)
    {
        _ctx.Gpr = default;
        _ctx.Gpr[(int)Gpr.Edx] = signature;
        _ctx.Eip = ip;
        _ctx.Eflags = (uint)EFlags.Reserved1;
        SetControlRegisters((uint)(Cr0Flags.CD | Cr0Flags.NW | Cr0Flags.ET), 0, 0);
        Cr2 = 0;
        ResetDebugRegisters();
        DebugControlChanged();
        for (int i = 0; i < 6; i++)
        {
            var segment = (Sreg)i;
            ushort selector = segment == Sreg.Cs ? cs : (ushort)0;
            SetSegmentCache(segment, new SegmentRegister(selector, (uint)selector << 4, 0xFFFF,
                (ushort)(AttrPresent | AttrSystem | AttrAccessed | (segment == Sreg.Cs ? AttrCode | AttrReadable : AttrWritable))));
        }
        _ctx.Ldtr = _ctx.Tr = default;
        Gdtr = new DescriptorTableRegister(0, 0xFFFF);
        Idtr = new DescriptorTableRegister(0, 0xFFFF);
        _pending = default;
        DiscardReplay();
        ResetInterruptState();
        _ctx.Fpu.Initialize();
        CodeMappingChanged();
    }

    /// <summary>Software interrupts enter their handler with TF cleared and are not single-stepped (SDM Vol. 3A 17.3.1.4).</summary>
    private static bool IsSingleStepTrap(Mnemonic mnemonic, uint flagsBefore) =>
        mnemonic is not (Mnemonic.Int or Mnemonic.Int3 or Mnemonic.Int1)
        && !(mnemonic == Mnemonic.Into && (flagsBefore & (uint)EFlags.OF) != 0);

    /// <summary>Runs until an exit or until <paramref name="maxInstructions"/> have retired.</summary>
    public CpuExit Run(long maxInstructions)
    {
        long retired = 0;
        _interceptCompletable = false;
        CodePage? page = null;
        uint pageBase = 0;
        while (retired < maxInstructions)
        {
            // Pending interrupts, queued exceptions, the STI shadow and a changed code mapping (System/X86Core.Interrupts.cs).
            if (_eventCheck)
            {
                if (_codeMappingChanged)
                {
                    _codeMappingChanged = false;
                    page = null; // the TLB changed: translate EIP's page again
                }
                if (!ServiceEvents())
                {
                    return _exit;
                }
                if (_instructionBreakpoints != 0 || (_ctx.Eflags & RfFlag) != 0)
                {
                    // An instruction breakpoint is a fault on fetching the next instruction, after any interrupt (SDM Vol. 3A, 6.9).
                    if (!CheckInstructionBreakpoints(out bool delivered))
                    {
                        return _exit;
                    }
                    if (delivered)
                    {
                        page = null;
                        retired++; // counted against the budget, as a fetch fault is: a breakpoint on its own handler cannot spin here
                        continue; // the handler's first instruction is checked in its turn
                    }
                }
            }

            uint eip = _ctx.Eip;
            uint linear = eip + _csBase;
            if (page is null || (linear & ~PageOffsetMask) != pageBase)
            {
                pageBase = linear & ~PageOffsetMask;
                page = GetCodePage(linear);
                if (page is null)
                {
                    if (!FetchFaulted())
                    {
                        return _exit;
                    }
                    retired++; // not retired, but counted against this call's budget: a handler that faults on fetch again cannot spin here
                    continue;
                }
            }

            int index = page.Index[linear & PageOffsetMask];
            bool fetchFault = false;
            ref Instruction ins = ref index > 0
                ? ref page.Instructions[index - 1]
                : ref DecodeAt(page, eip, out fetchFault);
            if (fetchFault)
            {
                if (!FetchFaulted())
                {
                    return _exit;
                }
                retired++; // as above
                page = null;
                continue;
            }

            // A block may start at any cached instruction, including one just decoded (index 0 and not straddling).
            if (_jit && (index > 0 || (index = page.Index[linear & PageOffsetMask]) > 0))
            {
                int ran = TryRunBlock(page, index - 1, maxInstructions - retired);
                if (ran > 0)
                {
                    retired += ran; // InstructionsRetired counted them already
                    continue; // EIP is on the next instruction; page is still the page it was: blocks never write code
                }
            }

            _savedGpr = _ctx.Gpr;
            _savedEip = eip;
            _savedFlags = _ctx.Eflags;
            _ctx.Eip = ins.NextIP32;

            if (Execute(ref ins))
            {
                InstructionsRetired++;
                retired++;
                if ((_savedFlags & (uint)EFlags.TF) != 0 && IsSingleStepTrap(ins.Mnemonic, _savedFlags))
                {
                    // SDM Vol. 3A 17.3.1.4: TF set when the instruction began raises a #DB trap after it,
                    // with EIP on the next instruction, and DR6.BS set. The handler entry clears TF.
                    _ctx.Dr6 |= Dr6SingleStep;
                    if (!DeliverException(ExceptionVector.Debug, 0))
                    {
                        return _exit;
                    }

                    page = null;
                }

                continue;
            }

            // The instruction stopped: memory intercept, exception, or an exit that completes later.
            CpuExit exit = _exit;
            _replayCursor = 0; // a re-execution replays completed MMIO accesses from the first
            if (exit.Reason is CpuExitReason.MemoryIntercept or CpuExitReason.Exception)
            {
                _faulted = false;
                if (_keepProgress)
                {
                    _ctx.Eip = _savedEip; // completed REP iterations stay; the instruction resumes
                }
                else
                {
                    Rollback();
                }
                _keepProgress = false;
                if (exit.Reason == CpuExitReason.Exception)
                {
                    DiscardReplay(); // the instruction will not complete: its MMIO accesses are not replayed
                }
                if (exit.Reason == CpuExitReason.Exception && IdtLoaded)
                {
                    // Delivered through the IDT: the handler runs next (System/X86Core.Interrupts.cs).
                    if (!DeliverException(exit.Vector, exit.ErrorCode))
                    {
                        return _exit;
                    }

                    page = null;
                    continue;
                }
            }
            else if (exit.Reason == CpuExitReason.Halt)
            {
                InstructionsRetired++;
            }
            else if (exit.Reason == CpuExitReason.ControlRegisterWrite)
            {
                // The write retired before its exit: a single-step trap follows it as any instruction's would.
                InstructionsRetired++;
                if ((_savedFlags & (uint)EFlags.TF) != 0)
                {
                    _ctx.Dr6 |= Dr6SingleStep;
                    if (!DeliverException(ExceptionVector.Debug, 0))
                    {
                        return _exit;
                    }
                }
            }
            return exit;
        }

        return new CpuExit(CpuExitReason.BudgetExhausted);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Rollback()
    {
        _ctx.Gpr = _savedGpr;
        _ctx.Eip = _savedEip;
        _ctx.Eflags = _savedFlags;
        FlagsChanged();
    }
}
