namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The architectural state of one core, for snapshots and migration (the role of a saved VP context).
/// The decode cache is not state: it is rebuilt from memory. An IN/OUT/CPUID exit that was not completed
/// is not saved either; after a restore the instruction simply executes again and exits again.
/// </summary>
/// <remarks>
/// The interrupt state is part of it (SDM Vol. 3A, 6.8 and 6.9): the requested but undelivered external
/// vectors (the interrupt request register, a 256-bit set), the one-instruction STI (or MOV SS) shadow, an exception
/// the hypervisor injected that the core has not delivered yet, an interrupt-window request and an injected external
/// interrupt not yet delivered. There is no in-service register: without a
/// local APIC, "in service" is EFLAGS.IF = 0 inside the guest's interrupt gate, which EFLAGS already holds.
/// </remarks>
public record struct CpuState
{
    public uint Eax, Ecx, Edx, Ebx, Esp, Ebp, Esi, Edi;
    public uint Eip, Eflags;
    public uint Cr0, Cr2, Cr3, Cr4;
    /// <summary>DR0-DR3, DR6 and DR7. A state from before version 3 of the chunk has their reset values.</summary>
    public uint Dr0, Dr1, Dr2, Dr3, Dr6, Dr7;
    public ushort Cs, Ds, Es, Fs, Gs, Ss;
    /// <summary>
    /// The hidden descriptor caches of ES, CS, SS, DS, FS and GS, then LDTR and TR (SDM Vol. 3A, 3.4.3): a saved
    /// core resumes with the segments it had loaded, even if the guest has changed its descriptor tables since. Null
    /// in a state from before segmentation (snapshot chunk version 1): the selectors then load flat caches.
    /// </summary>
    public SegmentCaches? SegmentCaches;
    public DescriptorTableRegister Gdtr, Idtr;
    /// <summary>The x87 state; null in a state from before the FPU (chunk version 2 or older): it restores as after FNINIT.</summary>
    public FpuSavedState? Fpu;
    /// <summary>IA32_SYSENTER_CS, _ESP and _EIP; zero in a state from before version 4 of the chunk (their reset value).</summary>
    public uint SysenterCs, SysenterEsp, SysenterEip;
    /// <summary>IA32_TSC_AUX; zero in a state from before version 4 of the chunk.</summary>
    public uint TscAux;
    /// <summary>IA32_EFER; zero (its reset value) in a state from before version 5 of the chunk.</summary>
    public uint Efer;
    public ulong TscOffset;
    public long InstructionsRetired;

    /// <summary>Pending external vectors 0-63, 64-127, 128-191 and 192-255 (bit n of word w is vector 64w + n).</summary>
    public ulong InterruptRequest0, InterruptRequest1, InterruptRequest2, InterruptRequest3;

    /// <summary>The instruction after STI has not run yet: no interrupt is taken before it.</summary>
    public bool StiShadow;

    /// <summary>An injected exception (<see cref="X86Core.InjectException"/>) waits for the next instruction boundary.</summary>
    public bool ExceptionQueued;
    public byte QueuedVector;
    public uint QueuedErrorCode;

    /// <summary>The hypervisor asked for an interrupt-window exit that has not happened yet.</summary>
    public bool InterruptWindowRequested;

    /// <summary>An external interrupt injected at an interrupt window (<see cref="X86Core.InjectExternalInterrupt"/>) waits for the next boundary.</summary>
    public bool ExternalInterruptInjected;
    public byte InjectedVector;
}

/// <summary>The hidden descriptor caches of the six segment registers, LDTR and TR, for <see cref="CpuState"/>.</summary>
public readonly record struct SegmentCaches(
    SegmentRegister Es, SegmentRegister Cs, SegmentRegister Ss, SegmentRegister Ds, SegmentRegister Fs, SegmentRegister Gs,
    SegmentRegister Ldtr, SegmentRegister Tr)
{
    public IEnumerable<SegmentRegister> All => [Es, Cs, Ss, Ds, Fs, Gs, Ldtr, Tr];

    /// <summary>The flat caches the selectors of a state without caches load (the boot state before any GDT).</summary>
    public static SegmentCaches FlatFor(in CpuState c) => new(
        SegmentRegister.Flat(c.Es, code: false), SegmentRegister.Flat(c.Cs, code: true), SegmentRegister.Flat(c.Ss, code: false),
        SegmentRegister.Flat(c.Ds, code: false), SegmentRegister.Flat(c.Fs, code: false), SegmentRegister.Flat(c.Gs, code: false),
        default, default);
}

