using System.Diagnostics;
using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>Summary of a differential run.</summary>
internal sealed class FuzzReport
{
    public long Cases;
    public long Retired;
    public long Exceptions;
    public long MemoryFaults;
    public long NotEncodable;
    public long Mismatches;
    public readonly List<string> Reproducers = [];
    public readonly Dictionary<Code, long> MismatchesByForm = [];
    /// <summary>Cases where only flags the SDM leaves undefined differed, by mnemonic and flag bits.</summary>
    public readonly Dictionary<(Mnemonic, uint), long> UndefinedFlagDifferences = [];
    public TimeSpan Elapsed;
    /// <summary>Cases where Unicorn is known wrong (checked on the host CPU), by rule.</summary>
    public readonly Dictionary<string, long> KnownDeviations = [];

    public string Summary(string reference) =>
        $"{Cases:N0} cases against {reference} in {Elapsed.TotalSeconds:F1} s ({Cases / Math.Max(Elapsed.TotalSeconds, 1e-9):N0}/s): " +
        $"{Retired:N0} retired, {Exceptions:N0} exceptions, {MemoryFaults:N0} memory faults, {NotEncodable:N0} not encodable; {Mismatches:N0} mismatches";

    public string UndefinedSummary()
    {
        var lines = UndefinedFlagDifferences.OrderByDescending(kv => kv.Value)
            .Select(kv => $"  {kv.Key.Item1,-8} {Comparison.FlagNames(kv.Key.Item2),-12} {kv.Value,8:N0} cases");
        return string.Join(Environment.NewLine, lines);
    }

    public string MismatchSummary() => string.Join(Environment.NewLine,
        MismatchesByForm.OrderByDescending(kv => kv.Value).Select(kv => $"  {kv.Key,-30} {kv.Value,8:N0}"));
}

/// <summary>
/// Instruction-level differential fuzzing of the core against Unicorn: blocks of 4096 generated cases, one
/// instruction per 16-byte code slot, identical random registers, flags and memory windows on both sides,
/// one instruction executed, defined state compared. Whole-memory equality is checked after every block.
/// </summary>
internal sealed class UnicornFuzzer : IDisposable
{
    private const int MaxReproducers = 12;
    private const int RenewEveryBlocks = 64;
    private long _blocks;
    private static readonly bool Trace = Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_TRACE") == "1";
    private readonly CoreSide _core = new();
    private readonly UnicornSide _unicorn;
    private readonly ulong _seed;
    private readonly CaseGenerator _generator;
    private readonly TestCase[] _cases = new TestCase[MachineLayout.CasesPerBlock];
    private readonly bool[] _valid = new bool[MachineLayout.CasesPerBlock];
    private readonly Outcome _coreOut = new(), _refOut = new();
    private readonly byte[] _code = new byte[MachineLayout.SlotSize * MachineLayout.CasesPerBlock];

    private UnicornFuzzer(UnicornSide unicorn, ulong seed, InstructionForm[] forms)
    {
        _unicorn = unicorn;
        _seed = seed;
        _generator = new CaseGenerator(seed, forms);
        for (int i = 0; i < _cases.Length; i++) _cases[i] = new TestCase();
    }

    public static UnicornFuzzer? TryCreate(ulong seed, InstructionForm[] forms, Func<long, string> rerun)
    {
        UnicornSide? unicorn = UnicornSide.TryCreate();
        return unicorn is null ? null : new UnicornFuzzer(unicorn, seed, forms) { Rerun = rerun };
    }

    /// <summary>The command that replays one case (set by the test, which knows its seed and name).</summary>
    public Func<long, string> Rerun { get; private init; } = index => $"case {index}";

    public IReadOnlyList<string> EncodeErrors => _generator.EncodeErrors;

    /// <summary>The core under test, for a test that changes its tier.</summary>
    public HybridVmm.Hardware.Cpu.X86Core Core => _core.Cpu;

    public FuzzReport Run(long firstCase, long count, InstructionForm? only = null)
    {
        var report = new FuzzReport();
        var watch = Stopwatch.StartNew();
        for (long blockStart = firstCase; blockStart < firstCase + count; blockStart += MachineLayout.CasesPerBlock)
        {
            int n = (int)Math.Min(MachineLayout.CasesPerBlock, firstCase + count - blockStart);
            RunBlock(blockStart, n, report, only);
        }
        report.Elapsed = watch.Elapsed;
        return report;
    }

