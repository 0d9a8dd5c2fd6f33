using System.Diagnostics;
using System.Text;
using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>Summary of a system-state run.</summary>
internal sealed class SystemFuzzReport
{
    public long Cases, Steps, Retired, Exceptions, MemoryFaults, SetupFaults, Mismatches;
    public readonly Dictionary<string, long> ExceptionsByKind = [];
    public readonly Dictionary<string, long> KnownDeviations = [];
    public readonly List<string> Reproducers = [];
    public TimeSpan Elapsed;

    public string Summary() =>
        $"{Cases:N0} cases ({Steps:N0} test instructions) against Unicorn 2 in {Elapsed.TotalSeconds:F1} s: {Retired:N0} retired, " +
        $"{Exceptions:N0} exceptions, {MemoryFaults:N0} memory faults, {SetupFaults:N0} set-ups that faulted on both; {Mismatches:N0} mismatches";

    public string ExceptionSummary() => string.Join(", ", ExceptionsByKind.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value:N0}"));
}

/// <summary>
/// Differential fuzzing of system state against Unicorn: every case loads the same memory image into both CPUs,
/// runs the same set-up program from a flat ring-0 start (descriptor tables, control registers, segment registers,
/// the privilege level), sets the same registers, then steps the test instructions one at a time and compares the
/// outcome (vector, error code, CR2), the registers, EFLAGS, the segment selectors and the control registers after
/// each, and all of memory (page-table A/D bits, descriptor accessed bits, data) at the end.
/// </summary>
internal sealed class SystemStateFuzzer : IDisposable
{
    private const int MaxReproducers = 10;
    private const int RenewEvery = 20_000;
    // CF PF AF ZF SF TF IF DF OF IOPL NT AC ID: the flags with a defined value after every instruction here.
    private const uint DefinedFlags = 0x247FD5;
    private static readonly bool Trace = Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_TRACE") == "1";

    private readonly CoreSystemSide _core = new();
    private readonly UnicornSystemSide _unicorn;
    private readonly Action<long, SystemCase> _generate;
    private readonly Func<long, string> _rerun;
    private readonly SystemCase _case = new();
    private readonly SystemOutcome _coreOut = new(), _refOut = new(), _pending = new(), _before = new();
    private readonly uint[] _gprMask = new uint[8];
    private long _sinceRenew;

    /// <summary>
    /// Where Unicorn departs from the SDM on a test instruction and the core follows the SDM: returns the rule's
    /// name, or null. Called with the case, the instruction, the state before it and both outcomes.
    /// </summary>
    public Func<SystemCase, Instruction, SystemOutcome, SystemOutcome, SystemOutcome, string?> KnownDeviation { get; init; } = (_, _, _, _, _) => null;

    private SystemStateFuzzer(UnicornSystemSide unicorn, Action<long, SystemCase> generate, Func<long, string> rerun)
    {
        _unicorn = unicorn;
        _generate = generate;
        _rerun = rerun;
    }

    public static SystemStateFuzzer? TryCreate(Action<long, SystemCase> generate, Func<long, string> rerun,
        Func<SystemCase, Instruction, SystemOutcome, SystemOutcome, SystemOutcome, string?>? knownDeviation = null) =>
        UnicornSystemSide.TryCreate() is { } u
            ? new SystemStateFuzzer(u, generate, rerun) { KnownDeviation = knownDeviation ?? ((_, _, _, _, _) => null) }
            : null;

    public bool ErrorCodesAvailable => _unicorn.ErrorCodesAvailable;

    public SystemFuzzReport Run(long first, long count)
    {
        var report = new SystemFuzzReport();
        var watch = Stopwatch.StartNew();
        for (long i = first; i < first + count; i++)
        {
            if (++_sinceRenew % RenewEvery == 0) _unicorn.Renew();
            _generate(i, _case);
            if (Trace) Console.Error.WriteLine($"case {i}: {_case.Disassembly()} | cpl {_case.Cpl} | {string.Join("; ", _case.Notes)}");
            report.Cases++;
            RunCase(report);
        }
        report.Elapsed = watch.Elapsed;
        return report;
    }

