using HybridVmm.Hardware.SavedState;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The registers of one core as chunk "cpu.vp{n}": GPRs, EIP, EFLAGS, CR0-CR4, selectors, GDTR/IDTR, the TSC
/// offset and the retired-instruction count; from version 2 the segment descriptor caches, LDTR and TR; from version 3
/// the debug registers DR0-DR3, DR6 and DR7, then the x87 state (control, status, tag, opcode, pointers, R0-R7); from
/// version 4 IA32_SYSENTER_CS, _ESP and _EIP and IA32_TSC_AUX; from version 5 IA32_EFER. The interrupt state of the same <see cref="CpuState"/> is its
/// own chunk (<see cref="InterruptStateCodec"/>), so the two can change apart. A new register means a new
/// version here.
/// </summary>
public sealed class CpuStateCodec : StateCodec<CpuState>
{
    public static readonly CpuStateCodec Instance = new();

    public override string StateName => "CPU register";

    public override int Version => 5;

    /// <summary>
    /// Versions 1 (before segmentation: flat caches), 2 (before the debug registers and the FPU: they read as at reset,
    /// the FPU as after FNINIT), 3 (before the SYSENTER MSRs and TSC_AUX: they read as zero) and 4 (before IA32_EFER:
    /// zero) are read too.
    /// </summary>
    public override bool CanRead(int version) => version is >= 1 and <= 5;

    public static string Tag(int vpIndex) => $"cpu.vp{vpIndex}";

    public override void Write(SavedStateWriter w, CpuState c)
    {
        foreach (uint v in (ReadOnlySpan<uint>)[c.Eax, c.Ecx, c.Edx, c.Ebx, c.Esp, c.Ebp, c.Esi, c.Edi, c.Eip, c.Eflags, c.Cr0, c.Cr2, c.Cr3, c.Cr4])
        {
            w.WriteUInt32(v);
        }

        foreach (ushort v in (ReadOnlySpan<ushort>)[c.Cs, c.Ds, c.Es, c.Fs, c.Gs, c.Ss])
        {
            w.WriteUInt16(v);
        }

        w.WriteUInt32(c.Gdtr.Base);
        w.WriteUInt16(c.Gdtr.Limit);
        w.WriteUInt32(c.Idtr.Base);
        w.WriteUInt16(c.Idtr.Limit);
        w.WriteUInt64(c.TscOffset);
        w.WriteInt64(c.InstructionsRetired);
        // A state read from a version-1 chunk has no caches: write the flat ones its selectors load (RestoreState).
        SegmentCaches caches = c.SegmentCaches ?? SegmentCaches.FlatFor(c);
        foreach (SegmentRegister s in caches.All)
        {
            w.WriteUInt16(s.Selector);
            w.WriteUInt32(s.Base);
            w.WriteUInt32(s.Limit);
            w.WriteUInt16(s.Attributes);
        }

        foreach (uint v in (ReadOnlySpan<uint>)[c.Dr0, c.Dr1, c.Dr2, c.Dr3, c.Dr6, c.Dr7])
        {
            w.WriteUInt32(v);
        }

        FpuSavedState f = c.Fpu ?? FpuSavedState.Initial;
        foreach (ushort v in (ReadOnlySpan<ushort>)[f.Control, f.Status, f.Tag, f.Opcode, f.Cs, f.Ds])
        {
            w.WriteUInt16(v);
        }
        w.WriteUInt32(f.Ip);
        w.WriteUInt32(f.Dp);
        for (int i = 0; i < 8; i++)
        {
            Float80 r = f.Register(i);
            w.WriteUInt64(r.Significand);
            w.WriteUInt16(r.SignExponent);
        }

        w.WriteUInt32(c.SysenterCs);
        w.WriteUInt32(c.SysenterEsp);
        w.WriteUInt32(c.SysenterEip);
        w.WriteUInt32(c.TscAux);
        w.WriteUInt32(c.Efer);
    }

