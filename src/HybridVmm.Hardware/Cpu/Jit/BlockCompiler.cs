using System.Reflection;
using System.Runtime.CompilerServices;
using System.Reflection.Emit;
using Iced.Intel;
using Label = System.Reflection.Emit.Label;

namespace HybridVmm.Hardware.Cpu;

/// <summary>A translated block: returns the instructions it retired and leaves EIP on the next one to run.</summary>
internal delegate int BlockCode(X86Core core, Instruction[] code);

/// <summary>
/// One translated block: straight-line cached instructions of one code page, ending at a branch, a call, a return, or
/// before the first instruction the translator leaves to the interpreter. <see cref="Refused"/> marks a start the
/// translator cannot take, so it is not tried again.
/// </summary>
internal sealed class JitBlock(BlockCode? code, Instruction[] instructions)
{
    public static readonly JitBlock Refused = new(null, []);

    public BlockCode? Code { get; } = code;

    /// <summary>The block's own copy of its decoded instructions (the page's array may grow and move).</summary>
    public Instruction[] Instructions { get; } = instructions;

    public int Count => Instructions.Length;
}

public sealed partial class X86Core
{
    /// <summary>
    /// Compiles a block to IL with <see cref="DynamicMethod"/>; RyuJIT turns it into host code on its first call.
    /// </summary>
    /// <remarks>
    /// <list type="bullet">
    /// <item>Guest registers live in IL locals for the whole block: loaded on entry, stored on every way out.</item>
    /// <item>Status flags are computed lazily inside a block: a flag-writing instruction keeps its operands, and the
    /// flags are materialised only where something reads them (a condition, ADC/SBB, INC/DEC's kept CF, an instruction
    /// run by the interpreter) or where the block is left. Flags that a later instruction overwrites before any of
    /// those are never computed: the liveness pass is this forward walk.</item>
    /// <item>Every memory access first asks <see cref="JitHost"/> for its host offset, before the instruction changes
    /// anything; a refusal leaves the block with the state before that instruction, and the interpreter runs it.</item>
    /// <item>Register-only instructions without a translation of their own (shifts, IMUL, SETcc, CMOVcc, bit scans...)
    /// run through the interpreter's handler in the middle of the block, with the registers stored around them.</item>
    /// </list>
    /// </remarks>
    private sealed class BlockCompiler
    {
        private const int MaxInstructions = 64;

        private static readonly FieldInfo CtxField = Field(typeof(X86Core), nameof(_ctx));
        private static readonly FieldInfo RamField = Field(typeof(X86Core), nameof(_ram));
        private static readonly FieldInfo GprField = Field(typeof(CpuContext), nameof(CpuContext.Gpr));
        private static readonly FieldInfo GprElement = Field(typeof(GprFile), "_element");
        private static readonly FieldInfo EflagsField = Field(typeof(CpuContext), nameof(CpuContext.Eflags));
        private static readonly FieldInfo EipField = Field(typeof(CpuContext), nameof(CpuContext.Eip));
        private static readonly MethodInfo HostMethod = Method(nameof(JitHost));
        private static readonly MethodInfo InterpretMethod = Method(nameof(JitInterpret));
        private static readonly MethodInfo AddStatusMethod = Method(nameof(JitAddStatus));
        private static readonly MethodInfo SubStatusMethod = Method(nameof(JitSubStatus));
        private static readonly MethodInfo LogicStatusMethod = Method(nameof(JitLogicStatus));
        private static readonly MethodInfo AddCarryMethod = Method(nameof(AddStatus));
        private static readonly MethodInfo SubBorrowMethod = Method(nameof(SubStatus));
        private static readonly MethodInfo ConditionMethod = Method(nameof(JitCondition));
        private static readonly MethodInfo[] LoadMethods = [Method(nameof(JitLoad8)), Method(nameof(JitLoad16)), Method(nameof(JitLoad32))];
        private static readonly MethodInfo[] StoreMethods = [Method(nameof(JitStore8)), Method(nameof(JitStore16)), Method(nameof(JitStore32))];

        private enum Kind : byte { Refused, Translated, Branch, Interpreted }

        private enum Pending : byte { None, Add, Sub, Logic, Inc, Dec }

        private readonly Instruction[] _code;
        private readonly bool[] _usedRegs;
        // Temporaries live within one instruction: each instruction reuses the same locals (declaring locals is what
        // compiling costs most, after RyuJIT itself).
        private readonly List<LocalBuilder> _uintTemps = new(), _longTemps = new();
        private int _uintNext, _longNext;
        private ILGenerator _il = null!;
        private LocalBuilder[] _regs = null!;
        private LocalBuilder _flags = null!, _retired = null!, _eip = null!, _pa = null!, _pb = null!;
        private Label _epilogue;
        private Pending _pending;
        private int _pendingSize;

