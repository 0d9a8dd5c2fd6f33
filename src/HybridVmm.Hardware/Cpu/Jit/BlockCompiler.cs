using System.Reflection;
using System.Runtime.CompilerServices;
using System.Reflection.Emit;
using Iced.Intel;
using Label = System.Reflection.Emit.Label;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// A translated block: runs at most <paramref name="budget"/> instructions, returns the number it retired and leaves EIP
/// on the next one to run.
/// </summary>
internal delegate int BlockCode(X86Core core, Instruction[] code, int budget);

/// <summary>
/// One translated block: straight-line cached instructions of one code page, ending at a branch, a call, a return, or
/// before the first instruction the translator leaves to the interpreter. <see cref="Refused"/> marks a start the
/// translator cannot take, so it is not tried again.
/// </summary>
internal sealed class JitBlock(BlockCode? code, Instruction[] instructions)
{
    public static readonly JitBlock Refused = new(null, []);

    /// <summary>Marks a start whose block is being compiled in the background: the interpreter runs it meanwhile.</summary>
    public static readonly JitBlock Pending = new(null, []);

    /// <summary>
    /// Marks the other instructions of a block being compiled in the background: while the interpreter runs them, they
    /// must not become the starts of blocks of their own (the installed block goes over them). Cleared on install.
    /// </summary>
    public static readonly JitBlock Covered = new(null, []);

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
        private static readonly FieldInfo FastTlbField = Field(typeof(X86Core), nameof(_fastTlbBase));
        private static readonly FieldInfo NonFlatField = Field(typeof(X86Core), nameof(_nonFlatSegments));
        private static readonly FieldInfo GprField = Field(typeof(CpuContext), nameof(CpuContext.Gpr));
        private static readonly FieldInfo GprElement = Field(typeof(GprFile), "_element");
        private static readonly FieldInfo EflagsField = Field(typeof(CpuContext), nameof(CpuContext.Eflags));
        private static readonly FieldInfo EipField = Field(typeof(CpuContext), nameof(CpuContext.Eip));
        private static readonly MethodInfo HostMethod = Method(nameof(JitHost));
        private static readonly MethodInfo InterpretMethod = Method(nameof(JitInterpret));
        private static readonly MethodInfo FlagsMethod = Method(nameof(JitFlags));
        private static readonly MethodInfo AddCarryMethod = Method(nameof(JitAddCarry));
        private static readonly MethodInfo SubBorrowMethod = Method(nameof(JitSubBorrow));
        private static readonly MethodInfo ShiftMethod = Method(nameof(JitShift));
        private static readonly MethodInfo ImulMethod = Method(nameof(JitImul));
        private static readonly MethodInfo ConditionMethod = Method(nameof(JitCondition));
        private static readonly MethodInfo TimeStampMethod = Method(nameof(JitTimeStamp));
        private static readonly MethodInfo TakeLazyFlagsMethod = Method(nameof(JitTakeLazyFlags));
        private static readonly FieldInfo LazyOpField = Field(typeof(X86Core), nameof(_lazyOp));
        private static readonly FieldInfo LazyAField = Field(typeof(X86Core), nameof(_lazyA));
        private static readonly FieldInfo LazyBField = Field(typeof(X86Core), nameof(_lazyB));
        private static readonly MethodInfo TscAuxMethod = Method(nameof(JitTscAux));

        /// <summary>
        /// How a block takes an instruction: translated to IL, as its last (a branch), through the interpreter's handler
        /// (register-only forms), or through the handler after the block has checked its memory operand as it checks
        /// its own accesses (InterpretedMemory: the handler then cannot fault or exit), or through the handler after
        /// the block has checked the stack slot it pops, as the block's last instruction (PopFlags: POPFD, which may set
        /// IF, TF or AC, so that the run loop looks at events, single-stepping and the access rights before the next
        /// instruction).
        /// </summary>
        private enum Kind : byte { Refused, Translated, Branch, Interpreted, InterpretedMemory, PopFlags }

        /// <summary>The flag-writing operation whose flags are not computed yet (numbered as <see cref="JitFlags"/> takes them).</summary>
        private enum Pending : byte { None, Add, Sub, Logic, Inc, Dec, Szp }

        private readonly Instruction[] _code;
        private readonly bool[] _usedRegs, _writtenRegs;
        // Temporaries live within one instruction: each instruction reuses the same locals (declaring locals is what
        // compiling costs most, after RyuJIT itself).
        private readonly List<LocalBuilder> _uintTemps = new(), _longTemps = new();
        private int _uintNext, _longNext;
        private ILGenerator _il = null!;
        private LocalBuilder[] _regs = null!;
        private LocalBuilder _flags = null!, _retired = null!, _eip = null!, _pa = null!, _pb = null!, _ram = null!, _base = null!, _gprs = null!;
        // The translator's TLB and the segments that are not flat (Jit/X86Core.JitTlb.cs), loaded on entry when the block
        // accesses memory (neither changes inside a block).
        private LocalBuilder? _fastTlb, _nonFlat, _fastEntry;
        private Label _epilogue, _top;
        private Pending _pending;
        private int _pendingSize;
        // The block reads the status flags before it writes them all (it takes the flags a previous block left pending,
        // at its entry), and, while emitting, whether it has read or written them yet (see EmitLazyExit).
        private readonly bool _liveIn;
        private bool _flagsTouched;

        private BlockCompiler(Instruction[] code)
        {
            _code = code;
            (_usedRegs, _writtenRegs) = Registers(code);
            _liveIn = _flagsTouched = FlagsLiveIn(code);
        }

        private static FieldInfo Field(Type type, string name) =>
            type.GetField(name, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)
            ?? throw new MissingFieldException(type.Name, name);