    private void RunCase(SystemFuzzReport report)
    {
        SystemCase c = _case;
        _core.Begin(c);
        _unicorn.Begin(c);
        _core.Run(c.StubInstructions, _coreOut);
        _unicorn.Run(SystemLayout.Stub, c.StubInstructions, _refOut);
        bool pending = false;
        string? diff;
        if (_refOut.Kind != OutcomeKind.Retired && _coreOut.Kind == OutcomeKind.Retired && _refOut.Eip == c.TestEip && _coreOut.Eip == c.TestEip)
        {
            // Unicorn stops on the first test instruction's fetch fault while translating it: that is the test's outcome.
            _pending.CopyFrom(_refOut);
            pending = true;
        }
        else if ((diff = Differences(_coreOut, _refOut, compareState: _coreOut.Kind == OutcomeKind.Retired, DefinedFlags, c.CompareTables, AllBits)) is not null)
        {
            Fail(report, "set-up", diff, null, _coreOut, _refOut);
            return;
        }
        else if (_coreOut.Kind != OutcomeKind.Retired)
        {
            report.SetupFaults++;
            CountOutcome(report, _coreOut);
            CompareMemory(report);
            return;
        }

        _core.SetRegisters(c.Gprs, c.Eflags);
        _unicorn.SetRegisters(c.Gprs, c.Eflags);
        c.Gprs.CopyTo(_coreOut.Gprs, 0);
        _coreOut.Eflags = _core.Cpu.Eflags;
        for (int k = 0; k <= c.Tests.Count; k++)
        {
            // One step past the last test instruction only when Unicorn already saw that instruction's fetch fault.
            if (k == c.Tests.Count && !pending) break;
            Instruction? ins = k < c.Tests.Count ? c.Tests[k] : null;
            _before.CopyFrom(_coreOut);
            uint startEip = _coreOut.Eip;
            _core.Run(1, _coreOut);
            report.Steps++;
            bool compareState = true;
            if (pending)
            {
                _refOut.CopyFrom(_pending);
                pending = false;
                compareState = false; // Unicorn's registers are from before the set-up registers were written
            }
            else
            {
                _unicorn.Step(ins, _refOut);
                if (_refOut.Kind == OutcomeKind.Retired) _refOut.Eip -= CodeBase(c, _refOut.Selectors[1]);
                // INT n, INT3 and INTO: Unicorn raises the vector with EIP already on the next instruction (SoftwareInterruptModel).
                bool softwareInterrupt = ins is { } si && _refOut.Kind == OutcomeKind.Exception
                    && SoftwareInterruptModel.Vector(si, _before.Eflags) == _refOut.Vector && _refOut.Eip == si.NextIP32;
                if (_refOut.Kind != OutcomeKind.Retired && _refOut.Eip != startEip && !softwareInterrupt)
                {
                    // The instruction retired; Unicorn faulted translating the next one (a branch target, the next page).
                    _pending.CopyFrom(_refOut);
                    pending = true;
                    _refOut.Kind = OutcomeKind.Retired;
                    _refOut.Vector = 0;
                    _refOut.ErrorCode = null;
                    _refOut.Cr2 = _coreOut.Kind == OutcomeKind.Retired ? _coreOut.Cr2 : _before.Cr2;
                }
            }
            CountOutcome(report, _refOut);
            uint flags = DefinedFlags & ~(ins is { } i ? UndefinedFlags(i) : 0);
            ComparedGprBits(ins, _gprMask);
            diff = Differences(_coreOut, _refOut, compareState, flags, c.CompareTables, _gprMask);
            if (diff is not null && ins is { } known && (KnownDeviation(c, known, _before, _coreOut, _refOut)
                    ?? SoftwareInterruptModel.Check(c, known, _before, _coreOut, _refOut, _core.Bytes)) is { } rule)
            {
                report.KnownDeviations[rule] = report.KnownDeviations.GetValueOrDefault(rule) + 1;
                Resync();
                return;
            }
            if (diff is not null)
            {
                Fail(report, k < c.Tests.Count ? $"test instruction {k + 1}" : "fetch after the last test instruction", diff, _before, _coreOut, _refOut);
                return;
            }
            if (_coreOut.Kind != OutcomeKind.Retired) break;
            // After a branch the next instruction is not the next test instruction: only a fetch fault Unicorn has
            // already reported there is compared.
            if (!pending && (k + 1 >= c.Tests.Count || _coreOut.Eip != c.Tests[k + 1].IP32)) break;
        }
        if (_coreOut.Kind == OutcomeKind.Retired && !pending && !FetchNextOnCore(report)) return;
        CompareMemory(report);
    }