    /// <summary>The registers; the interrupt fields are left clear for <see cref="InterruptStateCodec.Apply"/>.</summary>
    public override CpuState Read(SavedStateReader r, int version)
    {
        var c = new CpuState
        {
            Eax = r.ReadUInt32(), Ecx = r.ReadUInt32(), Edx = r.ReadUInt32(), Ebx = r.ReadUInt32(),
            Esp = r.ReadUInt32(), Ebp = r.ReadUInt32(), Esi = r.ReadUInt32(), Edi = r.ReadUInt32(),
            Eip = r.ReadUInt32(), Eflags = r.ReadUInt32(),
            Cr0 = r.ReadUInt32(), Cr2 = r.ReadUInt32(), Cr3 = r.ReadUInt32(), Cr4 = r.ReadUInt32(),
            Cs = r.ReadUInt16(), Ds = r.ReadUInt16(), Es = r.ReadUInt16(), Fs = r.ReadUInt16(), Gs = r.ReadUInt16(), Ss = r.ReadUInt16(),
        };
        c.Gdtr = new DescriptorTableRegister(r.ReadUInt32(), r.ReadUInt16());
        c.Idtr = new DescriptorTableRegister(r.ReadUInt32(), r.ReadUInt16());
        c.TscOffset = r.ReadUInt64();
        c.InstructionsRetired = r.ReadInt64();
        if (version >= 2)
        {
            SegmentRegister Next() => new(r.ReadUInt16(), r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt16());
            c.SegmentCaches = new SegmentCaches(Next(), Next(), Next(), Next(), Next(), Next(), Next(), Next());
        }

        (c.Dr6, c.Dr7) = (X86Core.Dr6Reset, X86Core.Dr7Reset);
        if (version >= 3)
        {
            (c.Dr0, c.Dr1, c.Dr2, c.Dr3, c.Dr6, c.Dr7) = (r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt32());
            ushort control = r.ReadUInt16(), status = r.ReadUInt16(), tag = r.ReadUInt16(), opcode = r.ReadUInt16(), cs = r.ReadUInt16(), ds = r.ReadUInt16();
            uint ip = r.ReadUInt32(), dp = r.ReadUInt32();
            Float80 Reg() => new(r.ReadUInt64(), r.ReadUInt16());
            c.Fpu = new FpuSavedState(control, status, tag, opcode, ip, cs, dp, ds, Reg(), Reg(), Reg(), Reg(), Reg(), Reg(), Reg(), Reg());
        }
        if (version >= 4)
        {
            (c.SysenterCs, c.SysenterEsp, c.SysenterEip, c.TscAux) = (r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt32());
        }
        if (version >= 5)
        {
            c.Efer = r.ReadUInt32();
        }
        return c;
    }
}

/// <summary>
/// The interrupt state of one core (SDM Vol. 3A, 6.8 and 6.9), the part of <see cref="CpuState"/> an interrupt
/// controller owns: the 256-bit interrupt request register, the STI shadow and an injected exception not yet
/// delivered.
/// </summary>
public readonly record struct CpuInterruptState(
    ulong InterruptRequest0,
    ulong InterruptRequest1,
    ulong InterruptRequest2,
    ulong InterruptRequest3,
    bool StiShadow,
    bool ExceptionQueued,
    byte QueuedVector,
    uint QueuedErrorCode,
    bool InterruptWindowRequested = false,
    bool ExternalInterruptInjected = false,
    byte InjectedVector = 0)
{
    public static CpuInterruptState Of(in CpuState c) => new(
        c.InterruptRequest0, c.InterruptRequest1, c.InterruptRequest2, c.InterruptRequest3, c.StiShadow, c.ExceptionQueued, c.QueuedVector, c.QueuedErrorCode,
        c.InterruptWindowRequested, c.ExternalInterruptInjected, c.InjectedVector);
}

/// <summary>
/// Chunk "interrupts.vp{n}": <see cref="CpuInterruptState"/>. Version 2 adds the interrupt-window request and the
/// injected external interrupt (two booleans and the vector) after version 1's fields; version 1 reads them as clear.
/// </summary>
public sealed class InterruptStateCodec : StateCodec<CpuInterruptState>
{
    public static readonly InterruptStateCodec Instance = new();

    public override string StateName => "interrupt";

    public override int Version => 2;

    public override bool CanRead(int version) => version is 1 or 2;

    public static string Tag(int vpIndex) => $"interrupts.vp{vpIndex}";

    /// <summary>Puts the interrupt state into the registers <see cref="CpuStateCodec"/> read.</summary>
    public static CpuState Apply(CpuState c, CpuInterruptState i) => c with
    {
        InterruptRequest0 = i.InterruptRequest0, InterruptRequest1 = i.InterruptRequest1,
        InterruptRequest2 = i.InterruptRequest2, InterruptRequest3 = i.InterruptRequest3,
        StiShadow = i.StiShadow, ExceptionQueued = i.ExceptionQueued, QueuedVector = i.QueuedVector, QueuedErrorCode = i.QueuedErrorCode,
        InterruptWindowRequested = i.InterruptWindowRequested, ExternalInterruptInjected = i.ExternalInterruptInjected, InjectedVector = i.InjectedVector,
    };

    public override void Write(SavedStateWriter w, CpuInterruptState i)
    {
        w.WriteUInt64(i.InterruptRequest0);
        w.WriteUInt64(i.InterruptRequest1);
        w.WriteUInt64(i.InterruptRequest2);
        w.WriteUInt64(i.InterruptRequest3);
        w.WriteBoolean(i.StiShadow);
        w.WriteBoolean(i.ExceptionQueued);
        w.WriteByte(i.QueuedVector);
        w.WriteUInt32(i.QueuedErrorCode);
        w.WriteBoolean(i.InterruptWindowRequested);
        w.WriteBoolean(i.ExternalInterruptInjected);
        w.WriteByte(i.InjectedVector);
    }

    public override CpuInterruptState Read(SavedStateReader r, int version)
    {
        var state = new CpuInterruptState(
            r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), r.ReadBoolean(), r.ReadBoolean(), r.ReadByte(), r.ReadUInt32());
        return version < 2 ? state : state with { InterruptWindowRequested = r.ReadBoolean(), ExternalInterruptInjected = r.ReadBoolean(), InjectedVector = r.ReadByte() };
    }
}