        private static MethodInfo Method(string name) =>
            typeof(X86Core).GetMethod(name, BindingFlags.Instance | BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
            ?? throw new MissingMethodException(nameof(X86Core), name);

        /// <summary>
        /// The instructions of the block that starts at <paramref name="slot"/>, copied out of the page (so that compiling
        /// them needs nothing of the page), or null when the translator takes none.
        /// </summary>
        public static Instruction[]? Form(CodePage page, int slot)
        {
            if (page.Code16)
            {
                return null;
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
                uint next = ins.NextIP32;
                if (kind == Kind.PopFlags)
                {
                    break;
                }
                if (kind == Kind.Branch)
                {
                    // A superblock: past a conditional branch on its fall-through (the taken side leaves the block),
                    // and past a direct JMP or CALL at its target, as long as the code is on this page and decoded.
                    Operation op = OperationByCode[(int)ins.Code];
                    if (ins.Op0Kind != OpKind.NearBranch32 || op is not (Operation.Jcc or Operation.Jmp or Operation.Call))
                    {
                        break;
                    }
                    if (op != Operation.Jcc || HotterTarget(page, ref ins))
                    {
                        next = ins.NearBranch32;
                    }
                    if (list.Exists(listed => listed.IP32 == next))
                    {
                        break; // a loop: the block ends on the branch (back to its start, it loops inside the block)
                    }
                }
                uint linear = next + page.CsBase;
                if ((linear & ~PageOffsetMask) != page.LinearBase || page.Index[linear & PageOffsetMask] == 0)
                {
                    break; // the next instruction is on another page, or not decoded yet
                }
                slot = page.Index[linear & PageOffsetMask] - 1;
            }
            return list.Count == 0 ? null : list.ToArray();
        }

        /// <summary>
        /// Whether a superblock goes on at a conditional branch's target rather than its fall-through: the one the
        /// interpreter started more often before the block was compiled (the other side leaves the block).
        /// </summary>
        private static bool HotterTarget(CodePage page, ref Instruction jcc)
        {
            int taken = SlotOf(page, jcc.NearBranch32), fallThrough = SlotOf(page, jcc.NextIP32);
            return taken >= 0 && (fallThrough < 0 || page.Heat[taken] > page.Heat[fallThrough]);
        }

        /// <summary>The slot of the decoded instruction at <paramref name="eip"/> on this page, or -1.</summary>
        private static int SlotOf(CodePage page, uint eip)
        {
            uint linear = eip + page.CsBase;
            return (linear & ~PageOffsetMask) == page.LinearBase ? page.Index[linear & PageOffsetMask] - 1 : -1;
        }

        /// <summary>Compiles the instructions <see cref="Form"/> chose: IL, then RyuJIT's host code.</summary>
        public static JitBlock Compile(Instruction[] code)
        {
            // The first parameter is a placeholder the delegate is closed over (null): a delegate over a static method
            // with all of its parameters open goes through a shuffle thunk on every call.
            var method = new DynamicMethod($"block_{code[0].IP32:x8}", typeof(int), [typeof(object), typeof(X86Core), typeof(Instruction[]), typeof(int)],
                typeof(X86Core), skipVisibility: true);
            new BlockCompiler(code).Emit(method);
            var compiled = (BlockCode)method.CreateDelegate(typeof(BlockCode), null);
            // RyuJIT compiles it now rather than on its first call, so the cost is counted where it belongs.
            RuntimeHelpers.PrepareDelegate(compiled);
            return new JitBlock(compiled, code);
        }

        /// <summary>
        /// The GPRs the translated instructions read or write (the block keeps these in locals), and those they write
        /// (the only ones stored back).
        /// </summary>
        private static (bool[] Used, bool[] Written) Registers(Instruction[] code)
        {
            var used = new bool[8];
            var written = new bool[8];
            foreach (Instruction ins in code)
            {
                Operation op = OperationByCode[(int)ins.Code];
                Kind kind = Classify(ref Unsafe.AsRef(in ins));
                if (op == Operation.Nop || kind == Kind.Interpreted)
                {
                    continue; // nothing, or the interpreter's handler on the context
                }
                if (kind == Kind.PopFlags || op == Operation.Pushf)
                {
                    used[(int)Gpr.Esp] = true; // the stack slot is checked (POPFD) or written (PUSHFD) by the block
                    written[(int)Gpr.Esp] |= op == Operation.Pushf;
                    continue;
                }
                if (kind == Kind.InterpretedMemory)
                {
                    // The block computes the operand's address to check it; the handler does the rest on the context.
                    if (ins.MemoryBase != Register.None) used[RegGpr[(int)ins.MemoryBase]] = true;
                    if (ins.MemoryIndex != Register.None) used[RegGpr[(int)ins.MemoryIndex]] = true;
                    continue;
                }
                if (op is Operation.Cbw or Operation.Cwde)
                {
                    used[(int)Gpr.Eax] = written[(int)Gpr.Eax] = true;
                    continue;
                }
                if (op is Operation.Cwd or Operation.Cdq)
                {
                    used[(int)Gpr.Eax] = used[(int)Gpr.Edx] = written[(int)Gpr.Edx] = true;
                    continue;
                }
                if (op == Operation.Xchg)
                {
                    used[RegGpr[(int)ins.Op0Register]] = written[RegGpr[(int)ins.Op0Register]] = true;
                    used[RegGpr[(int)ins.Op1Register]] = written[RegGpr[(int)ins.Op1Register]] = true;
                    continue;
                }
                if (op is Operation.Rdtsc or Operation.Rdtscp)
                {
                    used[(int)Gpr.Eax] = used[(int)Gpr.Edx] = written[(int)Gpr.Eax] = written[(int)Gpr.Edx] = true;
                    if (op == Operation.Rdtscp) used[(int)Gpr.Ecx] = written[(int)Gpr.Ecx] = true;
                    continue;
                }
                if (ins.Op0Kind == OpKind.Register && IsGpr(ins.Op0Register)
                    && op is not (Operation.Cmp or Operation.Test or Operation.Push or Operation.Jmp or Operation.Call))
                {
                    written[RegGpr[(int)ins.Op0Register]] = true;
                }
                if (op is Operation.Push or Operation.Pop or Operation.Call or Operation.Ret or Operation.Leave)
                {
                    written[(int)Gpr.Esp] = true;
                }
                if (op == Operation.Leave)
                {
                    written[(int)Gpr.Ebp] = true;
                }
                for (int i = 0; i < ins.OpCount; i++)
                {
                    OpKind operand = ins.GetOpKind(i);
                    if (operand == OpKind.Register && IsGpr(ins.GetOpRegister(i)))
                    {
                        used[RegGpr[(int)ins.GetOpRegister(i)]] = true;
                    }
                    else if (operand == OpKind.Memory)
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
            return (used, written);
        }

        /// <summary>
        /// Whether the block reads a status flag before an instruction that writes them all: a condition, ADC/SBB,
        /// INC/DEC (which keep CF) or an interpreter handler first; ADD, SUB, CMP, NEG, AND, OR, XOR or TEST first
        /// make the flags before the block dead.
        /// </summary>
        private static bool FlagsLiveIn(Instruction[] code)
        {
            foreach (Instruction ins in code)
            {
                Kind kind = Classify(ref Unsafe.AsRef(in ins));
                if (kind is Kind.Interpreted or Kind.InterpretedMemory or Kind.PopFlags || ins.Code == Code.Pushfd)
                {
                    return true;
                }
                switch (OperationByCode[(int)ins.Code])
                {
                    case Operation.Jcc or Operation.Adc or Operation.Sbb or Operation.Inc or Operation.Dec or Operation.Setcc
                        or Operation.Cmovcc or Operation.Rol or Operation.Ror or Operation.Rcl or Operation.Rcr:
                        return true;
                    case Operation.Shl or Operation.Shr or Operation.Sar:
                        return !WritesAllStatus(ref Unsafe.AsRef(in ins)); // by CL: a count of 0 keeps the flags
                    case Operation.Imul:
                        return false; // the two- and three-operand forms (the one-operand form is interpreted)
                    case Operation.Add or Operation.Sub or Operation.Cmp or Operation.Neg or Operation.And or Operation.Or
                        or Operation.Xor or Operation.Test:
                        return false;
                }
            }
            return false;
        }

        // ---- Which instructions a block takes ----

        private static Kind Classify(ref Instruction ins)
        {
            Operation op = OperationByCode[(int)ins.Code];
            if (!OperandsTranslatable(ref ins))
            {
                return Kind.Refused;
            }
            if (TranslatedNatively(ref ins, op))
            {
                return Kind.Translated;
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
                    // The interpreter's handler, in the middle of the block: register forms, and memory forms whose one
                    // access is the operand itself (not BT's bit string past it), checked first by the block.
                    if (!HasMemoryOperand(ref ins))
                    {
                        return Kind.Interpreted;
                    }
                    return op is Operation.Bt or Operation.Bts or Operation.Btr or Operation.Btc && ins.Op1Kind != OpKind.Immediate8
                        || MemSizeBytes[(int)ins.MemorySize] == 0 ? Kind.Refused : Kind.InterpretedMemory;
                case Operation.Rdtsc or Operation.Rdtscp:
                    return Kind.Translated;
                case Operation.Pushf:
                    return ins.Code == Code.Pushfd ? Kind.Translated : Kind.Refused;
                case Operation.Popf:
                    return ins.Code == Code.Popfd ? Kind.PopFlags : Kind.Refused;
                default:
                    return Kind.Refused;
            }
        }

        /// <summary>
        /// Forms of the instructions the interpreter otherwise runs in the middle of a block that the block translates
        /// itself: shifts and rotates by an immediate or CL, IMUL's two- and three-operand forms (both through one
        /// helper call that shares the interpreter's arithmetic), SETcc, CMOVcc, CBW/CWDE/CWD/CDQ and XCHG of two
        /// registers. They cost no store and reload of the registers, and SETcc and CMOVcc decide their condition
        /// from the pending operation as a branch does.
        /// </summary>
        private static bool TranslatedNatively(ref Instruction ins, Operation op) => op switch
        {
            Operation.Rol or Operation.Ror or Operation.Rcl or Operation.Rcr or Operation.Shl or Operation.Shr or Operation.Sar =>
                IsGprOrMemory(ins.Op0Kind, ins.Op0Register)
                && (ins.Op1Kind == OpKind.Immediate8 ? (ins.Immediate8 & 0x1f) != 0 : ins.Op1Kind == OpKind.Register && ins.Op1Register == Register.CL),
            Operation.Imul => ins.OpCount >= 2 && IsGpr(ins.Op0Register) && IsGprOrMemory(ins.Op1Kind, ins.Op1Register),
            Operation.Setcc => IsGprOrMemory(ins.Op0Kind, ins.Op0Register),
            Operation.Cmovcc => IsGpr(ins.Op0Register) && IsGprOrMemory(ins.Op1Kind, ins.Op1Register),
            Operation.Cbw or Operation.Cwde or Operation.Cwd or Operation.Cdq => true,
            Operation.Xchg => ins.Op0Kind == OpKind.Register && ins.Op1Kind == OpKind.Register && IsGpr(ins.Op0Register) && IsGpr(ins.Op1Register),
            _ => false,
        };

        /// <summary>SHL, SHR or SAR by a non-zero immediate: every status flag is written (by CL, a count of 0 keeps them).</summary>
        private static bool WritesAllStatus(ref Instruction ins) => ins.Op1Kind == OpKind.Immediate8;

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
            _ram = _il.DeclareLocal(typeof(byte*));
            _gprs = _il.DeclareLocal(typeof(uint).MakeByRefType());
            _base = _il.DeclareLocal(typeof(int));
            _epilogue = _il.DefineLabel();
            _top = _il.DefineLabel();

            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldfld, RamField);
            _il.Emit(OpCodes.Stloc, _ram);
            if (AccessesMemory(_code))
            {
                _fastTlb = _il.DeclareLocal(typeof(byte*));
                _fastEntry = _il.DeclareLocal(typeof(byte*));
                _nonFlat = _il.DeclareLocal(typeof(int));
                _il.Emit(OpCodes.Ldarg_1);
                _il.Emit(OpCodes.Ldfld, FastTlbField);
                _il.Emit(OpCodes.Stloc, _fastTlb);
                _il.Emit(OpCodes.Ldarg_1);
                _il.Emit(OpCodes.Ldfld, NonFlatField);
                _il.Emit(OpCodes.Stloc, _nonFlat);
            }
            // One reference to EAX's slot, so that each register costs the JIT a load and an add, not three field
            // look-ups (compiling, not running, is what a block costs most).
            CtxAddress();
            _il.Emit(OpCodes.Ldflda, GprField);
            _il.Emit(OpCodes.Ldflda, GprElement);
            _il.Emit(OpCodes.Stloc, _gprs);
            LoadState();
            if (_liveIn)
            {
                // The flags the block before left pending (RunBlocks chains blocks without computing them).
                _il.Emit(OpCodes.Ldarg_1);
                _il.Emit(OpCodes.Ldloc, _flags);
                _il.Emit(OpCodes.Call, TakeLazyFlagsMethod);
                _il.Emit(OpCodes.Stloc, _flags);
            }
            _il.MarkLabel(_top); // a block that branches back to its own start loops here while the budget allows
            bool ended = false;
            for (int k = 0; k < _code.Length && !ended; k++)
            {
                ended = EmitInstruction(k);
            }
            if (!ended)
            {
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

        /// <summary>Stores the registers the block writes, and the flags, into the context.</summary>
        private void StoreState()
        {
            for (int i = 0; i < 8; i++)
            {
                if (!_writtenRegs[i]) continue;
                GprAddress(i);
                _il.Emit(OpCodes.Ldloc, _regs[i]);
                _il.Emit(OpCodes.Stind_I4);
            }
            _il.Emit(OpCodes.Ldloc, _flags);
            StoreCtx(EflagsField);
        }

        private void CtxAddress()
        {
            _il.Emit(OpCodes.Ldarg_1);
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

        /// <summary>The address of GPR <paramref name="i"/> in the context, from the block's reference to the first.</summary>
        private void GprAddress(int i)
        {
            _il.Emit(OpCodes.Ldloc, _gprs);
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

        /// <summary>Leaves the block on <paramref name="eip"/>, with <paramref name="retired"/> instructions of this pass retired.</summary>
        private void SetExit(int retired, uint eip)
        {
            EmitLazyExit();
            SetRetired(retired);
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)eip));
            _il.Emit(OpCodes.Stloc, _eip);
            _il.Emit(OpCodes.Br, _epilogue);
        }

        /// <summary>Leaves the block before instruction <paramref name="k"/>: EIP on it, k retired.</summary>
        private void Bail(int k) => SetExit(k, _code[k].IP32);

        /// <summary>
        /// On a way out: the pending operation, if any, goes to the core's lazy-flags fields instead of being computed
        /// (the next block in RunBlocks may overwrite the flags; RunBlocks computes them before anything else runs). A way
        /// out before the block has read or written the flags leaves those fields as the block before left them.
        /// </summary>
        private void EmitLazyExit()
        {
            if (!_flagsTouched)
            {
                return;
            }
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, _pending == Pending.None ? 0 : (int)_pending | _pendingSize << 8);
            _il.Emit(OpCodes.Stfld, LazyOpField);
            if (_pending == Pending.None)
            {
                return;
            }
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldloc, _pa);
            _il.Emit(OpCodes.Stfld, LazyAField);
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldloc, _pb);
            _il.Emit(OpCodes.Stfld, LazyBField);
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
                case Kind.InterpretedMemory:
                    // The operand must be RAM the block could access itself, writable unless the instruction only reads it.
                    TranslateOperand(k, MemSizeBytes[(int)ins.MemorySize], write: !ReadsMemoryOnly(op));
                    Interpret(k);
                    return false;
                case Kind.Branch:
                    EmitBranch(k, op);
                    return k == _code.Length - 1;
                case Kind.PopFlags:
                    // The slot POPFD reads must be RAM the block could read itself; then the handler, and the block ends.
                    Translate(k, () => ReadReg(Register.ESP), Sreg.Ss, 4, write: false);
                    Interpret(k);
                    SetExit(k + 1, ins.NextIP32);
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
                case Operation.Rdtsc or Operation.Rdtscp:
                    EmitTimeStamp(k, op == Operation.Rdtscp);
                    break;
                case Operation.Rol or Operation.Ror or Operation.Rcl or Operation.Rcr or Operation.Shl or Operation.Shr or Operation.Sar:
                    EmitShift(k, op);
                    break;
                case Operation.Imul:
                    EmitImul(k);
                    break;
                case Operation.Setcc:
                    {
                        LocalBuilder? host = ins.Op0Kind == OpKind.Memory ? TranslateOperand(k, 1, write: true) : null;
                        LocalBuilder value = Temp();
                        EmitCondition(ConditionByCode[(int)ins.Code]);
                        _il.Emit(OpCodes.Stloc, value);
                        WriteDest(ref ins, 1, host, value);
                        break;
                    }
                case Operation.Cmovcc:
                    EmitCmov(k);
                    break;
                case Operation.Cbw or Operation.Cwde or Operation.Cwd or Operation.Cdq:
                    EmitConvert(op);
                    break;
                case Operation.Xchg:
                    {
                        LocalBuilder a = Temp(), b = Temp();
                        ReadReg(ins.Op0Register);
                        _il.Emit(OpCodes.Stloc, a);
                        ReadReg(ins.Op1Register);
                        _il.Emit(OpCodes.Stloc, b);
                        _il.Emit(OpCodes.Ldloc, b);
                        WriteReg(ins.Op0Register);
                        _il.Emit(OpCodes.Ldloc, a);
                        WriteReg(ins.Op1Register);
                        break;
                    }
                case Operation.Push:
                    EmitPush(k);
                    break;
                case Operation.Pushf:
                    {
                        // PUSHFD: EFLAGS whole, with VM and RF stored cleared (SDM Vol. 2B, PUSHF).
                        Materialize();
                        _flagsTouched = true;
                        LocalBuilder value = Temp();
                        _il.Emit(OpCodes.Ldloc, _flags);
                        _il.Emit(OpCodes.Ldc_I4, 0x00fc_ffff);
                        _il.Emit(OpCodes.And);
                        _il.Emit(OpCodes.Stloc, value);
                        PushValue(k, value);
                        break;
                    }
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