    /// <summary>
    /// Unicorn has translated the instruction after the last one run (its runs stop by count when the next one
    /// starts), so its fetch has set the code page's accessed bit. The core fetches it too, when it is a HLT (what
    /// branch targets and the bytes after the tests are), so that the A bits compare; a fault there is a mismatch,
    /// since Unicorn fetched it without one.
    /// </summary>
    private bool FetchNextOnCore(SystemFuzzReport report)
    {
        // With an IDT (the INT n cases), the HLT's #GP at CPL 3 would be delivered and push a frame Unicorn never writes;
        // those cases run with paging off, where the fetch sets no accessed bit to compare.
        if (_core.Cpu.IdtLoaded && (_core.Cpu.Cr0 & 0x8000_0000) == 0) return true;
        uint linear = _coreOut.Eip + _core.Cpu.GetSegment(HybridVmm.Hardware.Cpu.Sreg.Cs).Base;
        ulong? physical = _core.Cpu.TranslateLinearForInspection(linear);
        if (physical is not ulong p || p >= SystemLayout.MemorySize || _core.Bytes[(int)p] != 0xF4) return true;
        _before.CopyFrom(_coreOut);
        HybridVmm.Hardware.Cpu.CpuExit exit = _core.Cpu.Run(1);
        // HLT halts at CPL 0 and is #GP(0) at CPL 3 (SDM Vol. 2A, HLT): either way the fetch succeeded.
        if (exit.Reason != HybridVmm.Hardware.Cpu.CpuExitReason.Exception || exit.Vector == HybridVmm.Hardware.Cpu.ExceptionVector.GeneralProtection) return true;
        _coreOut.Kind = OutcomeKind.Exception;
        _coreOut.Vector = exit.Vector;
        _coreOut.ErrorCode = exit.ErrorCode;
        Fail(report, "fetch of the HLT after the tests", "outcome", _before, _coreOut, _refOut);
        return false;
    }

    /// <summary>
    /// Unicorn 2.0.1 stores the linear address of the next instruction (CS.base + EIP) in EIP when its instruction
    /// count stops a run (translate.c: "Sync PC in advance", gen_jmp_im(s, pc_start)). Its EIP after a retired
    /// instruction is corrected by CS's base, from the harness's own descriptor tables (0 for the flat CS).
    /// </summary>
    private static uint CodeBase(SystemCase c, ushort cs) => c.DescriptorOf(cs) is ulong d ? Descriptors.Decode(d).Base : 0;

    /// <summary>BTS leaves OF, SF, AF and PF undefined (SDM Vol. 2A, BTS "Flags Affected").</summary>
    private static uint UndefinedFlags(Instruction ins) => ins.Mnemonic is Mnemonic.Bts ? 0x894u : 0;

    private static readonly uint[] AllBits = [~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u];

    /// <summary>
    /// The bits of each general register an instruction leaves defined and comparable: SMSW r32 leaves bits 31:16
    /// undefined (SDM Vol. 2B, SMSW: "the upper 16 bits of the register are undefined"), and RDTSC's EDX:EAX is a
    /// time-stamp count (the core's counts retired instructions, Unicorn's the host's clock).
    /// </summary>
    private static void ComparedGprBits(Instruction? ins, uint[] mask)
    {
        AllBits.CopyTo(mask, 0);
        if (ins is not { } i) return;
        if (i.Code == Code.Smsw_r32m16 && i.Op0Kind == OpKind.Register) mask[i.Op0Register - Register.EAX] = 0xFFFF;
        if (i.Mnemonic == Mnemonic.Rdtsc) mask[0] = mask[2] = 0;
    }