public sealed partial class X86Core
{
    public CpuState SaveState() => new()
    {
        Eax = _ctx.Eax, Ecx = _ctx.Ecx, Edx = _ctx.Edx, Ebx = _ctx.Ebx,
        Esp = _ctx.Esp, Ebp = _ctx.Ebp, Esi = _ctx.Esi, Edi = _ctx.Edi,
        Eip = _ctx.Eip, Eflags = _ctx.Eflags,
        Cr0 = Cr0, Cr2 = Cr2, Cr3 = Cr3, Cr4 = Cr4,
        Dr0 = _ctx.Dr0, Dr1 = _ctx.Dr1, Dr2 = _ctx.Dr2, Dr3 = _ctx.Dr3, Dr6 = _ctx.Dr6, Dr7 = _ctx.Dr7,
        Cs = Cs, Ds = Ds, Es = Es, Fs = Fs, Gs = Gs, Ss = Ss,
        SegmentCaches = new SegmentCaches(_ctx.Es, _ctx.Cs, _ctx.Ss, _ctx.Ds, _ctx.Fs, _ctx.Gs, _ctx.Ldtr, _ctx.Tr),
        Gdtr = Gdtr, Idtr = Idtr,
        Fpu = FpuSavedState.From(_ctx.Fpu),
        SysenterCs = _ctx.SysenterCs, SysenterEsp = _ctx.SysenterEsp, SysenterEip = _ctx.SysenterEip, TscAux = _ctx.TscAux,
        Efer = _ctx.Efer,
        TscOffset = TscOffset,
        InstructionsRetired = InstructionsRetired,
        InterruptRequest0 = _irr0, InterruptRequest1 = _irr1, InterruptRequest2 = _irr2, InterruptRequest3 = _irr3,
        StiShadow = _stiShadow,
        ExceptionQueued = _queuedException, QueuedVector = _queuedVector, QueuedErrorCode = _queuedErrorCode,
        InterruptWindowRequested = _windowRequested, ExternalInterruptInjected = _injectedPending, InjectedVector = _injectedVector,
    };

    public void RestoreState(in CpuState state)
    {
        _ctx.Eax = state.Eax; _ctx.Ecx = state.Ecx; _ctx.Edx = state.Edx; _ctx.Ebx = state.Ebx;
        _ctx.Esp = state.Esp; _ctx.Ebp = state.Ebp; _ctx.Esi = state.Esi; _ctx.Edi = state.Edi;
        _ctx.Eip = state.Eip;
        Eflags = state.Eflags;
        _ctx.Efer = state.Efer & EferNxe;
        Cr0 = state.Cr0; Cr2 = state.Cr2; Cr3 = state.Cr3; Cr4 = state.Cr4;
        (_ctx.Dr0, _ctx.Dr1, _ctx.Dr2, _ctx.Dr3) = (state.Dr0, state.Dr1, state.Dr2, state.Dr3);
        (_ctx.Dr6, _ctx.Dr7) = (DebugStatusOf(state.Dr6), DebugControlOf(state.Dr7));
        DebugControlChanged();
        if (state.SegmentCaches is { } caches)
        {
            SetSegmentCache(Sreg.Es, caches.Es);
            SetSegmentCache(Sreg.Cs, caches.Cs);
            SetSegmentCache(Sreg.Ss, caches.Ss);
            SetSegmentCache(Sreg.Ds, caches.Ds);
            SetSegmentCache(Sreg.Fs, caches.Fs);
            SetSegmentCache(Sreg.Gs, caches.Gs);
            _ctx.Ldtr = caches.Ldtr;
            _ctx.Tr = caches.Tr;
        }
        else
        {
            Cs = state.Cs; Ds = state.Ds; Es = state.Es; Fs = state.Fs; Gs = state.Gs; Ss = state.Ss;
            _ctx.Ldtr = _ctx.Tr = default;
        }
        Gdtr = state.Gdtr;
        Idtr = state.Idtr;
        (state.Fpu ?? FpuSavedState.Initial).ApplyTo(ref _ctx.Fpu);
        TscOffset = state.TscOffset;
        (_ctx.SysenterCs, _ctx.SysenterEsp, _ctx.SysenterEip, _ctx.TscAux) = (state.SysenterCs, state.SysenterEsp, state.SysenterEip, state.TscAux);
        InstructionsRetired = state.InstructionsRetired;
        _pending = default;
        DiscardReplay();
        _irr0 = state.InterruptRequest0; _irr1 = state.InterruptRequest1; _irr2 = state.InterruptRequest2; _irr3 = state.InterruptRequest3;
        _stiShadow = state.StiShadow;
        _queuedException = state.ExceptionQueued;
        _queuedVector = state.QueuedVector;
        _queuedErrorCode = state.QueuedErrorCode;
        _windowRequested = state.InterruptWindowRequested;
        _injectedPending = state.ExternalInterruptInjected;
        _injectedVector = state.InjectedVector;
        RecomputeEventCheck();
    }
}
