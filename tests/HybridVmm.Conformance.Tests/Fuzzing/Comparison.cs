using System.Text;
using Iced.Intel;
using Decoder = Iced.Intel.Decoder;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>Compares the defined state two CPUs ended a case in, and formats the one-instruction reproducer.</summary>
internal static class Comparison
{
    /// <summary>EFLAGS bits compared: status flags, TF, IF, DF, IOPL, NT, AC, ID (what POPF can change at CPL 0).</summary>
    public const uint ComparedFlags = 0x247FD5;
    public const uint StatusFlags = 0x8D5;

    /// <summary>Null when the defined state agrees; otherwise a short list of what differs.</summary>
    public static string? Differences(TestCase c, Outcome core, Outcome reference, ReadOnlySpan<byte> coreMemory,
        ReadOnlySpan<byte> referenceMemory, bool compareMemory, out uint undefinedFlagDifference)
    {
        undefinedFlagDifference = 0;
        if (core.Kind != reference.Kind) return $"outcome ({core.Kind} vs {reference.Kind})";
        if (core.Kind == OutcomeKind.Exception && core.Vector != reference.Vector) return "exception vector";
        // After an exception or a memory fault the state left behind is compared too: the instruction must have had
        // no effect (EIP on it), except for the completed iterations of a REP string instruction.

        uint undefinedFlags = UndefinedState.Flags(c, out bool resultUndefined);
        int skipRegister = resultUndefined ? UndefinedState.UndefinedResultRegister(c) : -1;
        var sb = new StringBuilder();
        for (int i = 0; i < 8; i++)
        {
            if (core.Gprs[i] == reference.Gprs[i]) continue;
            if (i == skipRegister && (c.Form.OperandBits == 32 || ((core.Gprs[i] ^ reference.Gprs[i]) & SizeMask(c.Form.OperandBits)) == (core.Gprs[i] ^ reference.Gprs[i]))) continue;
            sb.Append(Names[i]).Append(' ');
        }
        if (core.Eip != reference.Eip) sb.Append("eip ");
        uint flagDiff = (core.Eflags ^ reference.Eflags) & ComparedFlags;
        undefinedFlagDifference = flagDiff & undefinedFlags;
        if ((flagDiff & ~undefinedFlags) != 0) sb.Append("eflags(").Append(FlagNames(flagDiff & ~undefinedFlags)).Append(") ");
        if (compareMemory && !(resultUndefined && c.EffectiveAddress != 0))
        {
            int d = FirstDifference(coreMemory, referenceMemory, (int)MachineLayout.DataWindow, MachineLayout.DataWindowSize);
            if (d >= 0) sb.Append($"memory@{d:x} ");
            int s = FirstDifference(coreMemory, referenceMemory, (int)MachineLayout.StackWindow, MachineLayout.StackWindowSize);
            if (s >= 0) sb.Append($"stack@{s:x} ");
            int l = FirstDifference(coreMemory, referenceMemory, (int)MachineLayout.LowWindow, MachineLayout.LowWindowSize);
            if (l >= 0) sb.Append($"memory@{l:x} ");
        }
        return sb.Length == 0 ? null : sb.ToString().TrimEnd();
    }

    private static uint SizeMask(int bits) => bits == 8 ? 0xffu : bits == 16 ? 0xffffu : 0xffffffffu;

    public static int FirstDifference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, int start, int length)
    {
        ReadOnlySpan<byte> x = a.Slice(start, length), y = b.Slice(start, length);
        int i = x.CommonPrefixLength(y);
        return i == length ? -1 : start + i;
    }

    private static readonly string[] Names = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];

    public static string FlagNames(uint flags)
    {
        var parts = new List<string>();
        (uint bit, string name)[] table = [(0x1, "CF"), (0x4, "PF"), (0x10, "AF"), (0x40, "ZF"), (0x80, "SF"), (0x100, "TF"), (0x200, "IF"),
            (0x400, "DF"), (0x800, "OF"), (0x3000, "IOPL"), (0x4000, "NT"), (0x40000, "AC"), (0x200000, "ID")];
        foreach (var (bit, name) in table) if ((flags & bit) != 0) parts.Add(name);
        return string.Join(' ', parts);
    }

    public static string Disassemble(TestCase c)
    {
        var decoder = Decoder.Create(32, new ByteArrayCodeReader(c.Bytes, 0, c.Length), c.Eip);
        Instruction decoded = decoder.Decode();
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        formatter.Format(decoded, output);
        return output.ToStringAndReset();
    }

    /// <summary>The smallest reproducer: one instruction, its bytes and disassembly, the inputs and both outputs.</summary>
    public static string Reproducer(string rerun, TestCase c, Outcome core, Outcome reference, string referenceName, string differences,
        ReadOnlySpan<byte> coreMemory, ReadOnlySpan<byte> referenceMemory)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"case {c.Index}: {differences}");
        sb.AppendLine($"  rerun : {rerun}");
        sb.AppendLine($"  instr : {Disassemble(c)}   [{Convert.ToHexString(c.Code)}] {c.Form.Code} at eip={c.Eip:x8}");
        sb.AppendLine($"  input : {Outcome.Registers(c.Gprs)} eflags={c.Eflags:x8}");
        if (c.EffectiveAddress != 0)
        {
            sb.AppendLine($"  input : [{c.EffectiveAddress:x8}] = {Convert.ToHexString(c.InputAt(c.EffectiveAddress)[..8])}");
        }
        if (c.Form.IsString || c.Form.Mnemonic is Mnemonic.Pop or Mnemonic.Ret or Mnemonic.Popa or Mnemonic.Popad or Mnemonic.Popf or Mnemonic.Popfd or Mnemonic.Leave)
        {
            sb.AppendLine($"  input : stack window {MachineLayout.StackWindow:x8}: {Convert.ToHexString(c.Stack)}");
            if (c.Form.IsString) sb.AppendLine($"  input : data window {MachineLayout.DataWindow:x8}: {Convert.ToHexString(c.Data)}");
        }
        sb.AppendLine($"  core  : {core.Describe()}");
        sb.AppendLine($"  {referenceName,-6}: {reference.Describe()}");
        if (core.Kind == OutcomeKind.Retired && reference.Kind == OutcomeKind.Retired && !coreMemory.IsEmpty)
        {
            AppendMemoryDifference(sb, "data", coreMemory, referenceMemory, (int)MachineLayout.DataWindow, MachineLayout.DataWindowSize, referenceName);
            AppendMemoryDifference(sb, "stack", coreMemory, referenceMemory, (int)MachineLayout.StackWindow, MachineLayout.StackWindowSize, referenceName);
            AppendMemoryDifference(sb, "low", coreMemory, referenceMemory, (int)MachineLayout.LowWindow, MachineLayout.LowWindowSize, referenceName);
        }
        return sb.ToString();
    }

    private static void AppendMemoryDifference(StringBuilder sb, string name, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, int start, int length, string referenceName)
    {
        int first = FirstDifference(a, b, start, length);
        if (first < 0) return;
        int last = start + length - 1;
        while (a[last] == b[last]) last--;
        int from = first & ~7, to = Math.Min(last + 1, from + 32);
        sb.AppendLine($"  {name} {from:x8}: core {Convert.ToHexString(a[from..to])}");
        sb.AppendLine($"  {name} {from:x8}: {referenceName} {Convert.ToHexString(b[from..to])}");
    }
}
