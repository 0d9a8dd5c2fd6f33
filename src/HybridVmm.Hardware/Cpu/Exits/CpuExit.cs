namespace HybridVmm.Hardware.Cpu;

/// <summary>Why <see cref="X86Core.Run"/> returned control to the hypervisor (a VM exit, in VMX terms).</summary>
public enum CpuExitReason
{
    /// <summary>The instruction budget given to <see cref="X86Core.Run"/> was used up.</summary>
    BudgetExhausted,
    /// <summary>HLT retired with interrupts unable to wake the core. EIP points after the HLT.</summary>
    Halt,
    /// <summary>IN or INS: the instruction is pending until <see cref="X86Core.CompleteIoIn"/>.</summary>
    IoIn,
    /// <summary>OUT or OUTS: the value is in <see cref="CpuExit.Value"/>; pending until <see cref="X86Core.CompleteIoOut"/>.</summary>
    IoOut,
    /// <summary>CPUID: pending until <see cref="X86Core.CompleteCpuid"/>. Leaf in EAX, subleaf in ECX of the state.</summary>
    Cpuid,
    /// <summary>A guest access the second-level table refused (absent page or write to a write-protected page).
    /// The instruction has not retired and its register effects are rolled back; it re-executes after the hypervisor resumes.</summary>
    MemoryIntercept,
    /// <summary>An architectural exception (#DE, #UD, #GP, ...). Vector and error code are in the exit; EIP is the faulting instruction.</summary>
    Exception,
    /// <summary>RDMSR: MSR index in <see cref="CpuExit.Value"/>; pending until <see cref="X86Core.CompleteRdmsr"/> or <see cref="X86Core.InjectException"/>.</summary>
    Rdmsr,
    /// <summary>WRMSR: MSR index in <see cref="CpuExit.Value"/>, the value in EDX:EAX; pending until <see cref="X86Core.CompleteWrmsr"/>.</summary>
    Wrmsr,
    /// <summary>VMCALL: a hypercall (TLFS 3); pending until <see cref="X86Core.CompleteHypercall"/>.</summary>
    Vmcall,
    /// <summary>An exception or interrupt could not be delivered, nor #GP, nor #DF: the core shut down (SDM Vol. 3A, 6.15, interrupt 8).
    /// <see cref="CpuExit.Vector"/> is the event whose delivery started the chain.</summary>
    TripleFault,
    /// <summary>
    /// The hypervisor asked for an interrupt window (<see cref="X86Core.RequestInterruptWindow"/>) and the core reached
    /// an instruction boundary where it can take an external interrupt: IF=1, no STI or MOV SS shadow, no event
    /// pending delivery. Nothing has executed; EIP is the next instruction. The request is consumed; the hypervisor
    /// may inject a vector (<see cref="X86Core.InjectExternalInterrupt"/>), delivered before that instruction.
    /// </summary>
    InterruptWindow,
    /// <summary>
    /// A MOV to CR0 or CR4, or an LMSW, changed a bit the hypervisor owns (<see cref="X86Core.Cr0InterceptMask"/>,
    /// <see cref="X86Core.Cr4InterceptMask"/>). The write has been applied and the instruction has retired; EIP is the
    /// next instruction. <see cref="CpuExit.Vector"/> is the register's number, <see cref="CpuExit.Value"/> its new value
    /// and <see cref="CpuExit.ErrorCode"/> its old one. Nothing is pending: the hypervisor only accounts for it.
    /// </summary>
    ControlRegisterWrite,
}

/// <summary>Exit information, a plain struct so the hot path does not allocate.</summary>
public readonly record struct CpuExit(
    CpuExitReason Reason,
    ushort Port = 0,
    byte Size = 0,
    uint Value = 0,
    ulong GuestPhysicalAddress = 0,
    bool IsWrite = false,
    byte Vector = 0,
    uint ErrorCode = 0);

/// <summary>Architectural exception vectors (Intel SDM Vol. 3A, 6.3.1, table 6-1).</summary>
public static class ExceptionVector
{
    public const byte DivideError = 0;      // #DE
    public const byte Debug = 1;            // #DB
    public const byte Breakpoint = 3;       // #BP
    public const byte Overflow = 4;         // #OF
    public const byte BoundRange = 5;       // #BR
    public const byte InvalidOpcode = 6;    // #UD
    public const byte DeviceNotAvailable = 7; // #NM
    public const byte DoubleFault = 8;      // #DF
    public const byte InvalidTss = 10;      // #TS
    public const byte SegmentNotPresent = 11; // #NP
    public const byte StackFault = 12;      // #SS
    public const byte GeneralProtection = 13; // #GP
    public const byte PageFault = 14;       // #PF
    public const byte MathFault = 16;       // #MF (x87 floating-point error)

    public static string Mnemonic(byte vector) => vector switch
    {
        DivideError => "#DE",
        Debug => "#DB",
        Breakpoint => "#BP",
        Overflow => "#OF",
        BoundRange => "#BR",
        InvalidOpcode => "#UD",
        DeviceNotAvailable => "#NM",
        DoubleFault => "#DF",
        InvalidTss => "#TS",
        SegmentNotPresent => "#NP",
        StackFault => "#SS",
        GeneralProtection => "#GP",
        PageFault => "#PF",
        MathFault => "#MF",
        _ => $"vector {vector}",
    };
}