    private static void CountOutcome(SystemFuzzReport report, SystemOutcome o)
    {
        switch (o.Kind)
        {
            case OutcomeKind.Retired: report.Retired++; break;
            case OutcomeKind.Exception:
                report.Exceptions++;
                string key = HybridVmm.Hardware.Cpu.ExceptionVector.Mnemonic((byte)o.Vector);
                report.ExceptionsByKind[key] = report.ExceptionsByKind.GetValueOrDefault(key) + 1;
                break;
            case OutcomeKind.MemoryFault: report.MemoryFaults++; break;
        }
    }

    private static string? Differences(SystemOutcome core, SystemOutcome reference, bool compareState, uint flagMask, bool compareTables, uint[] gprMask)
    {
        if (core.Kind != reference.Kind) return "outcome";
        if (core.Kind == OutcomeKind.Exception)
        {
            if (core.Vector != reference.Vector) return "vector";
            if (SystemOutcome.HasErrorCode(core.Vector) && reference.ErrorCode is uint e && core.ErrorCode != e) return "error code";
        }
        if (core.Cr2 != reference.Cr2) return "cr2";
        if (!compareState) return null;
        var sb = new StringBuilder();
        string[] names = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
        for (int i = 0; i < 8; i++) if (((core.Gprs[i] ^ reference.Gprs[i]) & gprMask[i]) != 0) sb.Append(names[i]).Append(' ');
        if (core.Eip != reference.Eip) sb.Append("eip ");
        if (((core.Eflags ^ reference.Eflags) & flagMask) != 0) sb.Append($"eflags({(core.Eflags ^ reference.Eflags) & flagMask:x}) ");
        string[] segs = ["es", "cs", "ss", "ds", "fs", "gs"];
        for (int i = 0; i < 6; i++) if (core.Selectors[i] != reference.Selectors[i]) sb.Append(segs[i]).Append(' ');
        if (core.Cr0 != reference.Cr0) sb.Append("cr0 ");
        if (core.Cr3 != reference.Cr3) sb.Append("cr3 ");
        if (core.Cr4 != reference.Cr4) sb.Append("cr4 ");
        if (compareTables)
            for (int i = 0; i < core.Tables.Length; i++) if (core.Tables[i] != reference.Tables[i]) sb.Append(SystemOutcome.TableNames[i]).Append(' ');
        return sb.Length == 0 ? null : sb.ToString().TrimEnd();
    }

    /// <summary>The image and the case's pages: every byte a test instruction can reach through an identity mapping.</summary>
    private void CompareMemory(SystemFuzzReport report)
    {
        var sb = new StringBuilder();
        int shown = 0;
        // A far transfer's CS (and a return's SS) descriptor: the core sets its accessed bit, Unicorn does not.
        int accessedByte = -1, accessedByte2 = -1;
        if (_coreOut.Kind == OutcomeKind.Retired && _case.Tests.Any(t => SystemDeviations.LoadsCsWithoutAccessedBit(t.Mnemonic, t.Code)))
        {
            accessedByte = SystemDeviations.AccessedByte(_case, _coreOut.Selectors[1]);
            accessedByte2 = SystemDeviations.AccessedByte(_case, _coreOut.Selectors[2]);
            foreach (int a in (ReadOnlySpan<int>)[accessedByte, accessedByte2])
            {
                if (a < 0 || _core.Bytes[a] == _unicorn.Bytes[a] || _core.Bytes[a] != (_unicorn.Bytes[a] | 1)) continue;
                report.KnownDeviations[SystemDeviations.AccessedBit] = report.KnownDeviations.GetValueOrDefault(SystemDeviations.AccessedBit) + 1;
                _unicorn.Bytes[a] = _core.Bytes[a];
            }
        }
        // A 16-bit SGDT/SIDT: Unicorn stores a 24-bit base (SystemDeviations.TableStoreO16).
        if (_coreOut.Kind == OutcomeKind.Retired && SystemDeviations.TableStoreHighByte(_case, _coreOut) is (int address, byte expected)
            && _core.Bytes[address] == expected && _unicorn.Bytes[address] == 0 && expected != 0)
        {
            report.KnownDeviations[SystemDeviations.TableStoreO16] = report.KnownDeviations.GetValueOrDefault(SystemDeviations.TableStoreO16) + 1;
            _unicorn.Bytes[address] = expected;
        }
        AppendDifferences(sb, ref shown, 0, SystemLayout.ImageSize);
        foreach (uint page in _case.Pages) AppendDifferences(sb, ref shown, (int)page, 0x1000);
        if (sb.Length > 0) Fail(report, "memory after the case", "memory" + sb, null, _coreOut, _refOut);
    }

