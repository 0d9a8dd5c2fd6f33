using System.Buffers.Binary;
using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>
/// Straight-line sequences of random instructions (no branches), laid out back to back and stepped in lockstep
/// on the core and on Unicorn from one random start state: registers, flags and memory carry from one
/// instruction to the next, and the decode cache sees contiguous code. After every instruction the defined
/// state is compared (SDM-undefined flags and results masked for that instruction, with the count and source
/// it actually saw); then the core takes over Unicorn's registers so an undefined difference does not spread.
/// </summary>
internal sealed class SequenceFuzzer : IDisposable
{
    public const int Length = 16;
    private readonly CoreSide _core = new();
    private readonly UnicornSide _unicorn;
    private readonly ulong _seed;
    private readonly CaseGenerator _generator;
    private readonly TestCase[] _steps = new TestCase[Length];
    private readonly TestCase _before = new();
    private readonly Outcome _coreOut = new(), _refOut = new();
    private readonly byte[] _code = new byte[Length * 16 + 16];
    private long _sequences;

    private SequenceFuzzer(UnicornSide unicorn, ulong seed, InstructionForm[] forms)
    {
        _unicorn = unicorn;
        _seed = seed;
        _generator = new CaseGenerator(seed, forms) { AbsoluteMemory = true };
        for (int i = 0; i < Length; i++) _steps[i] = new TestCase();
    }

    /// <summary>
    /// Forms fit for sequences: no control transfer (POPF is in: a TF it sets single-steps what follows), and none of
    /// the forms where Unicorn is known wrong (UnicornFuzzer.KnownUnicornDeviation).
    /// </summary>
    public static InstructionForm[] Forms(InstructionForm[] all) => all.Where(f =>
        !IsControlTransfer(f.Mnemonic) && f.Mnemonic is not Mnemonic.Neg
        && f.Code is not (Code.Test_rm8_imm8_F6r1 or Code.Test_rm16_imm16_F7r1 or Code.Test_rm32_imm32_F7r1 or Code.Bswap_r16)).ToArray();

    private static bool IsControlTransfer(Mnemonic m) => m is Mnemonic.Jmp or Mnemonic.Call or Mnemonic.Ret or Mnemonic.Loop
        or Mnemonic.Loope or Mnemonic.Loopne or Mnemonic.Jecxz or Mnemonic.Jo or Mnemonic.Jno or Mnemonic.Jb or Mnemonic.Jae
        or Mnemonic.Je or Mnemonic.Jne or Mnemonic.Jbe or Mnemonic.Ja or Mnemonic.Js or Mnemonic.Jns or Mnemonic.Jp
        or Mnemonic.Jnp or Mnemonic.Jl or Mnemonic.Jge or Mnemonic.Jle or Mnemonic.Jg;

    public static SequenceFuzzer? TryCreate(ulong seed, InstructionForm[] forms, Func<long, string> rerun)
    {
        UnicornSide? unicorn = UnicornSide.TryCreate();
        return unicorn is null ? null : new SequenceFuzzer(unicorn, seed, Forms(forms)) { Rerun = rerun };
    }

    /// <summary>The command that replays one sequence (set by the test, which knows its seed and name).</summary>
    public Func<long, string> Rerun { get; private init; } = index => $"sequence {index}";

