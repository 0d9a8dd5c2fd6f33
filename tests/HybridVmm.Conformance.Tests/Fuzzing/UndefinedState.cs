using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>
/// What the Intel SDM (Vol. 2, each instruction's "Flags Affected") leaves undefined for one instruction
/// with its actual count and source: those flags (and, rarely, the result) are masked out of the
/// comparison. Everything else is defined state and must match exactly. docs/undefined-flags.md lists
/// which value the core chooses for each of these.
/// </summary>
internal static class UndefinedState
{
    private const uint CF = 0x001, PF = 0x004, AF = 0x010, ZF = 0x040, SF = 0x080, OF = 0x800;
    private const uint Status = CF | PF | AF | ZF | SF | OF;

    /// <summary>Undefined status flags for this case; <paramref name="resultUndefined"/> when the destination is undefined too.</summary>
    public static uint Flags(TestCase c, out bool resultUndefined)
    {
        resultUndefined = false;
        int bits = c.Form.OperandBits;
        int count = c.Count;
        switch (c.Form.Mnemonic)
        {
            case Mnemonic.And or Mnemonic.Or or Mnemonic.Xor or Mnemonic.Test:
                return AF;
            case Mnemonic.Mul or Mnemonic.Imul:
                return SF | ZF | AF | PF;
            case Mnemonic.Div or Mnemonic.Idiv:
                return Status;
            case Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr:
                if (count == 0) return 0;
                // SDM SAL/SAR/SHL/SHR: OF only for 1-bit shifts; CF undefined for SHL/SHR when count >= operand size.
                return AF | (count > 1 ? OF : 0) | (count >= bits ? CF : 0);
            case Mnemonic.Sar:
                if (count == 0) return 0;
                return AF | (count > 1 ? OF : 0);
            case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr:
                // OF is defined only for 1-bit rotates (the masked count).
                return count > 1 ? OF : 0;
            case Mnemonic.Shld or Mnemonic.Shrd:
                if (count == 0) return 0;
                if (count > bits)
                {
                    // SDM SHLD/SHRD: count greater than the operand size: result and flags undefined.
                    resultUndefined = true;
                    return Status;
                }
                return AF | (count > 1 ? OF : 0);
            case Mnemonic.Bsf or Mnemonic.Bsr:
                resultUndefined = c.Source == 0;
                return CF | OF | SF | AF | PF;
            case Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc:
                return OF | SF | AF | PF;
            case Mnemonic.Daa or Mnemonic.Das:
                return OF;
            case Mnemonic.Aaa or Mnemonic.Aas:
                return OF | SF | ZF | PF;
            case Mnemonic.Aam or Mnemonic.Aad:
                return OF | AF | CF;
            case Mnemonic.Bswap:
                resultUndefined = bits == 16; // SDM BSWAP: undefined with a 16-bit register
                return 0;
            default:
                return 0;
        }
    }

    /// <summary>The register BSF/BSR/BSWAP/SHLD/SHRD write when their result is undefined (masked in the comparison).</summary>
    public static int UndefinedResultRegister(TestCase c)
    {
        if (c.Instruction.Op0Kind != OpKind.Register) return -1;
        Register r = c.Instruction.Op0Register.GetFullRegister32();
        return r - Register.EAX;
    }
}
