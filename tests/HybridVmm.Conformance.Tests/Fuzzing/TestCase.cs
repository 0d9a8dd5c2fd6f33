using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>One generated test case: an instruction and the complete input state. Reused between cases (no allocation per case).</summary>
internal sealed class TestCase
{
    public long Index;
    public InstructionForm Form = null!;
    public Instruction Instruction;
    public readonly byte[] Bytes = new byte[16];
    public int Length;
    public uint Eip;
    public readonly uint[] Gprs = new uint[8];
    public uint Eflags;
    public readonly byte[] Data = new byte[MachineLayout.DataWindowSize];
    public readonly byte[] Stack = new byte[MachineLayout.StackWindowSize];
    public readonly byte[] Low = new byte[MachineLayout.LowWindowSize];

    /// <summary>The input bytes from <paramref name="address"/> to the end of its window (data or low window).</summary>
    public Span<byte> InputAt(uint address) => address >= MachineLayout.DataWindow
        ? Data.AsSpan((int)(address - MachineLayout.DataWindow))
        : Low.AsSpan((int)(address - MachineLayout.LowWindow));
    /// <summary>Effective address of the memory operand, or 0.</summary>
    public uint EffectiveAddress;
    /// <summary>Masked shift/rotate count, or -1 when the instruction has none.</summary>
    public int Count = -1;
    /// <summary>Value of the source operand (bit scans; BSWAP's operand size), for the undefined-state rules.</summary>
    public uint Source;

    public ReadOnlySpan<byte> Code => Bytes.AsSpan(0, Length);
}
