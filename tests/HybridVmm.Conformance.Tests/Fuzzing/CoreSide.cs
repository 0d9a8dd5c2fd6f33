using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.Memory;
using HybridVmm.Testing.Cpu;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>The CPU under test: an <see cref="X86Core"/> on the flat <see cref="TestMachine"/>'s 1 MiB of identity-mapped guest memory.</summary>
internal sealed class CoreSide
{
    private readonly TestMachine _machine = new(MachineLayout.IsWritablePage);

    public CoreSide()
    {
        Memory.Bytes.Fill(0xF4); // HLT everywhere, as on the Unicorn side
        Cpu.ResetToFlatProtectedMode(MachineLayout.CodeBase);
    }

    public HostPhysicalMemory Memory => _machine.Memory;
    public X86Core Cpu => _machine.Cpu;
    public Span<byte> Bytes => Memory.Bytes;

    /// <summary>Writes code as the host (the loader), past the read-only second-level mapping.</summary>
    public void LoadCode(uint address, ReadOnlySpan<byte> code) => _machine.WriteBytes(address, code);

    public void Run(TestCase c, Outcome o) { Load(c); Step(o); }

    /// <summary>Sets the case's registers, flags and memory windows.</summary>
    public void Load(TestCase c)
    {
        c.Data.CopyTo(Memory.Bytes.Slice((int)MachineLayout.DataWindow));
        c.Stack.CopyTo(Memory.Bytes.Slice((int)MachineLayout.StackWindow));
        c.Low.CopyTo(Memory.Bytes.Slice((int)MachineLayout.LowWindow));
        SetRegisters(c.Gprs, c.Eflags, c.Eip);
    }

    public void SetRegisters(ReadOnlySpan<uint> gprs, uint eflags, uint eip)
    {
        for (int i = 0; i < 8; i++) Cpu[(Gpr)i] = gprs[i];
        Cpu.Eflags = eflags;
        Cpu.Eip = eip;
    }

    /// <summary>Executes one instruction from the current state.</summary>
    public void Step(Outcome o)
    {
        CpuExit exit = Cpu.Run(1);
        o.Kind = exit.Reason switch
        {
            CpuExitReason.BudgetExhausted => OutcomeKind.Retired,
            CpuExitReason.Exception => OutcomeKind.Exception,
            CpuExitReason.MemoryIntercept => OutcomeKind.MemoryFault,
            _ => OutcomeKind.Skipped,
        };
        o.Vector = exit.Vector;
        for (int i = 0; i < 8; i++) o.Gprs[i] = Cpu[(Gpr)i];
        o.Eip = Cpu.Eip;
        o.Eflags = Cpu.Eflags;
    }
}
