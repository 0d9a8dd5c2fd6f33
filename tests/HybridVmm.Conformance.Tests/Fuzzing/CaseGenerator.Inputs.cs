using System.Buffers.Binary;
using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>The input side of the generator: edge-biased register, memory and string-instruction inputs.</summary>
internal sealed partial class CaseGenerator
{
    private static void FillRandom(ref CaseRandom rng, Span<byte> bytes)
    {
        for (int i = 0; i + 8 <= bytes.Length; i += 8)
        {
            ulong v = rng.NextUInt64();
            // Byte-level edges: many zero, 0xFF and 0x80 bytes.
            if ((v & 3) == 0) v &= 0x80FF00FF80FF00FF;
            BinaryPrimitives.WriteUInt64LittleEndian(bytes[i..], v);
        }
    }

    private static void ApplyBias(ref CaseRandom rng, InstructionForm form, ReadOnlySpan<Operand> ops, Span<uint> regs)
    {
        int bits = form.OperandBits;
        switch (form.Mnemonic)
        {
            case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal
                or Mnemonic.Shr or Mnemonic.Sar or Mnemonic.Shld or Mnemonic.Shrd:
                if (rng.Chance(85)) regs[1] = (regs[1] & ~0xffu) | (uint)CountEdges[rng.Next(CountEdges.Length)];
                break;
            case Mnemonic.Div or Mnemonic.Idiv:
                if (rng.Chance(75))
                {
                    bool signed = form.Mnemonic == Mnemonic.Idiv;
                    if (bits == 8)
                    {
                        uint ax = signed && rng.Chance(50) ? (uint)(short)(sbyte)regs[0] : regs[0] & 0xff;
                        regs[0] = (regs[0] & 0xffff0000) | (ax & 0xffff);
                    }
                    else if (bits == 16)
                    {
                        uint dx = signed && (regs[0] & 0x8000) != 0 ? 0xffffu : 0;
                        regs[2] = (regs[2] & 0xffff0000) | dx;
                    }
                    else
                    {
                        regs[2] = signed && (regs[0] & 0x80000000) != 0 ? 0xffffffffu : 0;
                    }
                }
                break;
            case Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne or Mnemonic.Jecxz:
                if (rng.Chance(50)) regs[1] = (uint)rng.Next(3);
                break;
            case Mnemonic.Enter or Mnemonic.Leave:
                if (rng.Chance(90)) regs[5] = MachineLayout.StackTop - (uint)rng.Next(64) & (rng.Chance(80) ? ~3u : ~0u);
                break;
            case Mnemonic.Xlatb:
                regs[3] = MachineLayout.DataTarget;
                break;
            case Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc:
                // Register bit offsets address memory relative to the operand: keep them within the window.
                if (ops[0].Kind == OpKind.Memory && ops[1].Kind == OpKind.Register)
                {
                    int r = ops[1].Register - (bits == 16 ? Register.AX : Register.EAX);
                    uint offset = (uint)(rng.Next(768) - 256);
                    regs[r] = bits == 16 ? (regs[r] & 0xffff0000) | (offset & 0xffff) : offset;
                }
                break;
            case Mnemonic.Cmpxchg:
                if (ops[0].Kind == OpKind.Register && rng.Chance(50))
                {
                    // Make the comparison succeed: accumulator = destination.
                    uint v = ReadRegister(regs, ops[0].Register);
                    WriteRegister(regs, bits == 8 ? Register.AL : bits == 16 ? Register.AX : Register.EAX, v);
                }
                break;
        }
    }

    private void WriteMemoryBias(ref CaseRandom rng, InstructionForm form, TestCase c, uint target, Span<uint> regs)
    {
        Span<byte> at = c.InputAt(target);
        if (form.Code == Code.Cmpxchg8b_m64)
        {
            if (rng.Chance(50))
            {
                BinaryPrimitives.WriteUInt32LittleEndian(at, regs[0]);
                BinaryPrimitives.WriteUInt32LittleEndian(at[4..], regs[2]);
            }
            return;
        }
        if (form.Mnemonic == Mnemonic.Cmpxchg && rng.Chance(50))
        {
            BinaryPrimitives.WriteUInt32LittleEndian(at, regs[0]);
            return;
        }
        if (rng.Chance(40)) BinaryPrimitives.WriteUInt32LittleEndian(at, rng.EdgeValue());
    }

    private static uint ReadRegister(ReadOnlySpan<uint> regs, Register r)
    {
        if (r is >= Register.EAX and <= Register.EDI) return regs[r - Register.EAX];
        if (r is >= Register.AX and <= Register.DI) return regs[r - Register.AX] & 0xffff;
        if (r is >= Register.AL and <= Register.BL) return regs[r - Register.AL] & 0xff;
        return (regs[r - Register.AH] >> 8) & 0xff;
    }

    private static void WriteRegister(Span<uint> regs, Register r, uint v)
    {
        if (r is >= Register.EAX and <= Register.EDI) regs[r - Register.EAX] = v;
        else if (r is >= Register.AX and <= Register.DI) regs[r - Register.AX] = (regs[r - Register.AX] & 0xffff0000) | (v & 0xffff);
        else if (r is >= Register.AL and <= Register.BL) regs[r - Register.AL] = (regs[r - Register.AL] & 0xffffff00) | (v & 0xff);
        else regs[r - Register.AH] = (regs[r - Register.AH] & 0xffff00ff) | ((v & 0xff) << 8);
    }

    /// <summary>String instructions and XLAT: raw opcode bytes with optional 66 and REP/REPNE prefixes.</summary>
    private bool GenerateString(ref CaseRandom rng, InstructionForm form, TestCase c)
    {
        Span<uint> regs = c.Gprs;
        int n = 0;
        bool rep = false;
        if (form.Mnemonic != Mnemonic.Xlatb && rng.Chance(60))
        {
            bool compare = form.Mnemonic is Mnemonic.Cmpsb or Mnemonic.Cmpsw or Mnemonic.Cmpsd or Mnemonic.Scasb or Mnemonic.Scasw or Mnemonic.Scasd;
            c.Bytes[n++] = compare && rng.Chance(50) ? (byte)0xF2 : (byte)0xF3;
            rep = true;
        }
        if (form.OpCode.OperandSize == 16) c.Bytes[n++] = 0x66;
        c.Bytes[n++] = (byte)form.OpCode.OpCode;
        c.Length = n;
        regs[6] = MachineLayout.DataTarget + (uint)rng.Next(MachineLayout.DataTargetRange);
        regs[7] = MachineLayout.DataTarget + (uint)rng.Next(MachineLayout.DataTargetRange);
        if (rep) regs[1] = rng.Chance(85) ? (uint)rng.Next(9) : (uint)rng.Next(100);
        if (form.Mnemonic == Mnemonic.Xlatb) regs[3] = MachineLayout.DataTarget;
        if (rng.Chance(30))
        {
            // Equal runs so that REPE/REPNE stop early on some element.
            c.Data.AsSpan((int)(regs[6] - MachineLayout.DataWindow), 16).CopyTo(c.Data.AsSpan((int)(regs[7] - MachineLayout.DataWindow)));
        }
        var decoder = Decoder.Create(32, new ByteArrayCodeReader(c.Bytes, 0, n), c.Eip);
        c.Instruction = decoder.Decode();
        return c.Instruction.Code == form.Code;
    }
}
