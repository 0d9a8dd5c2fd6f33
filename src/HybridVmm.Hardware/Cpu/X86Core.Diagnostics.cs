using System.Text;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>Human-readable state for fault reports. Not on any hot path, so it may allocate.</summary>
public sealed partial class X86Core
{
    /// <summary>A multi-line fault diagnostic: EIP, the instruction bytes, Iced's disassembly and all registers.</summary>
    public string DescribeState()
    {
        var sb = new StringBuilder();
        var bytes = new List<byte>(15);
        for (uint i = 0; i < 15; i++)
        {
            int b = PeekCodeByte(_ctx.Eip + _csBase + i);
            if (b < 0) break;
            bytes.Add((byte)b);
        }

        string disassembly;
        if (bytes.Count == 0)
        {
            disassembly = "<EIP not mapped>";
        }
        else
        {
            var decoder = Iced.Intel.Decoder.Create(32, new ByteArrayCodeReader(bytes.ToArray()));
            decoder.IP = _ctx.Eip;
            decoder.Decode(out Instruction instruction);
            var output = new StringOutput();
            new NasmFormatter().Format(instruction, output);
            disassembly = instruction.Code == Code.INVALID ? "(bad)" : output.ToStringAndReset();
            bytes.RemoveRange(Math.Min(instruction.Length == 0 ? 1 : instruction.Length, bytes.Count),
                bytes.Count - Math.Min(instruction.Length == 0 ? 1 : instruction.Length, bytes.Count));
        }

        sb.Append("EIP=").Append(_ctx.Eip.ToString("x8")).Append("  ")
          .Append(Convert.ToHexString(bytes.ToArray()).ToLowerInvariant()).Append("  ").AppendLine(disassembly);
        sb.Append($"EAX={_ctx.Eax:x8} EBX={_ctx.Ebx:x8} ECX={_ctx.Ecx:x8} EDX={_ctx.Edx:x8}").AppendLine();
        sb.Append($"ESI={_ctx.Esi:x8} EDI={_ctx.Edi:x8} EBP={_ctx.Ebp:x8} ESP={_ctx.Esp:x8}").AppendLine();
        sb.Append($"EFLAGS={_ctx.Eflags:x8} [").Append(DescribeFlags(_ctx.Eflags)).AppendLine("]");
        sb.Append($"CR0={Cr0:x8} CR2={Cr2:x8} CR3={Cr3:x8} CR4={Cr4:x8}").AppendLine();
        sb.Append($"CS={Cs:x4} DS={Ds:x4} ES={Es:x4} FS={Fs:x4} GS={Gs:x4} SS={Ss:x4} retired={InstructionsRetired}");
        return sb.ToString();
    }

    private static string DescribeFlags(uint flags)
    {
        var parts = new List<string>();
        if ((flags & OF) != 0) parts.Add("OF");
        if ((flags & DF) != 0) parts.Add("DF");
        if ((flags & (uint)EFlags.IF) != 0) parts.Add("IF");
        if ((flags & (uint)EFlags.TF) != 0) parts.Add("TF");
        if ((flags & SF) != 0) parts.Add("SF");
        if ((flags & ZF) != 0) parts.Add("ZF");
        if ((flags & AF) != 0) parts.Add("AF");
        if ((flags & PF) != 0) parts.Add("PF");
        if ((flags & CF) != 0) parts.Add("CF");
        return string.Join(' ', parts);
    }
}
