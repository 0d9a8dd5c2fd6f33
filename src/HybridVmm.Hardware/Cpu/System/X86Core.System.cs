using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// System and miscellaneous instructions: HLT, RDTSC, descriptor-table registers, software interrupts, and the
/// instructions the hypervisor completes (CPUID, RDMSR, WRMSR, VMCALL; their completion is in Exits/X86Core.Exits.cs).
/// </summary>
public sealed partial class X86Core
{
    private bool Hlt()
    {
        _exit = new CpuExit(CpuExitReason.Halt);
        return false;
    }

    /// <summary>RDTSC is deterministic: <see cref="TimeStampCounter"/>, counted from retired instructions and the time bias the kernel sets.</summary>
    private bool Rdtsc()
    {
        ulong tsc = TimeStampCounter;
        _ctx.Eax = (uint)tsc;
        _ctx.Edx = (uint)(tsc >> 32);
        return true;
    }

    /// <summary>RDTSCP (SDM Vol. 2B): RDTSC's value, and IA32_TSC_AUX in ECX.</summary>
    private bool Rdtscp()
    {
        Rdtsc();
        _ctx.Ecx = _ctx.TscAux;
        return true;
    }

    /// <summary>IA32_TSC_AUX (0xC0000103), which RDTSCP returns in ECX; an operating system keeps the CPU number there.</summary>
    public uint TscAux { get => _ctx.TscAux; set => _ctx.TscAux = value; }

    private bool LoadDescriptorTable(ref Instruction ins, Operation op)
    {
        // m16&32: limit then base; a 16-bit operand size uses only 24 bits of the base (SDM Vol. 2A, LGDT).
        uint ea = Ea(ref ins);
        ushort limit = (ushort)Read16(ea);
        uint baseAddress = Read32(ea + 2);
        if (_faulted) return false;
        if (ins.Code is Code.Lgdt_m1632_16 or Code.Lidt_m1632_16) baseAddress &= 0x00ffffff;
        var value = new DescriptorTableRegister(baseAddress, limit);
        if (op == Operation.Lgdt) Gdtr = value; else Idtr = value;
        return true;
    }

    private bool StoreDescriptorTable(ref Instruction ins, Operation op)
    {
        uint ea = Ea(ref ins);
        DescriptorTableRegister value = op == Operation.Sgdt ? Gdtr : Idtr;
        if (!ProbeWrite(ea, 6)) return false;
        Write16(ea, value.Limit);
        Write32(ea + 2, value.Base);
        return true;
    }

    /// <summary>
    /// INT n, INT3, INTO, INT1: interrupt delivery through the IDT is not implemented yet, so the core
    /// reports the vector as an exception exit with EIP on the instruction. INTO with OF=0 is a no-op.
    /// </summary>
    private bool SoftwareInterrupt(ref Instruction ins)
    {
        if (IdtLoaded)
        {
            byte vector = ins.Code switch { Code.Int3 => ExceptionVector.Breakpoint, Code.Into => ExceptionVector.Overflow, Code.Int1 => ExceptionVector.Debug, _ => ins.Immediate8 };
            return (ins.Code == Code.Into && (_ctx.Eflags & OF) == 0) || DeliverSoftwareInterrupt(vector);
        }

        switch (ins.Code)
        {
            case Code.Int3:
                return Fault(ExceptionVector.Breakpoint);
            case Code.Into:
                return (_ctx.Eflags & OF) == 0 || Fault(ExceptionVector.Overflow);
            case Code.Int1:
                return Fault(ExceptionVector.Debug);
            default:
                return Fault(ins.Immediate8);
        }
    }

    // ---- CPUID, RDMSR, WRMSR and VMCALL: they exit, and the hypervisor completes them (Exits/X86Core.Exits.cs). ----

    private bool Cpuid() => Exit(PendingKind.Cpuid, 0, false, 0, new CpuExit(CpuExitReason.Cpuid));

    private bool Rdmsr() => Exit(PendingKind.Rdmsr, 0, false, 0, new CpuExit(CpuExitReason.Rdmsr, Value: _ctx.Ecx));

    private bool Wrmsr() => Exit(PendingKind.Wrmsr, 0, false, 0, new CpuExit(CpuExitReason.Wrmsr, Value: _ctx.Ecx));

    private bool Vmcall() => Exit(PendingKind.Vmcall, 0, false, 0, new CpuExit(CpuExitReason.Vmcall));
}
