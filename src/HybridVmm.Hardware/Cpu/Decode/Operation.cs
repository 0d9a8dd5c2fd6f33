using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The core's own dense dispatch key. Iced's <see cref="Code"/> has thousands of sparse values; mapping
/// each to one of these once at startup lets the hot switch compile to a single jump table.
/// </summary>
internal enum Operation : byte
{
    Undefined,
    Mov, Movzx, Movsx, Lea, Xchg, Push, Pop, MovSreg, MovCr, MovDr,
    Add, Adc, Sub, Sbb, And, Or, Xor, Cmp, Test, Inc, Dec, Neg, Not,
    Mul, Imul, Div, Idiv,
    Rol, Ror, Rcl, Rcr, Shl, Shr, Sar, Shld, Shrd,
    Cbw, Cwde, Cwd, Cdq,
    Jcc, Jmp, Call, Ret, Setcc, Cmovcc, Loop, Loope, Loopne, Jecxz,
    Bt, Bts, Btr, Btc, Bsf, Bsr, Bswap, Xadd, Cmpxchg, Cmpxchg8b,
    Movs, Stos, Lods, Cmps, Scas, Ins, Outs,
    Daa, Das, Aaa, Aas, Aam, Aad,
    Enter, Leave, Pusha, Popa, Pushf, Popf, Lahf, Sahf, Salc,
    Clc, Stc, Cmc, Cld, Std, Cli, Sti, Stac, Clac,
    Nop, Cpuid, Rdtsc, Hlt, In, Out, Xlat,
    Lgdt, Lidt, Sgdt, Sidt, SoftwareInterrupt,
    Iret, Rdmsr, Wrmsr, Vmcall, Invlpg, Sysenter, Sysexit, Rdtscp,
    JmpFar, CallFar, Retf, LoadFarPointer, Lldt, Sldt, Ltr, Str, Lar, Lsl, Verr, Verw, Arpl, Smsw, Lmsw, Clts,
    /// <summary>Every x87 form (escape opcodes D8-DF), WAIT, FXSAVE and FXRSTOR: Fpu/X86Core.Fpu.cs switches further.</summary>
    X87,
    /// <summary>WBINVD and INVD: no caches to write back or drop here, but privileged (#GP(0) above CPL 0).</summary>
    InvalidateCaches,
}

internal static class OperationTable
{
    /// <summary>Operation for every Iced <see cref="Code"/>; forms the core does not emulate stay <see cref="Operation.Undefined"/> (#UD).</summary>
    public static readonly Operation[] ByCode = Build();

    /// <summary>Condition code of every Jcc/SETcc/CMOVcc/LOOPcc form, looked up once instead of per execution.</summary>
    public static readonly ConditionCode[] Condition = BuildConditions();

    private static ConditionCode[] BuildConditions()
    {
        Code[] codes = Enum.GetValues<Code>();
        var table = new ConditionCode[codes.Length + 1];
        foreach (Code code in codes)
        {
            table[(int)code] = code.ConditionCode();
        }
        return table;
    }

    /// <summary>Bytes a PUSH or POP form moves (operand size of the stack access), from Iced's stack-pointer increment.</summary>
    public static readonly byte[] StackOperandSize = BuildStackSizes();

    private static byte[] BuildStackSizes()
    {
        Code[] codes = Enum.GetValues<Code>();
        var table = new byte[codes.Length + 1];
        foreach (Code code in codes)
        {
            if (code.Mnemonic() is Mnemonic.Push or Mnemonic.Pop)
            {
                var instruction = new Instruction { Code = code };
                table[(int)code] = (byte)Math.Abs(instruction.StackPointerIncrement);
            }
        }
        return table;
    }

    private static Operation[] Build()
    {
        Code[] codes = Enum.GetValues<Code>();
        var table = new Operation[codes.Length + 1];
        foreach (Code code in codes)
        {
            table[(int)code] = Classify(code);
        }
        return table;
    }