        /// <summary>Memory forms that read their operand and never write it (the others are checked as writes).</summary>
        private static bool ReadsMemoryOnly(Operation op) => op is Operation.Mul or Operation.Imul or Operation.Bt or Operation.Bsf
            or Operation.Bsr or Operation.Cmovcc;

        /// <summary>
        /// RDTSC and RDTSCP: the counter at this instruction is the core's count at the block's entry plus the instructions
        /// the block has retired before it (the run loop adds them only when the block returns).
        /// </summary>
        private void EmitTimeStamp(int k, bool auxiliary)
        {
            LocalBuilder tsc = Temp(typeof(long));
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldloc, _base);
            _il.Emit(OpCodes.Ldc_I4, k);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Call, TimeStampMethod);
            _il.Emit(OpCodes.Stloc, tsc);
            _il.Emit(OpCodes.Ldloc, tsc);
            _il.Emit(OpCodes.Conv_U4);
            WriteReg(Register.EAX);
            _il.Emit(OpCodes.Ldloc, tsc);
            _il.Emit(OpCodes.Ldc_I4, 32);
            _il.Emit(OpCodes.Shr_Un);
            _il.Emit(OpCodes.Conv_U4);
            WriteReg(Register.EDX);
            if (auxiliary)
            {
                _il.Emit(OpCodes.Ldarg_1);
                _il.Emit(OpCodes.Call, TscAuxMethod);
                WriteReg(Register.ECX);
            }
        }

        private void Interpret(int k)
        {
            Materialize();
            _flagsTouched = true;
            StoreState();
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldarg_2);
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
                        MaterializeCarry(); // ADC and SBB read CF and write every status flag
                        _il.Emit(OpCodes.Ldloc, a);
                        _il.Emit(OpCodes.Ldloc, b);
                        _il.Emit(OpCodes.Ldloc, _flags);
                        _il.Emit(OpCodes.Ldc_I4_1);
                        _il.Emit(OpCodes.And);
                        _il.Emit(OpCodes.Ldc_I4, size);
                        _il.Emit(OpCodes.Ldloca, r);
                        _il.Emit(OpCodes.Call, op == Operation.Adc ? AddCarryMethod : SubBorrowMethod);
                        MergeFlags(StatusFlags);
                        _pending = Pending.None;
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
            LocalBuilder? host = TranslateDestination(k, size);
            LocalBuilder a = Temp(), r = Temp();
            ReadDest(ref ins, size, host);
            _il.Emit(OpCodes.Stloc, a);
            switch (op)
            {
                case Operation.Inc or Operation.Dec:
                    MaterializeCarry(); // INC and DEC keep CF and write the other status flags
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

        /// <summary>
        /// A shift or rotate through <see cref="JitShift"/>. The flags it is given must be whole, except for SHL, SHR and
        /// SAR by an immediate, which write every status flag: the pending operation is then dropped, never computed.
        /// </summary>
        private void EmitShift(int k, Operation op)
        {
            ref Instruction ins = ref _code[k];
            int size = OperandSize(ref ins);
            LocalBuilder? host = TranslateDestination(k, size);
            bool writesAll = op is Operation.Shl or Operation.Shr or Operation.Sar && WritesAllStatus(ref ins);
            if (writesAll && (ins.Immediate8 & 0x1f) < size * 8)
            {
                EmitShiftInline(ref ins, op, size, host);
                return;
            }
            if (!writesAll)
            {
                Materialize();
            }
            _il.Emit(OpCodes.Ldc_I4, (int)op);
            ReadDest(ref ins, size, host);
            if (ins.Op1Kind == OpKind.Register)
            {
                ReadReg(Register.CL);
            }
            else
            {
                _il.Emit(OpCodes.Ldc_I4, (int)ins.Immediate8);
            }
            _il.Emit(OpCodes.Ldc_I4, size);
            _il.Emit(OpCodes.Ldloc, _flags);
            _il.Emit(OpCodes.Call, ShiftMethod);
            WriteDest(ref ins, size, host, TakeResultAndFlags());
        }

        /// <summary>
        /// SHL, SHR or SAR by an immediate below the operand's width, inline: the result, and CF and OF as
        /// <see cref="ShiftResult"/> computes them, kept for the flags (Pending.Szp) rather than computed whole.
        /// </summary>
        private void EmitShiftInline(ref Instruction ins, Operation op, int size, LocalBuilder? host)
        {
            int n = ins.Immediate8 & 0x1f, bits = size * 8;
            LocalBuilder a = Temp(), r = Temp(), extra = Temp();
            ReadDest(ref ins, size, host);
            _il.Emit(OpCodes.Stloc, a);
            if (op == Operation.Sar)
            {
                // The operand sign-extended to 32 bits, then shifted arithmetically.
                _il.Emit(OpCodes.Ldloc, a);
                if (size != 4) _il.Emit(size == 1 ? OpCodes.Conv_I1 : OpCodes.Conv_I2);
                _il.Emit(OpCodes.Stloc, a);
            }
            OpCode shift = op switch { Operation.Shl => OpCodes.Shl, Operation.Shr => OpCodes.Shr_Un, _ => OpCodes.Shr };
            _il.Emit(OpCodes.Ldloc, a);
            _il.Emit(OpCodes.Ldc_I4, n);
            _il.Emit(shift);
            Mask(size);
            _il.Emit(OpCodes.Stloc, r);
            // CF: the last bit shifted out.
            _il.Emit(OpCodes.Ldloc, a);
            _il.Emit(OpCodes.Ldc_I4, op == Operation.Shl ? bits - n : n - 1);
            _il.Emit(op == Operation.Shl ? OpCodes.Shr_Un : shift);
            _il.Emit(OpCodes.Ldc_I4_1);
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Stloc, extra);
            // OF: SHL, the result's sign against CF; SHR by 1, the operand's sign; otherwise 0.
            if (op == Operation.Shl || (op == Operation.Shr && n == 1))
            {
                _il.Emit(OpCodes.Ldloc, op == Operation.Shl ? r : a);
                SignOf(size);
                if (op == Operation.Shl)
                {
                    _il.Emit(OpCodes.Ldloc, extra);
                    _il.Emit(OpCodes.Xor);
                }
                _il.Emit(OpCodes.Ldc_I4, 11); // OF is bit 11
                _il.Emit(OpCodes.Shl);
                _il.Emit(OpCodes.Ldloc, extra);
                _il.Emit(OpCodes.Or);
                _il.Emit(OpCodes.Stloc, extra);
            }
            SetPending(Pending.Szp, size, r, extra);
            WriteDest(ref ins, size, host, r);
        }

        /// <summary>
        /// IMUL r, r/m (, imm): the 32-bit form inline, its CF and OF (the product does not fit) kept for the flags
        /// (Pending.Szp); the 16-bit form through <see cref="JitImul"/>. Both write every status flag.
        /// </summary>
        private void EmitImul(int k)
        {
            ref Instruction ins = ref _code[k];
            int size = RegSize[(int)ins.Op0Register];
            LocalBuilder? host = ins.Op1Kind == OpKind.Memory ? TranslateOperand(k, size, write: false) : null;
            if (size == 4)
            {
                LocalBuilder product = Temp(typeof(long)), r = Temp(), extra = Temp();
                EmitSource(k, ins.Op1Kind, ins.Op1Register, size, host);
                _il.Emit(OpCodes.Conv_I8);
                if (ins.OpCount == 3)
                {
                    _il.Emit(OpCodes.Ldc_I4, unchecked((int)Immediate(ref ins, ins.Op2Kind, size)));
                }
                else
                {
                    ReadReg(ins.Op0Register);
                }
                _il.Emit(OpCodes.Conv_I8);
                _il.Emit(OpCodes.Mul);
                _il.Emit(OpCodes.Stloc, product);
                _il.Emit(OpCodes.Ldloc, product);
                _il.Emit(OpCodes.Conv_U4);
                _il.Emit(OpCodes.Stloc, r);
                // CF = OF = the product differs from its low half sign-extended.
                _il.Emit(OpCodes.Ldloc, product);
                _il.Emit(OpCodes.Ldloc, r);
                _il.Emit(OpCodes.Conv_I8);
                _il.Emit(OpCodes.Ceq);
                Not();
                _il.Emit(OpCodes.Ldc_I4, unchecked((int)(CF | OF)));
                _il.Emit(OpCodes.Mul);
                _il.Emit(OpCodes.Stloc, extra);
                SetPending(Pending.Szp, 4, r, extra);
                _il.Emit(OpCodes.Ldloc, r);
                WriteReg(ins.Op0Register);
                return;
            }
            EmitSource(k, ins.Op1Kind, ins.Op1Register, size, host);
            if (ins.OpCount == 3)
            {
                _il.Emit(OpCodes.Ldc_I4, unchecked((int)Immediate(ref ins, ins.Op2Kind, size)));
            }
            else
            {
                ReadReg(ins.Op0Register);
            }
            _il.Emit(OpCodes.Ldc_I4, size);
            _il.Emit(OpCodes.Ldloc, _flags);
            _il.Emit(OpCodes.Call, ImulMethod);
            _il.Emit(OpCodes.Ldloc, TakeResultAndFlags());
            WriteReg(ins.Op0Register);
        }

        /// <summary>Splits a helper's packed result on the stack: the flags (whole) into the flags local, the result into a temporary.</summary>
        private LocalBuilder TakeResultAndFlags()
        {
            LocalBuilder packed = Temp(typeof(long)), result = Temp();
            _il.Emit(OpCodes.Stloc, packed);
            _il.Emit(OpCodes.Ldloc, packed);
            _il.Emit(OpCodes.Conv_U4);
            _il.Emit(OpCodes.Stloc, result);
            _il.Emit(OpCodes.Ldloc, packed);
            _il.Emit(OpCodes.Ldc_I4, 32);
            _il.Emit(OpCodes.Shr_Un);
            _il.Emit(OpCodes.Conv_U4);
            _il.Emit(OpCodes.Stloc, _flags);
            _pending = Pending.None;
            _flagsTouched = true;
            return result;
        }

        /// <summary>CMOVcc: the source is read whatever the condition (a bad address leaves the block, as it faults).</summary>
        private void EmitCmov(int k)
        {
            ref Instruction ins = ref _code[k];
            int size = RegSize[(int)ins.Op0Register];
            LocalBuilder? host = ins.Op1Kind == OpKind.Memory ? TranslateOperand(k, size, write: false) : null;
            LocalBuilder value = Temp();
            EmitSource(k, ins.Op1Kind, ins.Op1Register, size, host);
            _il.Emit(OpCodes.Stloc, value);
            Label skip = _il.DefineLabel();
            EmitCondition(ConditionByCode[(int)ins.Code]);
            _il.Emit(OpCodes.Brfalse, skip);
            _il.Emit(OpCodes.Ldloc, value);
            WriteReg(ins.Op0Register);
            _il.MarkLabel(skip);
        }

        /// <summary>CBW, CWDE, CWD and CDQ: AL, AX or EAX sign-extended into AX, EAX, DX or EDX.</summary>
        private void EmitConvert(Operation op)
        {
            switch (op)
            {
                case Operation.Cbw:
                    ReadReg(Register.AL);
                    _il.Emit(OpCodes.Conv_I1);
                    Mask(2);
                    WriteReg(Register.AX);
                    break;
                case Operation.Cwde:
                    ReadReg(Register.AX);
                    _il.Emit(OpCodes.Conv_I2);
                    WriteReg(Register.EAX);
                    break;
                case Operation.Cwd:
                    ReadReg(Register.AX);
                    _il.Emit(OpCodes.Conv_I2);
                    _il.Emit(OpCodes.Ldc_I4, 16);
                    _il.Emit(OpCodes.Shr);
                    Mask(2);
                    WriteReg(Register.DX);
                    break;
                default:
                    ReadReg(Register.EAX);
                    _il.Emit(OpCodes.Ldc_I4, 31);
                    _il.Emit(OpCodes.Shr);
                    WriteReg(Register.EDX);
                    break;
            }
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

        /// <summary>
        /// Emits a branch: the block's last instruction leaves (or loops); one inside a superblock goes on with the next
        /// listed instruction, its fall-through (JCC, whose taken side leaves) or its target (JMP, CALL).
        /// </summary>
        private void EmitBranch(int k, Operation op)
        {
            ref Instruction ins = ref _code[k];
            int retired = k + 1;
            bool last = k == _code.Length - 1;
            switch (op)
            {
                case Operation.Jcc:
                    {
                        EmitCondition(ConditionByCode[(int)ins.Code]);
                        if (!last)
                        {
                            // Inside a superblock: it goes on with whichever side Form chose, and leaves on the other.
                            Label goOn = _il.DefineLabel();
                            if (_code[k + 1].IP32 == ins.NextIP32)
                            {
                                _il.Emit(OpCodes.Brfalse, goOn);
                                BranchTo(retired, ins.NearBranch32);
                            }
                            else
                            {
                                _il.Emit(OpCodes.Brtrue, goOn);
                                SetExit(retired, ins.NextIP32);
                            }
                            _il.MarkLabel(goOn);
                            return;
                        }
                        Label taken = _il.DefineLabel();
                        _il.Emit(OpCodes.Brtrue, taken);
                        SetExit(retired, ins.NextIP32);
                        _il.MarkLabel(taken);
                        BranchTo(retired, ins.NearBranch32);
                        return;
                    }
                case Operation.Jmp when ins.Op0Kind == OpKind.NearBranch32:
                    if (last)
                    {
                        BranchTo(retired, ins.NearBranch32);
                    }
                    return; // inside a superblock, the target is the next instruction: nothing to do
                case Operation.Ret:
                    {
                        LocalBuilder host = Translate(k, () => ReadReg(Register.ESP), Sreg.Ss, 4, write: false);
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
            if (!last)
            {
                return; // a direct CALL inside a superblock: its target is the next instruction
            }
            _il.Emit(OpCodes.Ldloc, target);
            _il.Emit(OpCodes.Stloc, _eip);
            Leave(retired);
        }

        /// <summary>A direct branch: loops when it goes back to the block's start, else leaves on the target.</summary>
        private void BranchTo(int retired, uint target)
        {
            if (target == _code[0].IP32)
            {
                LoopOrLeave(retired);
            }
            else
            {
                SetExit(retired, target);
            }
        }

        /// <summary>
        /// Pushes whether condition <paramref name="cc"/> holds. Most conditions after CMP, SUB, TEST, AND/OR/XOR, ADD,
        /// INC or DEC are decided from the kept operands with one comparison (as QEMU decides them from its CC_OP), and
        /// the operation stays pending; the rest read the materialised flags.
        /// </summary>
        private void EmitCondition(ConditionCode cc)
        {
            // Iced numbers each condition just before its negation (o, no, b, ae, ...).
            bool negate = ((int)cc & 1) == 0;
            ConditionCode positive = negate ? cc - 1 : cc;
            if (EmitFastCondition(positive))
            {
                if (negate)
                {
                    _il.Emit(OpCodes.Ldc_I4_0);
                    _il.Emit(OpCodes.Ceq);
                }
                return;
            }
            Materialize();
            _il.Emit(OpCodes.Ldc_I4, (int)cc);
            _il.Emit(OpCodes.Ldloc, _flags);
            _il.Emit(OpCodes.Call, ConditionMethod);
        }

        /// <summary>Pushes a positive condition (o, b, e, be, s, p, l, le) from the pending operation's operands, if it can.</summary>
        private bool EmitFastCondition(ConditionCode cc)
        {
            int size = _pendingSize;
            switch (_pending)
            {
                case Pending.Sub:
                    switch (cc)
                    {
                        case ConditionCode.e:
                            Operands(signed: false, size);
                            _il.Emit(OpCodes.Ceq);
                            return true;
                        case ConditionCode.b:
                            Operands(signed: false, size);
                            _il.Emit(OpCodes.Clt_Un);
                            return true;
                        case ConditionCode.be:
                            Operands(signed: false, size);
                            _il.Emit(OpCodes.Cgt_Un);
                            Not();
                            return true;
                        case ConditionCode.l:
                            Operands(signed: true, size);
                            _il.Emit(OpCodes.Clt);
                            return true;
                        case ConditionCode.le:
                            Operands(signed: true, size);
                            _il.Emit(OpCodes.Cgt);
                            Not();
                            return true;
                        case ConditionCode.s:
                            _il.Emit(OpCodes.Ldloc, _pa);
                            _il.Emit(OpCodes.Ldloc, _pb);
                            _il.Emit(OpCodes.Sub);
                            SignOf(size);
                            return true;
                    }
                    return false;
                case Pending.Logic:
                    switch (cc)
                    {
                        case ConditionCode.o or ConditionCode.b:
                            _il.Emit(OpCodes.Ldc_I4_0); // CF = OF = 0
                            return true;
                        case ConditionCode.e or ConditionCode.be:
                            ResultIsZero(Pending.Logic, size);
                            return true;
                        case ConditionCode.s or ConditionCode.l: // l: SF != OF, with OF = 0
                            _il.Emit(OpCodes.Ldloc, _pa);
                            SignOf(size);
                            return true;
                        case ConditionCode.le:
                            ResultIsZero(Pending.Logic, size);
                            _il.Emit(OpCodes.Ldloc, _pa);
                            SignOf(size);
                            _il.Emit(OpCodes.Or);
                            return true;
                    }
                    return false;
                case Pending.Szp:
                    switch (cc)
                    {
                        case ConditionCode.e:
                            _il.Emit(OpCodes.Ldloc, _pa);
                            Not();
                            return true;
                        case ConditionCode.s:
                            _il.Emit(OpCodes.Ldloc, _pa);
                            SignOf(size);
                            return true;
                        case ConditionCode.b:
                            _il.Emit(OpCodes.Ldloc, _pb);
                            _il.Emit(OpCodes.Ldc_I4_1);
                            _il.Emit(OpCodes.And);
                            return true;
                        case ConditionCode.o:
                            _il.Emit(OpCodes.Ldloc, _pb);
                            _il.Emit(OpCodes.Ldc_I4, 11);
                            _il.Emit(OpCodes.Shr_Un);
                            _il.Emit(OpCodes.Ldc_I4_1);
                            _il.Emit(OpCodes.And);
                            return true;
                    }
                    return false;
                case Pending.Add or Pending.Inc or Pending.Dec:
                    switch (cc)
                    {
                        case ConditionCode.e:
                            ResultIsZero(_pending, size);
                            return true;
                        case ConditionCode.s:
                            PushResult(_pending, size);
                            SignOf(size);
                            return true;
                        case ConditionCode.b when _pending == Pending.Add:
                            PushResult(_pending, size); // a carry out: the masked sum is below an operand
                            _il.Emit(OpCodes.Ldloc, _pa);
                            _il.Emit(OpCodes.Clt_Un);
                            return true;
                    }
                    return false;
                default:
                    return false;
            }
        }

        /// <summary>Pushes the two kept operands, sign-extended from the size for a signed comparison.</summary>
        private void Operands(bool signed, int size)
        {
            foreach (LocalBuilder operand in (ReadOnlySpan<LocalBuilder>)[_pa, _pb])
            {
                _il.Emit(OpCodes.Ldloc, operand);
                if (signed && size != 4)
                {
                    _il.Emit(size == 1 ? OpCodes.Conv_I1 : OpCodes.Conv_I2);
                }
            }
        }

        /// <summary>Pushes the pending ADD, INC, DEC or logic operation's result, masked to its size.</summary>
        private void PushResult(Pending pending, int size)
        {
            _il.Emit(OpCodes.Ldloc, _pa);
            switch (pending)
            {
                case Pending.Add:
                    _il.Emit(OpCodes.Ldloc, _pb);
                    _il.Emit(OpCodes.Add);
                    break;
                case Pending.Inc:
                    _il.Emit(OpCodes.Ldc_I4_1);
                    _il.Emit(OpCodes.Add);
                    break;
                case Pending.Dec:
                    _il.Emit(OpCodes.Ldc_I4_1);
                    _il.Emit(OpCodes.Sub);
                    break;
            }
            Mask(size);
        }

        private void ResultIsZero(Pending pending, int size)
        {
            PushResult(pending, size);
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Ceq);
        }

        /// <summary>The value on the stack's sign bit at the size, as 0 or 1.</summary>
        private void SignOf(int size)
        {
            _il.Emit(OpCodes.Ldc_I4, size * 8 - 1);
            _il.Emit(OpCodes.Shr_Un);
            _il.Emit(OpCodes.Ldc_I4_1);
            _il.Emit(OpCodes.And);
        }

        private void Not()
        {
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Ceq);
        }

        /// <summary>Leaves the block with EIP already in its local.</summary>
        private void Leave(int retired)
        {
            EmitLazyExit();
            SetRetired(retired);
            _il.Emit(OpCodes.Br, _epilogue);
        }

        /// <summary>retired = the earlier passes' instructions + <paramref name="retired"/> of this pass.</summary>
        private void SetRetired(int retired)
        {
            _il.Emit(OpCodes.Ldloc, _base);
            _il.Emit(OpCodes.Ldc_I4, retired);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stloc, _retired);
        }

        /// <summary>
        /// A branch back to the block's own start after <paramref name="retired"/> of its instructions: counts the pass
        /// and runs the block again if a whole further pass fits in the budget, else leaves on the start.
        /// </summary>
        private void LoopOrLeave(int retired)
        {
            if (_flagsTouched && _liveIn)
            {
                // The next pass reads the flags before it writes them: it starts with them whole, as the first pass
                // does, and the flags from before the block are dead now.
                EmitMaterialize(_pending, _pendingSize);
                _il.Emit(OpCodes.Ldarg_1);
                _il.Emit(OpCodes.Ldc_I4_0);
                _il.Emit(OpCodes.Stfld, LazyOpField);
            }
            else if (_flagsTouched)
            {
                // The next pass writes every status flag before it reads one, so they need not be computed: the pending
                // operation goes to the core's lazy-flags fields, where a way out of the next pass before that write
                // leaves it (EmitLazyExit emits nothing there), as the first pass leaves the block before's.
                EmitLazyExit();
            }
            _il.Emit(OpCodes.Ldloc, _base);
            _il.Emit(OpCodes.Ldc_I4, retired);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stloc, _base);
            _il.Emit(OpCodes.Ldloc, _base);
            _il.Emit(OpCodes.Ldc_I4, _code.Length);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldarg_3);
            _il.Emit(OpCodes.Ble, _top);
            SetExit(0, _code[0].IP32);
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
            _flagsTouched = true;
        }

        /// <summary>Makes the flags local whole on the straight path (the pending flags are computed once, here).</summary>
        private void Materialize()
        {
            EmitMaterialize(_pending, _pendingSize);
            _pending = Pending.None;
        }

        /// <summary>
        /// Makes only CF right in the flags local, inline, for an instruction that reads CF and then writes every other
        /// status flag (INC, DEC, ADC, SBB): the others stay stale until that instruction overwrites them, so no call
        /// to JitFlags. A pending INC or DEC already has the right CF there (it was made right before it).
        /// </summary>
        private void MaterializeCarry()
        {
            int size = _pendingSize;
            switch (_pending)
            {
                case Pending.None or Pending.Inc or Pending.Dec:
                    return;
                case Pending.Sub:
                    _il.Emit(OpCodes.Ldloc, _pa);
                    _il.Emit(OpCodes.Ldloc, _pb);
                    _il.Emit(OpCodes.Clt_Un); // a borrow: a < b (both masked to the size)
                    break;
                case Pending.Add:
                    PushResult(Pending.Add, size);
                    _il.Emit(OpCodes.Ldloc, _pa);
                    _il.Emit(OpCodes.Clt_Un); // a carry out: the masked sum is below an operand
                    break;
                case Pending.Logic:
                    _il.Emit(OpCodes.Ldc_I4_0);
                    break;
                case Pending.Szp:
                    _il.Emit(OpCodes.Ldloc, _pb);
                    _il.Emit(OpCodes.Ldc_I4_1);
                    _il.Emit(OpCodes.And);
                    break;
            }
            MergeFlags(CF);
            _pending = Pending.None;
        }

        /// <summary>flags = JitFlags(flags, pending, a, b, size): one call, small to compile.</summary>
        private void EmitMaterialize(Pending pending, int size)
        {
            if (pending == Pending.None)
            {
                return;
            }
            _il.Emit(OpCodes.Ldloc, _flags);
            _il.Emit(OpCodes.Ldc_I4, (int)pending);
            _il.Emit(OpCodes.Ldloc, _pa);
            _il.Emit(OpCodes.Ldloc, _pb);
            _il.Emit(OpCodes.Ldc_I4, size);
            _il.Emit(OpCodes.Call, FlagsMethod);
            _il.Emit(OpCodes.Stloc, _flags);
        }

        /// <summary>flags = (flags &amp; ~mask) | (status on the stack &amp; mask).</summary>
        private void MergeFlags(uint mask)
        {
            _flagsTouched = true;
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

        /// <summary>
        /// A read-modify-write destination: its host offset when it is memory (checked for the read, then for the write,
        /// the interpreter's order of faults), or null for a register.
        /// </summary>
        private LocalBuilder? TranslateDestination(int k, int size)
        {
            if (_code[k].Op0Kind != OpKind.Memory)
            {
                return null;
            }
            TranslateOperand(k, size, write: false);
            return TranslateOperand(k, size, write: true);
        }

        private LocalBuilder TranslateOperand(int k, int size, bool write)
        {
            Instruction ins = _code[k];
            return Translate(k, () => EmitOffset(ref ins), (Sreg)(ins.MemorySegment - Register.ES), size, write);
        }

        /// <summary>Whether any instruction of the block takes a host offset through <see cref="Translate"/>.</summary>
        private static bool AccessesMemory(Instruction[] code)
        {
            foreach (Instruction ins in code)
            {
                Operation op = OperationByCode[(int)ins.Code];
                if (HasMemoryOperand(ref Unsafe.AsRef(in ins)) && op != Operation.Lea
                    || op is Operation.Push or Operation.Pop or Operation.Leave or Operation.Call or Operation.Ret or Operation.Pushf
                        or Operation.Popf)
                {
                    return true;
                }
            }
            return false;
        }

        /// <summary>
        /// The host offset of an access at the offset <paramref name="pushOffset"/> pushes, or the block is left before
        /// instruction k. Through a flat segment other than CS, the translator's TLB answers inline when it holds the page
        /// (with the rights: a read or a write tag) and the access stays in the page; anything else asks JitHost, which
        /// checks everything and fills the entry.
        /// </summary>
        private LocalBuilder Translate(int k, Action pushOffset, Sreg segment, int size, bool write)
        {
            LocalBuilder host = Temp(typeof(long));
            Label ok = _il.DefineLabel();
            LocalBuilder offset = Temp();
            pushOffset();
            _il.Emit(OpCodes.Stloc, offset);
            if (segment != Sreg.Cs)
            {
                Label slow = _il.DefineLabel();
                LocalBuilder entry = _fastEntry!;
                // Through a segment that is flat now.
                _il.Emit(OpCodes.Ldloc, _nonFlat!);
                _il.Emit(OpCodes.Ldc_I4, 1 << (int)segment);
                _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Brtrue, slow);
                // entry = the translator's TLB + ((offset >> 12) & 1023) * 16
                _il.Emit(OpCodes.Ldloc, _fastTlb!);
                _il.Emit(OpCodes.Ldloc, offset);
                _il.Emit(OpCodes.Ldc_I4, PageShift - FastTlbEntryShift);
                _il.Emit(OpCodes.Shr_Un);
                _il.Emit(OpCodes.Ldc_I4, (TlbEntries - 1) << FastTlbEntryShift);
                _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Conv_U);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Stloc, entry);
                // The tag for this access (ReadTag at +0, WriteTag at +4) is the page | 1.
                _il.Emit(OpCodes.Ldloc, entry);
                if (write)
                {
                    _il.Emit(OpCodes.Ldc_I4_4);
                    _il.Emit(OpCodes.Add);
                }
                _il.Emit(OpCodes.Ldind_U4);
                _il.Emit(OpCodes.Ldloc, offset);
                _il.Emit(OpCodes.Ldc_I4, unchecked((int)~PageOffsetMask));
                _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Ldc_I4_1);
                _il.Emit(OpCodes.Or);
                _il.Emit(OpCodes.Bne_Un, slow);
                if (size > 1)
                {
                    // Within the page.
                    _il.Emit(OpCodes.Ldloc, offset);
                    _il.Emit(OpCodes.Ldc_I4, (int)PageOffsetMask);
                    _il.Emit(OpCodes.And);
                    _il.Emit(OpCodes.Ldc_I4, (int)PageOffsetMask + 1 - size);
                    _il.Emit(OpCodes.Bgt_Un, slow);
                }
                // host = entry.Host + (offset & 0xFFF)
                _il.Emit(OpCodes.Ldloc, entry);
                _il.Emit(OpCodes.Ldc_I4_8);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Ldind_I8);
                _il.Emit(OpCodes.Ldloc, offset);
                _il.Emit(OpCodes.Ldc_I4, (int)PageOffsetMask);
                _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Conv_U8);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Stloc, host);
                _il.Emit(OpCodes.Br, ok);
                _il.MarkLabel(slow);
            }
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldloc, offset);
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

        // Guest RAM is read and written in place, in IL rather than through helpers: each inlined call costs RyuJIT
        // tens of microseconds when it compiles a block.
        private void Load(LocalBuilder host, int size)
        {
            RamAddress(host);
            switch (size)
            {
                case 1:
                    _il.Emit(OpCodes.Ldind_U1);
                    break;
                case 2:
                    _il.Emit(OpCodes.Unaligned, (byte)1);
                    _il.Emit(OpCodes.Ldind_U2);
                    break;
                default:
                    _il.Emit(OpCodes.Unaligned, (byte)1);
                    _il.Emit(OpCodes.Ldind_U4);
                    break;
            }
        }

        private void Store(LocalBuilder host, int size, LocalBuilder value)
        {
            RamAddress(host);
            _il.Emit(OpCodes.Ldloc, value);
            switch (size)
            {
                case 1:
                    _il.Emit(OpCodes.Stind_I1);
                    break;
                case 2:
                    _il.Emit(OpCodes.Unaligned, (byte)1);
                    _il.Emit(OpCodes.Stind_I2);
                    break;
                default:
                    _il.Emit(OpCodes.Unaligned, (byte)1);
                    _il.Emit(OpCodes.Stind_I4);
                    break;
            }
        }

        /// <summary>
        /// Pushes the address of host memory's byte at a host offset. The offset came from the second-level table, whose
        /// frames all lie inside host memory, as in the interpreter.
        /// </summary>
        private void RamAddress(LocalBuilder host)
        {
            _il.Emit(OpCodes.Ldloc, _ram);
            _il.Emit(OpCodes.Ldloc, host);
            _il.Emit(OpCodes.Conv_I);
            _il.Emit(OpCodes.Add);
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
