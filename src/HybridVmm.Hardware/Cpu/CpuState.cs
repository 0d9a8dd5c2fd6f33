namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The architectural state of one core, for snapshots and migration (the role of a saved VP context).
/// The decode cache is not state: it is rebuilt from memory. An IN/OUT/CPUID exit that was not completed
/// is not saved either; after a restore the instruction simply executes again and exits again.
/// </summary>
public record struct CpuState
{
    public uint Eax, Ecx, Edx, Ebx, Esp, Ebp, Esi, Edi;
    public uint Eip, Eflags;
    public uint Cr0, Cr2, Cr3, Cr4;
    public ushort Cs, Ds, Es, Fs, Gs, Ss;
    public DescriptorTableRegister Gdtr, Idtr;
    public ulong TscOffset;
    public long InstructionsRetired;
}

public sealed partial class X86Core
{
    public CpuState SaveState() => new()
    {
        Eax = _gpr[0], Ecx = _gpr[1], Edx = _gpr[2], Ebx = _gpr[3],
        Esp = _gpr[4], Ebp = _gpr[5], Esi = _gpr[6], Edi = _gpr[7],
        Eip = _eip, Eflags = _flags,
        Cr0 = Cr0, Cr2 = Cr2, Cr3 = Cr3, Cr4 = Cr4,
        Cs = Cs, Ds = Ds, Es = Es, Fs = Fs, Gs = Gs, Ss = Ss,
        Gdtr = Gdtr, Idtr = Idtr,
        TscOffset = TscOffset,
        InstructionsRetired = InstructionsRetired,
    };

    public void RestoreState(in CpuState state)
    {
        _gpr[0] = state.Eax; _gpr[1] = state.Ecx; _gpr[2] = state.Edx; _gpr[3] = state.Ebx;
        _gpr[4] = state.Esp; _gpr[5] = state.Ebp; _gpr[6] = state.Esi; _gpr[7] = state.Edi;
        _eip = state.Eip;
        Eflags = state.Eflags;
        Cr0 = state.Cr0; Cr2 = state.Cr2; Cr3 = state.Cr3; Cr4 = state.Cr4;
        Cs = state.Cs; Ds = state.Ds; Es = state.Es; Fs = state.Fs; Gs = state.Gs; Ss = state.Ss;
        Gdtr = state.Gdtr;
        Idtr = state.Idtr;
        TscOffset = state.TscOffset;
        InstructionsRetired = state.InstructionsRetired;
        _pending = default;
    }
}
