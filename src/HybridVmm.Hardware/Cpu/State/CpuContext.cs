using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The architectural state of one core (SDM Vol. 3A, 2.1 and 3.4): the general-purpose registers, EIP, EFLAGS,
/// the control registers, GDTR and IDTR, and the six segment registers with their hidden descriptor caches.
/// <see cref="X86Core"/> holds it as a field; the interpreter, and later the MMU, the FPU and a translator, take it
/// by <c>ref</c>. It is a plain struct so that copying it (or its GPR file) is a block copy.
/// </summary>
/// <remarks>
/// Registers have named accessors (<see cref="Eax"/> ... <see cref="Edi"/>) for code that means a particular
/// register, and <see cref="Gpr"/> keeps indexed access for register numbers decoded from ModRM/SIB.
/// The per-instruction rollback copies only <see cref="Gpr"/>, <see cref="Eip"/> and <see cref="Eflags"/>: no
/// instruction changes anything else before it can still fault.
/// </remarks>
internal struct CpuContext
{
    /// <summary>EAX..EDI in encoding order (SDM Vol. 2A, table 2-2), for ModRM-decoded register numbers.</summary>
    public GprFile Gpr;
    public uint Eip;
    /// <summary>EFLAGS fully materialised (bit 1 always set).</summary>
    public uint Eflags;
    public uint Cr0, Cr2, Cr3, Cr4;
    /// <summary>Debug registers DR0-DR3 (breakpoint addresses), DR6 (status) and DR7 (control), SDM Vol. 3B, 17.2.</summary>
    public uint Dr0, Dr1, Dr2, Dr3, Dr6, Dr7;
    public DescriptorTableRegister Gdtr, Idtr;
    /// <summary>ES, CS, SS, DS, FS, GS in Sreg encoding order (the order of <see cref="Sreg"/> and Iced's Register.ES..GS).</summary>
    public SegmentFile Segments;
    /// <summary>The LDT register and the task register, with their caches (SDM Vol. 3A, 2.4.2 and 2.4.4).</summary>
    public SegmentRegister Ldtr, Tr;
    /// <summary>The x87 FPU (Fpu/FpuState.cs).</summary>
    public FpuState Fpu;
    /// <summary>IA32_SYSENTER_CS, _ESP and _EIP (MSRs 0x174-0x176): where SYSENTER enters ring 0, and SYSEXIT's selectors.</summary>
    public uint SysenterCs, SysenterEsp, SysenterEip;
    /// <summary>IA32_TSC_AUX (0xC0000103), read by RDTSCP.</summary>
    public uint TscAux;
    /// <summary>IA32_EFER (0xC0000080): only NXE (bit 11), execute-disable in PAE paging.</summary>
    public uint Efer;

    [UnscopedRef] public ref uint Eax { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Gpr[0]; }
    [UnscopedRef] public ref uint Ecx { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Gpr[1]; }
    [UnscopedRef] public ref uint Edx { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Gpr[2]; }
    [UnscopedRef] public ref uint Ebx { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Gpr[3]; }
    [UnscopedRef] public ref uint Esp { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Gpr[4]; }
    [UnscopedRef] public ref uint Ebp { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Gpr[5]; }
    [UnscopedRef] public ref uint Esi { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Gpr[6]; }
    [UnscopedRef] public ref uint Edi { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Gpr[7]; }

    /// <summary>
    /// The current privilege level. The SDM keeps it in CS and SS; like VMX (SDM Vol. 3C, "Guest Register State")
    /// this core reads it as SS.DPL, which every privilege change (far transfers, gates, IRET, SYSENTER/SYSEXIT) sets.
    /// </summary>
    public readonly int Cpl { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => (Segments[(int)Sreg.Ss].Attributes >> 5) & 3; }

    [UnscopedRef] public ref SegmentRegister Es { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Segments[(int)Sreg.Es]; }
    [UnscopedRef] public ref SegmentRegister Cs { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Segments[(int)Sreg.Cs]; }
    [UnscopedRef] public ref SegmentRegister Ss { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Segments[(int)Sreg.Ss]; }
    [UnscopedRef] public ref SegmentRegister Ds { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Segments[(int)Sreg.Ds]; }
    [UnscopedRef] public ref SegmentRegister Fs { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Segments[(int)Sreg.Fs]; }
    [UnscopedRef] public ref SegmentRegister Gs { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => ref Segments[(int)Sreg.Gs]; }
}

/// <summary>The eight general-purpose registers stored inline so that a snapshot is a plain struct copy.</summary>
[InlineArray(8)]
internal struct GprFile
{
    private uint _element;
}

/// <summary>The six segment registers, indexed by <see cref="Sreg"/>.</summary>
[InlineArray(6)]
internal struct SegmentFile
{
    private SegmentRegister _element;
}

/// <summary>The base and limit a descriptor-table register holds (SDM Vol. 3A, 2.4).</summary>
public readonly record struct DescriptorTableRegister(uint Base, ushort Limit);
