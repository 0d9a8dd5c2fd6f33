namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// SYSENTER and SYSEXIT (SDM Vol. 2B), the fast system calls of the P6 family, and the three MSRs that configure them
/// (IA32_SYSENTER_CS, _ESP and _EIP, Vol. 4 table 2-2). Linux's vDSO enters the kernel through SYSENTER when CPUID
/// reports SEP. Neither instruction reads a descriptor: both load fixed flat caches, which is what makes them fast.
/// </summary>
public sealed partial class X86Core
{
    /// <summary>IA32_EFER's execute-disable enable (bit 11, SDM Vol. 3A, 4.1.4 and 4.6): the one bit this processor has.</summary>
    public const uint EferNxe = 1u << 11;

    /// <summary>
    /// IA32_EFER (0xC0000080): NXE only (no SYSCALL, no long mode; the kernel refuses other bits with #GP). A change of
    /// NXE changes which PAE entries have a reserved bit 63, so the TLB is flushed.
    /// </summary>
    public uint Efer
    {
        get => _ctx.Efer;
        set
        {
            uint old = _ctx.Efer;
            _ctx.Efer = value & EferNxe;
            if (old != _ctx.Efer)
            {
                FlushTlb(keepGlobal: false);
            }
        }
    }

    /// <summary>IA32_SYSENTER_CS (0x174): its low 16 bits are kept, as QEMU keeps them.</summary>
    public uint SysenterCs { get => _ctx.SysenterCs; set => _ctx.SysenterCs = value & 0xFFFF; }

    /// <summary>IA32_SYSENTER_ESP (0x175).</summary>
    public uint SysenterEsp { get => _ctx.SysenterEsp; set => _ctx.SysenterEsp = value; }

    /// <summary>IA32_SYSENTER_EIP (0x176).</summary>
    public uint SysenterEip { get => _ctx.SysenterEip; set => _ctx.SysenterEip = value; }

    /// <summary>
    /// SYSENTER: #GP(0) while SYSENTER_CS[15:2] is 0; otherwise VM, IF and RF clear, CPL 0 with CS = SYSENTER_CS and
    /// SS = SYSENTER_CS + 8 as flat segments, ESP and EIP from their MSRs. Nothing is saved: the caller passes its
    /// return address and stack in EDX and ECX, as SYSEXIT expects them.
    /// </summary>
    private bool Sysenter()
    {
        var selector = (ushort)(_ctx.SysenterCs & 0xFFFC);
        if (selector == 0) return Fault(ExceptionVector.GeneralProtection, 0);
        _ctx.Eflags &= ~(VmFlag | (uint)EFlags.IF | RfFlag);
        LoadFlatSegments(selector, (ushort)(selector + 8), ring: 0);
        _ctx.Esp = _ctx.SysenterEsp;
        _ctx.Eip = _ctx.SysenterEip;
        return true;
    }

    /// <summary>
    /// SYSEXIT: #GP(0) outside ring 0 or while SYSENTER_CS[15:2] is 0; otherwise CPL 3 with CS = SYSENTER_CS + 16 and
    /// SS = SYSENTER_CS + 24 (RPL 3) as flat segments, ESP = ECX and EIP = EDX.
    /// </summary>
    private bool Sysexit()
    {
        var selector = (ushort)(_ctx.SysenterCs & 0xFFFC);
        if (selector == 0 || _ctx.Cpl != 0) return Fault(ExceptionVector.GeneralProtection, 0);
        LoadFlatSegments((ushort)((selector + 16) | 3), (ushort)((selector + 24) | 3), ring: 3);
        _ctx.Esp = _ctx.Ecx;
        _ctx.Eip = _ctx.Edx;
        return true;
    }

    private void LoadFlatSegments(ushort cs, ushort ss, int ring)
    {
        // The flat 4 GiB caches of the boot state, at the ring's DPL (VMX access-rights layout).
        var dpl = (ushort)(ring << 5);
        SegmentRegister code = SegmentRegister.Flat(cs, code: true), stack = SegmentRegister.Flat(ss, code: false);
        SetSegmentCache(Sreg.Cs, code with { Attributes = (ushort)(code.Attributes | dpl) });
        SetSegmentCache(Sreg.Ss, stack with { Attributes = (ushort)(stack.Attributes | dpl) });
        CodeMappingChanged();
    }
}