        private BlockCompiler(Instruction[] code, bool[] usedRegs)
        {
            _code = code;
            _usedRegs = usedRegs;
        }

        private static FieldInfo Field(Type type, string name) =>
            type.GetField(name, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)
            ?? throw new MissingFieldException(type.Name, name);

        private static MethodInfo Method(string name) =>
            typeof(X86Core).GetMethod(name, BindingFlags.Instance | BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
            ?? throw new MissingMethodException(nameof(X86Core), name);

        /// <summary>The block that starts at <paramref name="slot"/>, or <see cref="JitBlock.Refused"/>.</summary>
        public static JitBlock Compile(CodePage page, int slot)
        {
            if (page.Code16)
            {
                return JitBlock.Refused;
            }
            var list = new List<Instruction>();
            while (list.Count < MaxInstructions)
            {
                ref Instruction ins = ref page.Instructions[slot];
                Kind kind = Classify(ref ins);
                if (kind == Kind.Refused)
                {
                    break;
                }
                list.Add(ins);
                if (kind == Kind.Branch)
                {
                    break;
                }
                uint next = ins.NextIP32 + page.CsBase;
                if ((next & ~PageOffsetMask) != page.LinearBase || page.Index[next & PageOffsetMask] == 0)
                {
                    break; // the next instruction is on another page, or not decoded yet
                }
                slot = page.Index[next & PageOffsetMask] - 1;
            }
            if (list.Count == 0)
            {
                return JitBlock.Refused;
            }
            Instruction[] code = list.ToArray();
            var method = new DynamicMethod($"block_{code[0].IP32:x8}", typeof(int), [typeof(X86Core), typeof(Instruction[])], typeof(X86Core),
                skipVisibility: true);
            new BlockCompiler(code, UsedRegisters(code)).Emit(method);
            return new JitBlock((BlockCode)method.CreateDelegate(typeof(BlockCode)), code);
        }

        /// <summary>The GPRs the translated instructions read or write: the block keeps these in locals.</summary>
        private static bool[] UsedRegisters(Instruction[] code)
        {
            var used = new bool[8];
            foreach (Instruction ins in code)
            {
                Operation op = OperationByCode[(int)ins.Code];
                if (op == Operation.Nop || Classify(ref Unsafe.AsRef(in ins)) == Kind.Interpreted)
                {
                    continue; // nothing, or the interpreter's handler on the context
                }
                for (int i = 0; i < ins.OpCount; i++)
                {
                    OpKind kind = ins.GetOpKind(i);
                    if (kind == OpKind.Register && IsGpr(ins.GetOpRegister(i)))
                    {
                        used[RegGpr[(int)ins.GetOpRegister(i)]] = true;
                    }
                    else if (kind == OpKind.Memory)
                    {
                        if (ins.MemoryBase != Register.None) used[RegGpr[(int)ins.MemoryBase]] = true;
                        if (ins.MemoryIndex != Register.None) used[RegGpr[(int)ins.MemoryIndex]] = true;
                    }
                }
                if (op is Operation.Push or Operation.Pop or Operation.Call or Operation.Ret or Operation.Leave)
                {
                    used[(int)Gpr.Esp] = true;
                }
                if (op == Operation.Leave)
                {
                    used[(int)Gpr.Ebp] = true;
                }
            }
            return used;
        }

        // ---- Which instructions a block takes ----

        private static Kind Classify(ref Instruction ins)
        {
            Operation op = OperationByCode[(int)ins.Code];
            if (!OperandsTranslatable(ref ins))
            {
                return Kind.Refused;
            }
            switch (op)
            {
                case Operation.Nop:
                    return Kind.Translated;
                case Operation.Mov:
                    return IsGprOrMemory(ins.Op0Kind, ins.Op0Register) && IsSource(ins.Op1Kind, ins.Op1Register)
                        && !(ins.Op0Kind == OpKind.Memory && ins.Op1Kind == OpKind.Memory) ? Kind.Translated : Kind.Refused;
                case Operation.Add or Operation.Adc or Operation.Sub or Operation.Sbb or Operation.And or Operation.Or
                    or Operation.Xor or Operation.Cmp or Operation.Test:
                    return ins.OpCount == 2 && IsGprOrMemory(ins.Op0Kind, ins.Op0Register) && IsSource(ins.Op1Kind, ins.Op1Register)
                        ? Kind.Translated : Kind.Refused;
                case Operation.Inc or Operation.Dec or Operation.Neg or Operation.Not:
                    return IsGprOrMemory(ins.Op0Kind, ins.Op0Register) ? Kind.Translated : Kind.Refused;
                case Operation.Lea:
                    return IsGpr(ins.Op0Register) && RegSize[(int)ins.Op0Register] >= 2 ? Kind.Translated : Kind.Refused;
                case Operation.Movzx or Operation.Movsx:
                    return IsGpr(ins.Op0Register) && IsGprOrMemory(ins.Op1Kind, ins.Op1Register) ? Kind.Translated : Kind.Refused;
                case Operation.Push:
                    return ins.Code is Code.Push_r32 or Code.Pushd_imm8 or Code.Pushd_imm32 ? Kind.Translated : Kind.Refused;
                case Operation.Pop:
                    return ins.Code == Code.Pop_r32 && ins.Op0Register != Register.ESP ? Kind.Translated : Kind.Refused;
                case Operation.Leave:
                    return ins.Code == Code.Leaved ? Kind.Translated : Kind.Refused;
                case Operation.Jcc:
                    return ins.Op0Kind == OpKind.NearBranch32 ? Kind.Branch : Kind.Refused;
                case Operation.Jmp:
                    return ins.Op0Kind == OpKind.NearBranch32 || ins.Code == Code.Jmp_rm32 ? Kind.Branch : Kind.Refused;
                case Operation.Call:
                    return ins.Code is Code.Call_rel32_32 or Code.Call_rm32 ? Kind.Branch : Kind.Refused;
                case Operation.Ret:
                    return ins.Code is Code.Retnd or Code.Retnd_imm16 ? Kind.Branch : Kind.Refused;
                case Operation.Rol or Operation.Ror or Operation.Rcl or Operation.Rcr or Operation.Shl or Operation.Shr
                    or Operation.Sar or Operation.Shld or Operation.Shrd or Operation.Mul or Operation.Imul or Operation.Bt
                    or Operation.Bts or Operation.Btr or Operation.Btc or Operation.Bsf or Operation.Bsr or Operation.Bswap
                    or Operation.Setcc or Operation.Cmovcc or Operation.Xchg or Operation.Cbw or Operation.Cwde
                    or Operation.Cwd or Operation.Cdq or Operation.Clc or Operation.Stc or Operation.Cmc or Operation.Cld
                    or Operation.Std or Operation.Lahf or Operation.Sahf or Operation.Salc or Operation.Xadd
                    or Operation.Cmpxchg:
                    // The interpreter's handler, in the middle of the block: only forms that cannot touch memory or fault.
                    return HasMemoryOperand(ref ins) ? Kind.Refused : Kind.Interpreted;
                default:
                    return Kind.Refused;
            }
        }

        /// <summary>A memory operand, if any, uses 32-bit addressing through ES..GS (16-bit addressing is the interpreter's).</summary>
        private static bool OperandsTranslatable(ref Instruction ins)
        {
            if (!HasMemoryOperand(ref ins))
            {
                return true;
            }
            Register b = ins.MemoryBase, x = ins.MemoryIndex;
            return (b == Register.None || (uint)(b - Register.EAX) < 8) && (x == Register.None || (uint)(x - Register.EAX) < 8)
                && !(b == Register.None && x == Register.None && ins.MemoryDisplSize == 2)
                && ins.MemorySegment is >= Register.ES and <= Register.GS
                && MemSizeBytes[(int)ins.MemorySize] is 1 or 2 or 4 or 0;
        }

        private static bool HasMemoryOperand(ref Instruction ins)
        {
            for (int i = 0; i < ins.OpCount; i++)
            {
                if (ins.GetOpKind(i) == OpKind.Memory) return true;
            }
            return false;
        }

        /// <summary>AL..BH, AX..DI or EAX..EDI (Iced numbers the 64-bit byte registers between BH and AX).</summary>
        private static bool IsGpr(Register r) =>
            (uint)(r - Register.AL) < 8 || (uint)(r - Register.AX) < 8 || (uint)(r - Register.EAX) < 8;

        private static bool IsGprOrMemory(OpKind kind, Register r) => kind == OpKind.Memory || (kind == OpKind.Register && IsGpr(r));

        private static bool IsSource(OpKind kind, Register r) => IsGprOrMemory(kind, r)
            || kind is OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate8to16 or OpKind.Immediate8to32;

        // ---- Emission ----

        private void Emit(DynamicMethod method)
        {
            _il = method.GetILGenerator();
            _regs = new LocalBuilder[8];
            for (int i = 0; i < 8; i++) _regs[i] = _il.DeclareLocal(typeof(uint));
            _flags = _il.DeclareLocal(typeof(uint));
            _retired = _il.DeclareLocal(typeof(int));
            _eip = _il.DeclareLocal(typeof(uint));
            _pa = _il.DeclareLocal(typeof(uint));
            _pb = _il.DeclareLocal(typeof(uint));
            _epilogue = _il.DefineLabel();

            LoadState();
            bool ended = false;
            for (int k = 0; k < _code.Length && !ended; k++)
            {
                ended = EmitInstruction(k);
            }
            if (!ended)
            {
                Materialize();
                SetExit(_code.Length, _code[^1].NextIP32);
            }

            _il.MarkLabel(_epilogue);
            _uintNext = _longNext = 0;
            StoreState();
            _il.Emit(OpCodes.Ldloc, _eip);
            StoreCtx(EipField);
            _il.Emit(OpCodes.Ldloc, _retired);
            _il.Emit(OpCodes.Ret);
        }

        private void LoadState()
        {
            for (int i = 0; i < 8; i++)
            {
                if (!_usedRegs[i]) continue;
                GprAddress(i);
                _il.Emit(OpCodes.Ldind_U4);
                _il.Emit(OpCodes.Stloc, _regs[i]);
            }
            CtxAddress();
            _il.Emit(OpCodes.Ldfld, EflagsField);
            _il.Emit(OpCodes.Stloc, _flags);
        }

        private void StoreState()
        {
            for (int i = 0; i < 8; i++)
            {
                if (!_usedRegs[i]) continue;
                GprAddress(i);
                _il.Emit(OpCodes.Ldloc, _regs[i]);
                _il.Emit(OpCodes.Stind_I4);
            }
            _il.Emit(OpCodes.Ldloc, _flags);
            StoreCtx(EflagsField);
        }

        private void CtxAddress()
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldflda, CtxField);
        }