    private void RunBlock(long blockStart, int n, FuzzReport report, InstructionForm? only)
    {
        _code.AsSpan().Fill(0xF4); // HLT between slots
        for (int i = 0; i < n; i++)
        {
            // A case's slot depends on its index only, so a replay of one case runs it at the same address.
            uint eip = MachineLayout.CodeBase + (uint)((blockStart + i) % MachineLayout.CasesPerBlock * MachineLayout.SlotSize);
            _valid[i] = _generator.Generate(blockStart + i, eip, _cases[i], only);
            if (_valid[i]) _cases[i].Code.CopyTo(_code.AsSpan((int)(eip - MachineLayout.CodeBase)));
        }
        if (++_blocks % RenewEveryBlocks == 0) _unicorn.Renew();
        _core.LoadCode(MachineLayout.CodeBase, _code);
        _unicorn.LoadCode(MachineLayout.CodeBase, _code);

        for (int i = 0; i < n; i++)
        {
            report.Cases++;
            if (!_valid[i]) { report.NotEncodable++; continue; }
            TestCase c = _cases[i];
            _core.Run(c, _coreOut);
            if (Trace) Console.Error.WriteLine($"case {c.Index}: {Comparison.Disassemble(c)}");
            _unicorn.Run(c, _refOut);
            switch (_refOut.Kind)
            {
                case OutcomeKind.Retired: report.Retired++; break;
                case OutcomeKind.Exception: report.Exceptions++; break;
                case OutcomeKind.MemoryFault: report.MemoryFaults++; break;
            }
            string? diff = Comparison.Differences(c, _coreOut, _refOut, _core.Bytes, _unicorn.Bytes, compareMemory: true, out uint undefinedDiff);
            if (undefinedDiff != 0)
            {
                var key = (c.Form.Mnemonic, undefinedDiff);
                report.UndefinedFlagDifferences[key] = report.UndefinedFlagDifferences.GetValueOrDefault(key) + 1;
            }
            if (diff is null) continue;
            if (KnownUnicornDeviation(c, _coreOut, _refOut, diff) is { } reason)
            {
                report.KnownDeviations[reason] = report.KnownDeviations.GetValueOrDefault(reason) + 1;
                continue;
            }
            report.Mismatches++;
            report.MismatchesByForm[c.Form.Code] = report.MismatchesByForm.GetValueOrDefault(c.Form.Code) + 1;
            if (report.Reproducers.Count < MaxReproducers)
                report.Reproducers.Add(Comparison.Reproducer(Rerun(c.Index), c, _coreOut, _refOut, "unicorn", diff, _core.Bytes, _unicorn.Bytes));
            // Resynchronise the memories so one difference is reported once.
            _unicorn.Bytes.CopyTo(_core.Bytes);
            _core.Cpu.InvalidateCode(0, (int)MachineLayout.MemorySize);
        }

        int d = Comparison.FirstDifference(_core.Bytes, _unicorn.Bytes, 0, (int)MachineLayout.MemorySize);
        if (d >= 0)
        {
            report.Mismatches++;
            report.Reproducers.Add($"block {blockStart}..{blockStart + n - 1} of seed 0x{_seed:x}: memory outside the windows differs at {d:x8} " +
                $"(core {_core.Bytes[d]:x2}, unicorn {_unicorn.Bytes[d]:x2})");
            _unicorn.Bytes.CopyTo(_core.Bytes);
            _core.Cpu.InvalidateCode(0, (int)MachineLayout.MemorySize);
        }
    }

    /// <summary>
    /// Where Unicorn is wrong on defined state and the host processor (HardwareDifferentialTests) or the SDM
    /// shows the core right. Each rule is narrow: the difference must be exactly the known one.
    /// </summary>
    public static string? KnownUnicornDeviation(TestCase c, Outcome core, Outcome unicorn, string diff)
    {
        switch (c.Form.Code)
        {
            case Code.Test_rm8_imm8_F6r1 or Code.Test_rm16_imm16_F7r1 or Code.Test_rm32_imm32_F7r1
                when unicorn.Kind == OutcomeKind.Exception && unicorn.Vector == 6 && core.Kind == OutcomeKind.Retired:
                return "TEST F6 /1, F7 /1: Unicorn raises #UD, the host executes TEST";
            case Code.Bswap_r16 when core.Kind == OutcomeKind.Retired && diff is "eax" or "ecx" or "edx" or "ebx" or "esp" or "ebp" or "esi" or "edi":
                return "BSWAP r16: Unicorn swaps all 32 bits, the host clears the 16-bit register and keeps the upper half";
            case Code.Neg_rm8 or Code.Neg_rm16 or Code.Neg_rm32
                when c.Instruction.HasLockPrefix && diff.StartsWith("eflags(", StringComparison.Ordinal) && diff.IndexOf(')') == diff.Length - 1:
                return "LOCK NEG: Unicorn computes SF/PF wrongly, the host agrees with the core (and with NEG without LOCK)";
            case Code.Retnw_imm16 or Code.Retnd_imm16
                when diff == "esp" && c.Instruction.Immediate16 >= 0x8000 && core.Gprs[4] - unicorn.Gprs[4] == 0x10000:
                return "RET imm16 >= 0x8000: Unicorn sign-extends imm16, the SDM and the host zero-extend it";
            default:
                return null;
        }
    }

    public void Dispose() => _unicorn.Dispose();
}