    public FuzzReport Run(long firstSequence, long count)
    {
        var report = new FuzzReport();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        for (long s = firstSequence; s < firstSequence + count; s++)
        {
            if (!Build(s)) { report.NotEncodable++; continue; }
            if (++_sequences % 256 == 0) _unicorn.Renew();
            _core.LoadCode(MachineLayout.CodeBase, _code);
            _unicorn.LoadCode(MachineLayout.CodeBase, _code);
            _core.Load(_steps[0]);
            _unicorn.Load(_steps[0]);
            for (int i = 0; i < Length; i++)
            {
                TestCase step = _steps[i];
                Capture(step);
                if (step.Form.IsString && (step.Bytes[0] is 0xF3 or 0xF2) && _before.Gprs[1] > 256)
                {
                    // Keep REP runs short (Unicorn stops after a bounded number of iterations): ECX &= 0xff on both.
                    _before.Gprs[1] &= 0xff;
                    _core.SetRegisters(_before.Gprs, _before.Eflags, step.Eip);
                    _unicorn.SetRegisters(_before.Gprs, _before.Eflags, step.Eip);
                }
                _core.Step(_coreOut);
                _unicorn.Step(step, _refOut);
                report.Cases++;
                string? diff = Comparison.Differences(_before, _coreOut, _refOut, _core.Bytes, _unicorn.Bytes, compareMemory: true, out uint undefinedDiff);
                if (undefinedDiff != 0)
                {
                    var key = (step.Form.Mnemonic, undefinedDiff);
                    report.UndefinedFlagDifferences[key] = report.UndefinedFlagDifferences.GetValueOrDefault(key) + 1;
                }
                if (diff is not null)
                {
                    report.Mismatches++;
                    report.MismatchesByForm[step.Form.Code] = report.MismatchesByForm.GetValueOrDefault(step.Form.Code) + 1;
                    if (report.Reproducers.Count < 8)
                        report.Reproducers.Add($"sequence {s}, instruction {i} (the state before it is the input below):\n"
                            + Comparison.Reproducer(Rerun(s), _before, _coreOut, _refOut, "unicorn", diff, _core.Bytes, _unicorn.Bytes));
                }
                if (_refOut.Kind != OutcomeKind.Retired || diff is not null)
                {
                    if (_refOut.Kind == OutcomeKind.Retired) report.Retired++; else report.Exceptions++;
                    break;
                }
                report.Retired++;
                // Lockstep: where the SDM leaves flags or a result undefined, continue from Unicorn's choice.
                _core.SetRegisters(_refOut.Gprs, _refOut.Eflags, _refOut.Eip);
                _unicorn.Bytes.Slice((int)MachineLayout.DataWindow, MachineLayout.DataWindowSize).CopyTo(_core.Bytes[(int)MachineLayout.DataWindow..]);
            }
        }
        report.Elapsed = watch.Elapsed;
        return report;
    }

    /// <summary>The inputs of the next instruction, as the core holds them now: registers, flags, windows, count, source.</summary>
    private void Capture(TestCase step)
    {
        TestCase b = _before;
        for (int r = 0; r < 8; r++) b.Gprs[r] = _core.Cpu[(HybridVmm.Hardware.Cpu.Gpr)r];
        b.Eflags = _core.Cpu.Eflags;
        b.Form = step.Form; b.Instruction = step.Instruction; b.Index = step.Index; b.Eip = step.Eip;
        step.Bytes.CopyTo(b.Bytes, 0); b.Length = step.Length; b.EffectiveAddress = step.EffectiveAddress;
        _core.Bytes.Slice((int)MachineLayout.DataWindow, MachineLayout.DataWindowSize).CopyTo(b.Data);
        _core.Bytes.Slice((int)MachineLayout.StackWindow, MachineLayout.StackWindowSize).CopyTo(b.Stack);
        b.Count = -1;
        b.Source = 0;
        Instruction ins = step.Instruction;
        switch (step.Form.Mnemonic)
        {
            case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal
                or Mnemonic.Shr or Mnemonic.Sar or Mnemonic.Shld or Mnemonic.Shrd:
                int last = ins.OpCount - 1;
                b.Count = ins.GetOpKind(last) == OpKind.Register ? (int)(b.Gprs[1] & 0x1f)
                    : ins.GetOpKind(last) == OpKind.Immediate8 ? ins.Immediate8 & 0x1f : 1;
                break;
            case Mnemonic.Bsf or Mnemonic.Bsr:
                uint mask = step.Form.OperandBits == 16 ? 0xffffu : 0xffffffffu;
                b.Source = ins.Op1Kind == OpKind.Register ? RegisterValue(b.Gprs, ins.Op1Register) & mask
                    : BinaryPrimitives.ReadUInt32LittleEndian(_core.Bytes[(int)step.EffectiveAddress..]) & mask;
                break;
        }
    }

    private static uint RegisterValue(uint[] g, Register r) => r switch
    {
        >= Register.EAX and <= Register.EDI => g[r - Register.EAX],
        >= Register.AX and <= Register.DI => g[r - Register.AX] & 0xffff,
        _ => 0,
    };

    /// <summary>Generates the sequence: the first case's inputs are the start state, every case gives one instruction.</summary>
    private bool Build(long sequence)
    {
        _code.AsSpan().Fill(0xF4);
        uint eip = MachineLayout.CodeBase;
        for (int i = 0; i < Length; i++)
        {
            if (!_generator.Generate(sequence * Length + i, eip, _steps[i])) return false;
            _steps[i].Code.CopyTo(_code.AsSpan((int)(eip - MachineLayout.CodeBase)));
            eip += (uint)_steps[i].Length;
        }
        return true;
    }

    public void Dispose() => _unicorn.Dispose();
}
