namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The architectural state of one core, for snapshots and migration (the role of a saved VP context).
/// The decode cache is not state: it is rebuilt from memory. An IN/OUT/CPUID exit that was not completed
/// is not saved either; after a restore the instruction simply executes again and exits again.
/// </summary>
/// <remarks>
/// The interrupt state is part of it (SDM Vol. 3A, 6.8 and 6.9): the requested but undelivered external
/// vectors (the interrupt request register, a 256-bit set), the one-instruction STI shadow, and an exception
/// the hypervisor injected that the core has not delivered yet. There is no in-service register: without a
/// local APIC, "in service" is EFLAGS.IF = 0 inside the guest's interrupt gate, which EFLAGS already holds.
/// </remarks>
public record struct CpuState
{
    public uint Eax, Ecx, Edx, Ebx, Esp, Ebp, Esi, Edi;
    public uint Eip, Eflags;
    public uint Cr0, Cr2, Cr3, Cr4;
    public ushort Cs, Ds, Es, Fs, Gs, Ss;
    public DescriptorTableRegister Gdtr, Idtr;
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
}

public sealed partial class X86Core
{
    public CpuState SaveState() => new()
    {
        Eax = _ctx.Eax, Ecx = _ctx.Ecx, Edx = _ctx.Edx, Ebx = _ctx.Ebx,
        Esp = _ctx.Esp, Ebp = _ctx.Ebp, Esi = _ctx.Esi, Edi = _ctx.Edi,
        Eip = _ctx.Eip, Eflags = _ctx.Eflags,
        Cr0 = Cr0, Cr2 = Cr2, Cr3 = Cr3, Cr4 = Cr4,
        Cs = Cs, Ds = Ds, Es = Es, Fs = Fs, Gs = Gs, Ss = Ss,
        Gdtr = Gdtr, Idtr = Idtr,
        TscOffset = TscOffset,
        InstructionsRetired = InstructionsRetired,
        InterruptRequest0 = _irr0, InterruptRequest1 = _irr1, InterruptRequest2 = _irr2, InterruptRequest3 = _irr3,
        StiShadow = _stiShadow,
        ExceptionQueued = _queuedException, QueuedVector = _queuedVector, QueuedErrorCode = _queuedErrorCode,
    };

    public void RestoreState(in CpuState state)
    {
        _ctx.Eax = state.Eax; _ctx.Ecx = state.Ecx; _ctx.Edx = state.Edx; _ctx.Ebx = state.Ebx;
        _ctx.Esp = state.Esp; _ctx.Ebp = state.Ebp; _ctx.Esi = state.Esi; _ctx.Edi = state.Edi;
        _ctx.Eip = state.Eip;
        Eflags = state.Eflags;
        Cr0 = state.Cr0; Cr2 = state.Cr2; Cr3 = state.Cr3; Cr4 = state.Cr4;
        Cs = state.Cs; Ds = state.Ds; Es = state.Es; Fs = state.Fs; Gs = state.Gs; Ss = state.Ss;
        Gdtr = state.Gdtr;
        Idtr = state.Idtr;
        TscOffset = state.TscOffset;
        InstructionsRetired = state.InstructionsRetired;
        _pending = default;
        DiscardReplay();
        _irr0 = state.InterruptRequest0; _irr1 = state.InterruptRequest1; _irr2 = state.InterruptRequest2; _irr3 = state.InterruptRequest3;
        _stiShadow = state.StiShadow;
        _queuedException = state.ExceptionQueued;
        _queuedVector = state.QueuedVector;
        _queuedErrorCode = state.QueuedErrorCode;
        RecomputeEventCheck();
    }
}