    private void AppendDifferences(StringBuilder sb, ref int shown, int start, int length)
    {
        Span<byte> core = _core.Bytes, reference = _unicorn.Bytes;
        int d = Comparison.FirstDifference(core, reference, start, length);
        if (d < 0) return;
        for (int a = d & ~3; a < start + length && shown < 4; a += 4)
        {
            uint x = BitConverter.ToUInt32(core[a..]), y = BitConverter.ToUInt32(reference[a..]);
            if (x == y) continue;
            sb.Append($"\n    {a:x8} ({SystemLayout.Describe((uint)a)}): core {x:x8}, unicorn {y:x8}, initially {Initial(a):x8}");
            shown++;
        }
    }

    private uint Initial(int address)
    {
        if (address + 4 <= SystemLayout.ImageSize) return BitConverter.ToUInt32(_case.Image, address);
        int slot = _case.Pages.IndexOf((uint)address & ~0xFFFu);
        return slot < 0 ? 0 : BitConverter.ToUInt32(_case.PageSlot(slot)[(address & 0xFFF)..]);
    }

    private void Fail(SystemFuzzReport report, string where, string diff, SystemOutcome? before, SystemOutcome core, SystemOutcome reference)
    {
        report.Mismatches++;
        if (report.Reproducers.Count < MaxReproducers)
        {
            SystemCase c = _case;
            var sb = new StringBuilder();
            sb.AppendLine($"case {c.Index}: {where} differs: {diff}");
            sb.AppendLine($"  rerun : {_rerun(c.Index)}");
            sb.AppendLine($"  tests : {c.Disassembly()}");
            sb.AppendLine($"  state : cpl {c.Cpl} cr0={c.Cr0:x8} cr3={c.Cr3:x8} cr4={c.Cr4:x8} es/cs/ss/ds/fs/gs={string.Join("/", c.Selectors.Select(s => s.ToString("x2")))} ldtr={c.Ldtr:x2}");
            foreach (string note in c.Notes) sb.AppendLine($"          {note}");
            sb.AppendLine($"  input : eip={c.TestEip:x8} {Outcome.Registers(c.Gprs)} eflags={c.Eflags:x8}");
            if (before is not null) sb.AppendLine($"  before: {before.Describe()}");
            sb.AppendLine($"  core  : {core.Describe()}");
            sb.Append($"  unicorn: {reference.Describe()}");
            if (c.CompareTables)
            {
                sb.AppendLine().AppendLine($"  core   tables: {core.DescribeTables()}");
                sb.Append($"  unicorn tables: {reference.DescribeTables()}");
            }
            report.Reproducers.Add(sb.ToString());
        }
        Resync();
    }

    /// <summary>
    /// Makes the core's memory Unicorn's again where a case can reach it (the image and the case's pages, which every
    /// case rewrites), so that one difference is reported once.
    /// </summary>
    private void Resync()
    {
        _unicorn.Bytes[..SystemLayout.ImageSize].CopyTo(_core.Bytes);
        _core.Cpu.InvalidateCode(0, SystemLayout.ImageSize);
        foreach (uint page in _case.Pages)
        {
            _unicorn.Bytes.Slice((int)page, 0x1000).CopyTo(_core.Bytes[(int)page..]);
            _core.Cpu.InvalidateCode(page, 0x1000);
        }
    }

    public void Dispose() => _unicorn.Dispose();
}