        /// <summary>Stores the value on the stack into a uint field of the context.</summary>
        private void StoreCtx(FieldInfo field)
        {
            LocalBuilder value = Temp();
            _il.Emit(OpCodes.Stloc, value);
            CtxAddress();
            _il.Emit(OpCodes.Ldloc, value);
            _il.Emit(OpCodes.Stfld, field);
        }

        private void GprAddress(int i)
        {
            CtxAddress();
            _il.Emit(OpCodes.Ldflda, GprField);
            _il.Emit(OpCodes.Ldflda, GprElement);
            if (i != 0)
            {
                _il.Emit(OpCodes.Ldc_I4, i * 4);
                _il.Emit(OpCodes.Add);
            }
        }

        private LocalBuilder Temp(Type? type = null)
        {
            bool wide = type == typeof(long);
            List<LocalBuilder> pool = wide ? _longTemps : _uintTemps;
            int next = wide ? _longNext++ : _uintNext++;
            if (next == pool.Count)
            {
                pool.Add(_il.DeclareLocal(wide ? typeof(long) : typeof(uint)));
            }
            return pool[next];
        }

        private void SetExit(int retired, uint eip)
        {
            _il.Emit(OpCodes.Ldc_I4, retired);
            _il.Emit(OpCodes.Stloc, _retired);
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)eip));
            _il.Emit(OpCodes.Stloc, _eip);
            _il.Emit(OpCodes.Br, _epilogue);
        }

        /// <summary>Leaves the block before instruction <paramref name="k"/>: flags made whole, EIP on it, k retired.</summary>
        private void Bail(int k)
        {
            EmitMaterialize(_pending, _pendingSize);
            SetExit(k, _code[k].IP32);
        }

        /// <summary>Emits instruction <paramref name="k"/>; true when it ended the block (a branch).</summary>
        private bool EmitInstruction(int k)
        {
            _uintNext = _longNext = 0;
            ref Instruction ins = ref _code[k];
            Operation op = OperationByCode[(int)ins.Code];
            switch (Classify(ref ins))
            {
                case Kind.Interpreted:
                    Interpret(k);
                    return false;
                case Kind.Branch:
                    EmitBranch(k, op);
                    return true;
            }
            switch (op)
            {
                case Operation.Nop:
                    break;
                case Operation.Mov:
                    EmitMov(k);
                    break;
                case Operation.Add or Operation.Adc or Operation.Sub or Operation.Sbb or Operation.And or Operation.Or
                    or Operation.Xor or Operation.Cmp or Operation.Test:
                    EmitBinary(k, op);
                    break;
                case Operation.Inc or Operation.Dec or Operation.Neg or Operation.Not:
                    EmitUnary(k, op);
                    break;
                case Operation.Lea:
                    EmitOffset(ref ins);
                    Mask(RegSize[(int)ins.Op0Register]);
                    WriteReg(ins.Op0Register);
                    break;
                case Operation.Movzx or Operation.Movsx:
                    EmitExtend(k, op == Operation.Movsx);
                    break;
                case Operation.Push:
                    EmitPush(k);
                    break;
                case Operation.Pop:
                    {
                        LocalBuilder host = Translate(k, () => ReadReg(Register.ESP), Sreg.Ss, 4, write: false);
                        Load(host, 4);
                        LocalBuilder value = Temp();
                        _il.Emit(OpCodes.Stloc, value);
                        AddToReg(Register.ESP, 4);
                        _il.Emit(OpCodes.Ldloc, value);
                        WriteReg(ins.Op0Register);
                        break;
                    }
                case Operation.Leave:
                    {
                        LocalBuilder host = Translate(k, () => ReadReg(Register.EBP), Sreg.Ss, 4, write: false);
                        ReadReg(Register.EBP);
                        _il.Emit(OpCodes.Ldc_I4_4);
                        _il.Emit(OpCodes.Add);
                        WriteReg(Register.ESP);
                        Load(host, 4);
                        WriteReg(Register.EBP);
                        break;
                    }
                default:
                    throw new InvalidOperationException($"no translation for {ins.Code}");
            }
            return false;
        }

        private void Interpret(int k)
        {
            Materialize();
            StoreState();
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, k);
            _il.Emit(OpCodes.Ldelema, typeof(Instruction));
            _il.Emit(OpCodes.Call, InterpretMethod);
            // The handler may read or write any register and the flags: every register the block keeps is reloaded.
            LoadState();
        }

        private void EmitMov(int k)
        {
            ref Instruction ins = ref _code[k];
            int size = OperandSize(ref ins);
            if (ins.Op0Kind == OpKind.Memory)
            {
                LocalBuilder host = TranslateOperand(k, size, write: true);
                LocalBuilder value = Temp();
                EmitSource(k, ins.Op1Kind, ins.Op1Register, size, null);
                _il.Emit(OpCodes.Stloc, value);
                Store(host, size, value);
                return;
            }
            LocalBuilder? source = ins.Op1Kind == OpKind.Memory ? TranslateOperand(k, size, write: false) : null;
            EmitSource(k, ins.Op1Kind, ins.Op1Register, size, source);
            WriteReg(ins.Op0Register);
        }

        private void EmitBinary(int k, Operation op)
        {
            ref Instruction ins = ref _code[k];
            int size = OperandSize(ref ins);
            bool writes = op is not (Operation.Cmp or Operation.Test);
            LocalBuilder? destHost = null, sourceHost = null;
            if (ins.Op0Kind == OpKind.Memory)
            {
                destHost = TranslateOperand(k, size, write: false);
                if (writes) destHost = TranslateOperand(k, size, write: true);
            }
            else if (ins.Op1Kind == OpKind.Memory)
            {
                sourceHost = TranslateOperand(k, size, write: false);
            }
            // Nothing can leave the block from here on.
            LocalBuilder a = Temp(), b = Temp(), r = Temp();
            ReadDest(ref ins, size, destHost);
            _il.Emit(OpCodes.Stloc, a);
            EmitSource(k, ins.Op1Kind, ins.Op1Register, size, sourceHost);
            _il.Emit(OpCodes.Stloc, b);
            switch (op)
            {
                case Operation.Adc or Operation.Sbb:
                    {
                        Materialize();
                        _il.Emit(OpCodes.Ldloc, a);
                        _il.Emit(OpCodes.Ldloc, b);
                        _il.Emit(OpCodes.Ldloc, _flags);
                        _il.Emit(OpCodes.Ldc_I4_1);
                        _il.Emit(OpCodes.And);
                        _il.Emit(OpCodes.Ldc_I4, size);
                        _il.Emit(OpCodes.Ldloca, r);
                        _il.Emit(OpCodes.Call, op == Operation.Adc ? AddCarryMethod : SubBorrowMethod);
                        MergeFlags(StatusFlags);
                        break;
                    }
                case Operation.Add or Operation.Sub or Operation.Cmp:
                    _il.Emit(OpCodes.Ldloc, a);
                    _il.Emit(OpCodes.Ldloc, b);
                    _il.Emit(op == Operation.Add ? OpCodes.Add : OpCodes.Sub);
                    Mask(size);
                    _il.Emit(OpCodes.Stloc, r);
                    SetPending(op == Operation.Add ? Pending.Add : Pending.Sub, size, a, b);
                    break;
                default:
                    _il.Emit(OpCodes.Ldloc, a);
                    _il.Emit(OpCodes.Ldloc, b);
                    _il.Emit(op switch { Operation.Or => OpCodes.Or, Operation.Xor => OpCodes.Xor, _ => OpCodes.And });
                    _il.Emit(OpCodes.Stloc, r);
                    SetPending(Pending.Logic, size, r, null);
                    break;
            }
            if (writes)
            {
                WriteDest(ref ins, size, destHost, r);
            }
        }

        private void EmitUnary(int k, Operation op)
        {
            ref Instruction ins = ref _code[k];
            int size = OperandSize(ref ins);
            LocalBuilder? host = null;
            if (ins.Op0Kind == OpKind.Memory)
            {
                host = TranslateOperand(k, size, write: false);
                host = TranslateOperand(k, size, write: true);
            }
            LocalBuilder a = Temp(), r = Temp();
            ReadDest(ref ins, size, host);
            _il.Emit(OpCodes.Stloc, a);
            switch (op)
            {
                case Operation.Inc or Operation.Dec:
                    Materialize(); // INC and DEC keep CF: the flags before them must be whole
                    _il.Emit(OpCodes.Ldloc, a);
                    _il.Emit(OpCodes.Ldc_I4_1);
                    _il.Emit(op == Operation.Inc ? OpCodes.Add : OpCodes.Sub);
                    Mask(size);
                    _il.Emit(OpCodes.Stloc, r);
                    SetPending(op == Operation.Inc ? Pending.Inc : Pending.Dec, size, a, null);
                    break;
                case Operation.Neg:
                    {
                        LocalBuilder zero = Temp();
                        _il.Emit(OpCodes.Ldc_I4_0);
                        _il.Emit(OpCodes.Stloc, zero);
                        _il.Emit(OpCodes.Ldc_I4_0);
                        _il.Emit(OpCodes.Ldloc, a);
                        _il.Emit(OpCodes.Sub);
                        Mask(size);
                        _il.Emit(OpCodes.Stloc, r);
                        SetPending(Pending.Sub, size, zero, a);
                        break;
                    }
                default:
                    _il.Emit(OpCodes.Ldloc, a);
                    _il.Emit(OpCodes.Not);
                    Mask(size);
                    _il.Emit(OpCodes.Stloc, r);
                    break;
            }
            WriteDest(ref ins, size, host, r);
        }

        private void EmitExtend(int k, bool signExtend)
        {
            ref Instruction ins = ref _code[k];
            int sourceSize = ins.Op1Kind == OpKind.Memory ? MemSizeBytes[(int)ins.MemorySize] : RegSize[(int)ins.Op1Register];
            LocalBuilder? host = ins.Op1Kind == OpKind.Memory ? TranslateOperand(k, sourceSize, write: false) : null;
            EmitSource(k, ins.Op1Kind, ins.Op1Register, sourceSize, host);
            if (signExtend)
            {
                _il.Emit(sourceSize == 1 ? OpCodes.Conv_I1 : OpCodes.Conv_I2);
                Mask(RegSize[(int)ins.Op0Register]);
            }
            WriteReg(ins.Op0Register);
        }

        private void EmitPush(int k)
        {
            ref Instruction ins = ref _code[k];
            LocalBuilder value = Temp();
            if (ins.Op0Kind == OpKind.Register)
            {
                ReadReg(ins.Op0Register); // PUSH ESP pushes the value before the decrement
            }
            else
            {
                _il.Emit(OpCodes.Ldc_I4, unchecked((int)Immediate(ref ins, ins.Op0Kind, 4)));
            }
            _il.Emit(OpCodes.Stloc, value);
            PushValue(k, value);
        }

        /// <summary>Pushes a 32-bit value: the slot below ESP is checked first, then written, then ESP moves.</summary>
        private void PushValue(int k, LocalBuilder value)
        {
            LocalBuilder top = Temp();
            ReadReg(Register.ESP);
            _il.Emit(OpCodes.Ldc_I4_4);
            _il.Emit(OpCodes.Sub);
            _il.Emit(OpCodes.Stloc, top);
            LocalBuilder host = Translate(k, () => _il.Emit(OpCodes.Ldloc, top), Sreg.Ss, 4, write: true);
            Store(host, 4, value);
            _il.Emit(OpCodes.Ldloc, top);
            WriteReg(Register.ESP);
        }

        private void EmitBranch(int k, Operation op)
        {
            ref Instruction ins = ref _code[k];
            int retired = k + 1;
            switch (op)
            {
                case Operation.Jcc:
                    {
                        Materialize();
                        Label taken = _il.DefineLabel();
                        _il.Emit(OpCodes.Ldc_I4, (int)ConditionByCode[(int)ins.Code]);
                        _il.Emit(OpCodes.Ldloc, _flags);
                        _il.Emit(OpCodes.Call, ConditionMethod);
                        _il.Emit(OpCodes.Brtrue, taken);
                        SetExit(retired, ins.NextIP32);
                        _il.MarkLabel(taken);
                        SetExit(retired, ins.NearBranch32);
                        return;
                    }
                case Operation.Jmp when ins.Op0Kind == OpKind.NearBranch32:
                    Materialize();
                    SetExit(retired, ins.NearBranch32);
                    return;
                case Operation.Ret:
                    {
                        LocalBuilder host = Translate(k, () => ReadReg(Register.ESP), Sreg.Ss, 4, write: false);
                        Materialize();
                        Load(host, 4);
                        _il.Emit(OpCodes.Stloc, _eip);
                        AddToReg(Register.ESP, 4 + (ins.Code == Code.Retnd_imm16 ? ins.Immediate16 : 0u));
                        Leave(retired);
                        return;
                    }
            }
            // JMP r/m32, CALL rel32, CALL r/m32: the target is read first (CALL [ESP+n] sees the caller's ESP).
            LocalBuilder target = Temp();
            if (ins.Op0Kind == OpKind.NearBranch32)
            {
                _il.Emit(OpCodes.Ldc_I4, unchecked((int)ins.NearBranch32));
            }
            else
            {
                LocalBuilder? host = ins.Op0Kind == OpKind.Memory ? TranslateOperand(k, 4, write: false) : null;
                ReadDest(ref ins, 4, host);
            }
            _il.Emit(OpCodes.Stloc, target);
            if (op == Operation.Call)
            {
                LocalBuilder link = Temp();
                _il.Emit(OpCodes.Ldc_I4, unchecked((int)ins.NextIP32));
                _il.Emit(OpCodes.Stloc, link);
                PushValue(k, link);
            }
            Materialize();
            _il.Emit(OpCodes.Ldloc, target);
            _il.Emit(OpCodes.Stloc, _eip);
            Leave(retired);
        }

        /// <summary>Leaves the block with EIP already in its local.</summary>
        private void Leave(int retired)
        {
            _il.Emit(OpCodes.Ldc_I4, retired);
            _il.Emit(OpCodes.Stloc, _retired);
            _il.Emit(OpCodes.Br, _epilogue);
        }

        // ---- Flags ----

        private void SetPending(Pending kind, int size, LocalBuilder a, LocalBuilder? b)
        {
            _il.Emit(OpCodes.Ldloc, a);
            _il.Emit(OpCodes.Stloc, _pa);
            if (b is not null)
            {
                _il.Emit(OpCodes.Ldloc, b);
                _il.Emit(OpCodes.Stloc, _pb);
            }
            _pending = kind;
            _pendingSize = size;
        }

        /// <summary>Makes the flags local whole on the straight path (the pending flags are computed once, here).</summary>
        private void Materialize()
        {
            EmitMaterialize(_pending, _pendingSize);
            _pending = Pending.None;
        }

        private void EmitMaterialize(Pending pending, int size)
        {
            switch (pending)
            {
                case Pending.None:
                    return;
                case Pending.Add or Pending.Sub:
                    _il.Emit(OpCodes.Ldloc, _pa);
                    _il.Emit(OpCodes.Ldloc, _pb);
                    _il.Emit(OpCodes.Ldc_I4, size);
                    _il.Emit(OpCodes.Call, pending == Pending.Add ? AddStatusMethod : SubStatusMethod);
                    MergeFlags(StatusFlags);
                    return;
                case Pending.Logic:
                    _il.Emit(OpCodes.Ldloc, _pa);
                    _il.Emit(OpCodes.Ldc_I4, size);
                    _il.Emit(OpCodes.Call, LogicStatusMethod);
                    MergeFlags(StatusFlags);
                    return;
                default:
                    // INC/DEC: the flags of an ADD/SUB of 1, CF kept.
                    _il.Emit(OpCodes.Ldloc, _pa);
                    _il.Emit(OpCodes.Ldc_I4_1);
                    _il.Emit(OpCodes.Ldc_I4, size);
                    _il.Emit(OpCodes.Call, pending == Pending.Inc ? AddStatusMethod : SubStatusMethod);
                    MergeFlags(StatusFlags & ~CF);
                    return;
            }
        }

        /// <summary>flags = (flags &amp; ~mask) | (status on the stack &amp; mask).</summary>
        private void MergeFlags(uint mask)
        {
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)mask));
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Ldloc, _flags);
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)~mask));
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Or);
            _il.Emit(OpCodes.Stloc, _flags);
        }

        // ---- Operands ----

        private static int OperandSize(ref Instruction ins) =>
            ins.Op0Kind == OpKind.Register ? RegSize[(int)ins.Op0Register] : MemSizeBytes[(int)ins.MemorySize];

        private void Mask(int size)
        {
            if (size == 4) return;
            _il.Emit(OpCodes.Ldc_I4, (int)SizeMask(size));
            _il.Emit(OpCodes.And);
        }

        /// <summary>Pushes a GPR's value (8- and 16-bit registers zero-extended).</summary>
        private void ReadReg(Register r)
        {
            int i = (int)r;
            int gpr = RegGpr[i];
            System.Diagnostics.Debug.Assert(_usedRegs[gpr], $"{r} is not among the block's registers");
            _il.Emit(OpCodes.Ldloc, _regs[gpr]);
            if (RegShift[i] != 0)
            {
                _il.Emit(OpCodes.Ldc_I4_8);
                _il.Emit(OpCodes.Shr_Un);
            }
            Mask(RegSize[i]);
        }

        /// <summary>Pops a value into a GPR (8- and 16-bit registers merge into their 32-bit register).</summary>
        private void WriteReg(Register r)
        {
            int i = (int)r;
            int gpr = RegGpr[i];
            System.Diagnostics.Debug.Assert(_usedRegs[gpr], $"{r} is not among the block's registers");
            if (RegSize[i] == 4)
            {
                _il.Emit(OpCodes.Stloc, _regs[gpr]);
                return;
            }
            LocalBuilder value = Temp();
            _il.Emit(OpCodes.Stloc, value);
            uint mask = RegMask[i] << RegShift[i];
            _il.Emit(OpCodes.Ldloc, _regs[gpr]);
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)~mask));
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Ldloc, value);
            if (RegShift[i] != 0)
            {
                _il.Emit(OpCodes.Ldc_I4_8);
                _il.Emit(OpCodes.Shl);
            }
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)mask));
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Or);
            _il.Emit(OpCodes.Stloc, _regs[gpr]);
        }

        private void AddToReg(Register r, uint delta)
        {
            ReadReg(r);
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)delta));
            _il.Emit(OpCodes.Add);
            WriteReg(r);
        }

        /// <summary>Pushes the memory operand's offset in its segment: displacement + base + index × scale (32-bit addressing).</summary>
        private void EmitOffset(ref Instruction ins)
        {
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)ins.MemoryDisplacement32));
            if (ins.MemoryBase != Register.None)
            {
                ReadReg(ins.MemoryBase);
                _il.Emit(OpCodes.Add);
            }
            if (ins.MemoryIndex != Register.None)
            {
                ReadReg(ins.MemoryIndex);
                if (ins.MemoryIndexScale != 1)
                {
                    _il.Emit(OpCodes.Ldc_I4, ins.MemoryIndexScale);
                    _il.Emit(OpCodes.Mul);
                }
                _il.Emit(OpCodes.Add);
            }
        }

        private LocalBuilder TranslateOperand(int k, int size, bool write)
        {
            Instruction ins = _code[k];
            return Translate(k, () => EmitOffset(ref ins), (Sreg)(ins.MemorySegment - Register.ES), size, write);
        }

        /// <summary>The host offset of an access at the offset <paramref name="pushOffset"/> pushes, or the block is left before instruction k.</summary>
        private LocalBuilder Translate(int k, Action pushOffset, Sreg segment, int size, bool write)
        {
            LocalBuilder host = Temp(typeof(long));
            Label ok = _il.DefineLabel();
            _il.Emit(OpCodes.Ldarg_0);
            pushOffset();
            _il.Emit(OpCodes.Ldc_I4, (int)segment);
            _il.Emit(OpCodes.Ldc_I4, size);
            _il.Emit(write ? OpCodes.Ldc_I4_1 : OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Call, HostMethod);
            _il.Emit(OpCodes.Stloc, host);
            _il.Emit(OpCodes.Ldloc, host);
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Conv_I8);
            _il.Emit(OpCodes.Bge, ok);
            Bail(k);
            _il.MarkLabel(ok);
            return host;
        }

        private void Load(LocalBuilder host, int size)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldfld, RamField);
            _il.Emit(OpCodes.Ldloc, host);
            _il.Emit(OpCodes.Call, LoadMethods[size >> 1]);
        }

        private void Store(LocalBuilder host, int size, LocalBuilder value)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldfld, RamField);
            _il.Emit(OpCodes.Ldloc, host);
            _il.Emit(OpCodes.Ldloc, value);
            _il.Emit(OpCodes.Call, StoreMethods[size >> 1]);
        }

        private void ReadDest(ref Instruction ins, int size, LocalBuilder? host)
        {
            if (host is not null)
            {
                Load(host, size);
            }
            else
            {
                ReadReg(ins.Op0Register);
            }
        }

        private void WriteDest(ref Instruction ins, int size, LocalBuilder? host, LocalBuilder value)
        {
            if (host is not null)
            {
                Store(host, size, value);
            }
            else
            {
                _il.Emit(OpCodes.Ldloc, value);
                WriteReg(ins.Op0Register);
            }
        }

        /// <summary>Pushes a source operand: a register, an immediate masked to the size, or memory already translated.</summary>
        private void EmitSource(int k, OpKind kind, Register reg, int size, LocalBuilder? host)
        {
            ref Instruction ins = ref _code[k];
            switch (kind)
            {
                case OpKind.Register:
                    ReadReg(reg);
                    break;
                case OpKind.Memory:
                    Load(host!, size);
                    break;
                default:
                    _il.Emit(OpCodes.Ldc_I4, unchecked((int)Immediate(ref ins, kind, size)));
                    break;
            }
        }

        private static uint Immediate(ref Instruction ins, OpKind kind, int size) => kind switch
        {
            OpKind.Immediate8 => ins.Immediate8,
            OpKind.Immediate16 => ins.Immediate16,
            OpKind.Immediate32 => ins.Immediate32,
            OpKind.Immediate8to16 => (ushort)ins.Immediate8to16,
            OpKind.Immediate8to32 => (uint)ins.Immediate8to32,
            _ => 0,
        } & SizeMask(size);
    }
}