    private static Operation Classify(Code code)
    {
        switch (code)
        {
            case Code.Movsb_m8_m8 or Code.Movsw_m16_m16 or Code.Movsd_m32_m32: return Operation.Movs;
            case Code.Cmpsb_m8_m8 or Code.Cmpsw_m16_m16 or Code.Cmpsd_m32_m32: return Operation.Cmps;
            case Code.Stosb_m8_AL or Code.Stosw_m16_AX or Code.Stosd_m32_EAX: return Operation.Stos;
            case Code.Lodsb_AL_m8 or Code.Lodsw_AX_m16 or Code.Lodsd_EAX_m32: return Operation.Lods;
            case Code.Scasb_AL_m8 or Code.Scasw_AX_m16 or Code.Scasd_EAX_m32: return Operation.Scas;
            case Code.Insb_m8_DX or Code.Insw_m16_DX or Code.Insd_m32_DX: return Operation.Ins;
            case Code.Outsb_DX_m8 or Code.Outsw_DX_m16 or Code.Outsd_DX_m32: return Operation.Outs;
            case Code.Mov_r32_cr or Code.Mov_cr_r32: return Operation.MovCr;
            case Code.Mov_r32_dr or Code.Mov_dr_r32: return Operation.MovDr;
            case Code.Mov_rm16_Sreg or Code.Mov_r32m16_Sreg or Code.Mov_Sreg_rm16 or Code.Mov_Sreg_r32m16: return Operation.MovSreg;
            case Code.Mov_r32_dr or Code.Mov_dr_r32 or Code.Mov_r32_tr or Code.Mov_tr_r32: return Operation.Undefined;
            case Code.Cmpxchg8b_m64: return Operation.Cmpxchg8b;
            case Code.Nopw or Code.Nopd or Code.Nop_rm16 or Code.Nop_rm32: return Operation.Nop;
            case Code.Wait or Code.Fxsave_m512byte or Code.Fxrstor_m512byte: return Operation.X87;
        }

        OpCodeInfo opcode = code.ToOpCode();
        // Iced gives register forms (D9 E8, D8 C0+i) a two-byte opcode value.
        uint escape = opcode.OpCodeLength == 2 ? opcode.OpCode >> 8 : opcode.OpCode;
        if (opcode.Encoding == EncodingKind.Legacy && opcode.Table == OpCodeTableKind.Normal && escape is >= 0xD8 and <= 0xDF)
        {
            return Operation.X87;
        }

        return code.Mnemonic() switch
        {
            Mnemonic.Mov => Operation.Mov,
            Mnemonic.Movzx => Operation.Movzx,
            Mnemonic.Movsx => Operation.Movsx,
            Mnemonic.Lea => Operation.Lea,
            Mnemonic.Xchg => Operation.Xchg,
            Mnemonic.Push => Operation.Push,
            Mnemonic.Pop => Operation.Pop,
            Mnemonic.Add => Operation.Add,
            Mnemonic.Adc => Operation.Adc,
            Mnemonic.Sub => Operation.Sub,
            Mnemonic.Sbb => Operation.Sbb,
            Mnemonic.And => Operation.And,
            Mnemonic.Or => Operation.Or,
            Mnemonic.Xor => Operation.Xor,
            Mnemonic.Cmp => Operation.Cmp,
            Mnemonic.Test => Operation.Test,
            Mnemonic.Inc => Operation.Inc,
            Mnemonic.Dec => Operation.Dec,
            Mnemonic.Neg => Operation.Neg,
            Mnemonic.Not => Operation.Not,
            Mnemonic.Mul => Operation.Mul,
            Mnemonic.Imul => Operation.Imul,
            Mnemonic.Div => Operation.Div,
            Mnemonic.Idiv => Operation.Idiv,
            Mnemonic.Rol => Operation.Rol,
            Mnemonic.Ror => Operation.Ror,
            Mnemonic.Rcl => Operation.Rcl,
            Mnemonic.Rcr => Operation.Rcr,
            Mnemonic.Shl or Mnemonic.Sal => Operation.Shl,
            Mnemonic.Shr => Operation.Shr,
            Mnemonic.Sar => Operation.Sar,
            Mnemonic.Shld => Operation.Shld,
            Mnemonic.Shrd => Operation.Shrd,
            Mnemonic.Cbw => Operation.Cbw,
            Mnemonic.Cwde => Operation.Cwde,
            Mnemonic.Cwd => Operation.Cwd,
            Mnemonic.Cdq => Operation.Cdq,
            Mnemonic.Jo or Mnemonic.Jno or Mnemonic.Jb or Mnemonic.Jae or Mnemonic.Je or Mnemonic.Jne
                or Mnemonic.Jbe or Mnemonic.Ja or Mnemonic.Js or Mnemonic.Jns or Mnemonic.Jp or Mnemonic.Jnp
                or Mnemonic.Jl or Mnemonic.Jge or Mnemonic.Jle or Mnemonic.Jg => Operation.Jcc,
            Mnemonic.Seto or Mnemonic.Setno or Mnemonic.Setb or Mnemonic.Setae or Mnemonic.Sete or Mnemonic.Setne
                or Mnemonic.Setbe or Mnemonic.Seta or Mnemonic.Sets or Mnemonic.Setns or Mnemonic.Setp or Mnemonic.Setnp
                or Mnemonic.Setl or Mnemonic.Setge or Mnemonic.Setle or Mnemonic.Setg => Operation.Setcc,
            Mnemonic.Cmovo or Mnemonic.Cmovno or Mnemonic.Cmovb or Mnemonic.Cmovae or Mnemonic.Cmove or Mnemonic.Cmovne
                or Mnemonic.Cmovbe or Mnemonic.Cmova or Mnemonic.Cmovs or Mnemonic.Cmovns or Mnemonic.Cmovp or Mnemonic.Cmovnp
                or Mnemonic.Cmovl or Mnemonic.Cmovge or Mnemonic.Cmovle or Mnemonic.Cmovg => Operation.Cmovcc,
            Mnemonic.Jmp => code is Code.Jmp_rel8_32 or Code.Jmp_rel32_32 or Code.Jmp_rm32 or Code.Jmp_rel8_16 or Code.Jmp_rel16 or Code.Jmp_rm16
                ? Operation.Jmp
                : code is Code.Jmp_ptr1632 or Code.Jmp_ptr1616 or Code.Jmp_m1632 or Code.Jmp_m1616 ? Operation.JmpFar : Operation.Undefined,
            Mnemonic.Call => code is Code.Call_rel32_32 or Code.Call_rm32 or Code.Call_rel16 or Code.Call_rm16
                ? Operation.Call
                : code is Code.Call_ptr1632 or Code.Call_ptr1616 or Code.Call_m1632 or Code.Call_m1616 ? Operation.CallFar : Operation.Undefined,
            Mnemonic.Retf => Operation.Retf,
            Mnemonic.Lds or Mnemonic.Les or Mnemonic.Lfs or Mnemonic.Lgs or Mnemonic.Lss => Operation.LoadFarPointer,
            Mnemonic.Lldt => Operation.Lldt,
            Mnemonic.Sldt => Operation.Sldt,
            Mnemonic.Ltr => Operation.Ltr,
            Mnemonic.Str => Operation.Str,
            Mnemonic.Lar => Operation.Lar,
            Mnemonic.Lsl => Operation.Lsl,
            Mnemonic.Verr => Operation.Verr,
            Mnemonic.Verw => Operation.Verw,
            Mnemonic.Arpl => Operation.Arpl,
            Mnemonic.Smsw => Operation.Smsw,
            Mnemonic.Lmsw => Operation.Lmsw,
            Mnemonic.Clts => Operation.Clts,
            Mnemonic.Ret => Operation.Ret,
            Mnemonic.Loop => Operation.Loop,
            Mnemonic.Loope => Operation.Loope,
            Mnemonic.Loopne => Operation.Loopne,
            Mnemonic.Jecxz or Mnemonic.Jcxz => Operation.Jecxz,
            Mnemonic.Bt => Operation.Bt,
            Mnemonic.Bts => Operation.Bts,
            Mnemonic.Btr => Operation.Btr,
            Mnemonic.Btc => Operation.Btc,
            Mnemonic.Bsf => Operation.Bsf,
            Mnemonic.Bsr => Operation.Bsr,
            // F3 0F BC/BD: Iced decodes them as TZCNT and LZCNT, but CPUID claims neither BMI1 nor LZCNT, and a processor
            // without them ignores the prefix (SDM Vol. 2B, TZCNT and LZCNT): "rep bsf", which gcc's generic tuning emits
            // for __builtin_ctz, is BSF, with BSF's result and flags for a zero source.
            Mnemonic.Tzcnt => Operation.Bsf,
            Mnemonic.Lzcnt => Operation.Bsr,
            Mnemonic.Bswap => Operation.Bswap,
            Mnemonic.Xadd => Operation.Xadd,
            Mnemonic.Cmpxchg => Operation.Cmpxchg,
            Mnemonic.Daa => Operation.Daa,
            Mnemonic.Das => Operation.Das,
            Mnemonic.Aaa => Operation.Aaa,
            Mnemonic.Aas => Operation.Aas,
            Mnemonic.Aam => Operation.Aam,
            Mnemonic.Aad => Operation.Aad,
            Mnemonic.Enter => Operation.Enter,
            Mnemonic.Leave => Operation.Leave,
            Mnemonic.Pusha or Mnemonic.Pushad => Operation.Pusha,
            Mnemonic.Popa or Mnemonic.Popad => Operation.Popa,
            Mnemonic.Pushf or Mnemonic.Pushfd => Operation.Pushf,
            Mnemonic.Popf or Mnemonic.Popfd => Operation.Popf,
            Mnemonic.Lahf => Operation.Lahf,
            Mnemonic.Sahf => Operation.Sahf,
            Mnemonic.Salc => Operation.Salc,
            Mnemonic.Clc => Operation.Clc,
            Mnemonic.Stc => Operation.Stc,
            Mnemonic.Cmc => Operation.Cmc,
            Mnemonic.Cld => Operation.Cld,
            Mnemonic.Std => Operation.Std,
            Mnemonic.Cli => Operation.Cli,
            Mnemonic.Sti => Operation.Sti,
            Mnemonic.Stac => Operation.Stac,
            Mnemonic.Clac => Operation.Clac,
            Mnemonic.Nop or Mnemonic.Pause or Mnemonic.Lfence or Mnemonic.Mfence or Mnemonic.Sfence
                or Mnemonic.Prefetchnta or Mnemonic.Prefetcht0 or Mnemonic.Prefetcht1 or Mnemonic.Prefetcht2
                or Mnemonic.Prefetchw or Mnemonic.Endbr32
                => Operation.Nop,
            Mnemonic.Wbinvd or Mnemonic.Invd => Operation.InvalidateCaches,
            Mnemonic.Invlpg => Operation.Invlpg,
            Mnemonic.Cpuid => Operation.Cpuid,
            Mnemonic.Rdtsc => Operation.Rdtsc,
            Mnemonic.Rdtscp => Operation.Rdtscp,
            Mnemonic.Hlt => Operation.Hlt,
            Mnemonic.In => Operation.In,
            Mnemonic.Out => Operation.Out,
            Mnemonic.Xlatb => Operation.Xlat,
            Mnemonic.Lgdt => Operation.Lgdt,
            Mnemonic.Lidt => Operation.Lidt,
            Mnemonic.Sgdt => Operation.Sgdt,
            Mnemonic.Sidt => Operation.Sidt,
            Mnemonic.Int or Mnemonic.Int3 or Mnemonic.Into or Mnemonic.Int1 => Operation.SoftwareInterrupt,
            Mnemonic.Iret or Mnemonic.Iretd => Operation.Iret,
            Mnemonic.Rdmsr => Operation.Rdmsr,
            Mnemonic.Wrmsr => Operation.Wrmsr,
            Mnemonic.Vmcall => Operation.Vmcall,
            Mnemonic.Sysenter => Operation.Sysenter,
            Mnemonic.Sysexit => Operation.Sysexit,
            _ => Operation.Undefined,
        };
    }
}
