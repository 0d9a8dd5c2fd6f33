using System.Text;
using HybridVmm.Conformance.Tests.Fuzzing;
using Iced.Intel;

namespace HybridVmm.Conformance.Tests;

/// <summary>
/// The x87 against reference CPUs: random sequences (X87Sequences) run on the core, on the host processor and on
/// Unicorn, and the whole FPU state after each is compared: control, status (C0-C3, TOP, flags, ES, B) and tag words,
/// the eight registers bit for bit, the memory operands the sequence stored, AX (FNSTSW AX) and EFLAGS (FCOMI). The
/// last-instruction pointers and opcode are not compared (64-bit addresses on the host; see docs/conformance.md).
/// </summary>
[NonParallelizable]
public class X87DifferentialTests
{
    private static long Cases => (long?)FuzzSettingsX87.Cases ?? 20_000;

    [Test]
    public void CoreMatchesHostProcessorOnX87Sequences()
    {
        using NativeX87Machine native = NativeX87Machine.TryCreate() ?? throw new IgnoreException("needs an x86-64 Linux host");
        Report report = Run(native, FuzzSettings.Seed ^ 0x783837, nameof(CoreMatchesHostProcessorOnX87Sequences));
        TestContext.Out.WriteLine(report.Text);
        Assert.That(report.Mismatches, Is.EqualTo(0), report.Text);
    }

    /// <summary>
    /// Unicorn 2.0.1 is QEMU 5.0's x87, from before QEMU raised most x87 exception flags: it is not a bit-exact reference
    /// for the status word. So the three CPUs run each sequence: where the core and Unicorn differ, the host processor
    /// decides, and the test fails only if the core differs from the host too. The Unicorn departures are counted by field.
    /// </summary>
    [Test]
    public void CoreMatchesUnicornOnX87Sequences()
    {
        using UnicornX87Machine unicorn = UnicornX87Machine.TryCreate() ?? throw new IgnoreException(Testing.Reference.Unicorn.UnavailableReason ?? "no Unicorn");
        using NativeX87Machine native = NativeX87Machine.TryCreate() ?? throw new IgnoreException("Unicorn departs from the SDM on x87 flags; the host processor must arbitrate");
        var core = new CoreX87Machine();
        ulong seed = FuzzSettings.Seed ^ 0x783837;
        long first = FuzzSettings.ReplayCase ?? 0, count = FuzzSettings.ReplayCase is null ? FuzzSettingsX87.Cases ?? 5_000 : 1; // Unicorn is slow here: 5,000 in CI
        long same = 0, unicornDeparts = 0, sameBeyondFlags = 0;
        var coreWrong = new StringBuilder();
        long coreWrongCount = 0;
        var byField = new Dictionary<string, long>();
        for (long i = first; i < first + count; i++)
        {
            X87Sequences.Case c = X87Sequences.Generate(seed, i);
            byte[] mine = core.Run(c), theirs = unicorn.Run(c);
            List<string> diffs = Differences(c, mine, theirs);
            if (diffs.Count == 0) { same++; continue; }
            List<string> vsHost = Differences(c, mine, native.Run(c));
            if (vsHost.Count != 0)
            {
                if (++coreWrongCount <= 12) coreWrong.AppendLine(Describe(c, i, vsHost, native.Name, nameof(CoreMatchesUnicornOnX87Sequences)));
                continue;
            }
            unicornDeparts++;
            if (diffs.All(d => d.StartsWith("FSW", StringComparison.Ordinal)))
            {
                ushort a = BitConverter.ToUInt16(mine, X87Sequences.SaveOffset + 4), b = BitConverter.ToUInt16(theirs, X87Sequences.SaveOffset + 4);
                if (((a ^ b) & ~0x00FF) == 0) sameBeyondFlags++; // only exception flags, SF, ES differ
            }
            foreach (string d in diffs.Select(d => d.Split(':')[0]).Distinct()) byField[d] = byField.GetValueOrDefault(d) + 1;
        }
        string text = $"{count:N0} x87 sequences against Unicorn: {same:N0} identical; {unicornDeparts:N0} where Unicorn departs from the host processor "
            + $"(which the core matches), {sameBeyondFlags:N0} of them only in the status word's exception flags (bits 7:0); {coreWrongCount:N0} where the core differs from the host"
            + (byField.Count == 0 ? "" : "\n  Unicorn's departures by field: " + string.Join(", ", byField.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value}")))
            + (coreWrong.Length == 0 ? "" : "\n" + coreWrong);
        TestContext.Out.WriteLine(text);
        Assert.That(coreWrongCount, Is.EqualTo(0), text);
    }

    internal sealed record Report(long Cases, long Mismatches, string Text);

    private static Report Run(IX87Machine reference, ulong seed, string test)
    {
        var core = new CoreX87Machine();
        long first = FuzzSettings.ReplayCase ?? 0;
        long count = FuzzSettings.ReplayCase is null ? Cases : 1;
        long mismatches = 0;
        var byField = new Dictionary<string, long>();
        var examples = new StringBuilder();
        for (long i = first; i < first + count; i++)
        {
            X87Sequences.Case c = X87Sequences.Generate(seed, i);
            byte[] mine = core.Run(c);
            byte[] theirs = reference.Run(c);
            List<string> diffs = Differences(c, mine, theirs);
            if (diffs.Count == 0) continue;
            mismatches++;
            foreach (string d in diffs.Select(d => d.Split(':')[0]).Distinct()) byField[d] = byField.GetValueOrDefault(d) + 1;
            if (mismatches <= 12) examples.AppendLine(Describe(c, i, diffs, reference.Name, test));
        }
        string text = $"{count:N0} x87 sequences against the {reference.Name}: {count - mismatches:N0} identical, {mismatches:N0} different"
            + (byField.Count == 0 ? "" : "\n  by field: " + string.Join(", ", byField.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value}")))
            + (examples.Length == 0 ? "" : "\n" + examples);
        return new Report(count, mismatches, text);
    }

    private static List<string> Differences(X87Sequences.Case c, byte[] mine, byte[] theirs)
    {
        var d = new List<string>();
        if (mine.Length == 0 || theirs.Length == 0)
        {
            if (mine.Length != theirs.Length) d.Add($"outcome: core {(mine.Length == 0 ? "stopped" : "ran")}, reference {(theirs.Length == 0 ? "stopped" : "ran")}");
            return d;
        }
        int s = X87Sequences.SaveOffset;
        void Word(string name, int offset)
        {
            ushort a = BitConverter.ToUInt16(mine, offset), b = BitConverter.ToUInt16(theirs, offset);
            if (a != b) d.Add($"{name}: core {a:x4} reference {b:x4}");
        }
        Word("FCW", s);
        Word("FSW", s + 4);
        Word("FTW", s + 8);
        for (int i = 0; i < 8; i++)
        {
            int o = s + 28 + 10 * i;
            if (!mine.AsSpan(o, 10).SequenceEqual(theirs.AsSpan(o, 10)))
                d.Add($"ST{i}: core {Hex80(mine, o)} reference {Hex80(theirs, o)}");
        }
        if (!mine.AsSpan(X87Sequences.OperandOffset, 128).SequenceEqual(theirs.AsSpan(X87Sequences.OperandOffset, 128)))
            d.Add("memory: stored operands differ");
        if (c.Instructions.Any(x => x.Code is Code.Fnstsw_AX or Code.Fstsw_AX)) Word("AX", X87Sequences.EaxOffset);
        uint fa = BitConverter.ToUInt32(mine, X87Sequences.FlagsOffset) & 0x8D5, fb = BitConverter.ToUInt32(theirs, X87Sequences.FlagsOffset) & 0x8D5;
        if (fa != fb) d.Add($"EFLAGS: core {fa:x3} reference {fb:x3}");
        return d;
    }

    private static string Hex80(byte[] b, int o) => $"{BitConverter.ToUInt16(b, o + 8):x4}:{BitConverter.ToUInt64(b, o):x16}";

    private static string Describe(X87Sequences.Case c, long index, List<string> diffs, string reference, string test)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"case {index}: rerun HYBRIDVMM_FUZZ_CASE={index} dotnet test tests/HybridVmm.Conformance.Tests --filter Name={test}");
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        sb.Append("  start: FCW=").Append(BitConverter.ToUInt16(c.Block, 0).ToString("x4"))
          .Append(" TOP=").Append((BitConverter.ToUInt16(c.Block, 4) >> 11) & 7)
          .Append(" FTW=").Append(BitConverter.ToUInt16(c.Block, 8).ToString("x4")).Append(" EFLAGS=").Append(c.Eflags.ToString("x3"));
        for (int i = 0; i < 8; i++) sb.Append($" ST{i}={Hex80(c.Block, 28 + 10 * i)}");
        sb.AppendLine();
        foreach (Instruction ins in c.Instructions)
        {
            formatter.Format(ins, output);
            string text = output.ToStringAndReset();
            string operand = "";
            if (ins.Op0Kind == OpKind.Memory)
            {
                int disp = (int)ins.MemoryDisplacement32;
                operand = "   ; operand " + Convert.ToHexString(c.Block, disp, Math.Max(2, Math.Min(10, ins.MemorySize.GetSize())));
            }
            sb.AppendLine($"  {text}{operand}");
        }
        foreach (string d in diffs) sb.AppendLine("  " + d);
        return sb.ToString();
    }
}

internal static class FuzzSettingsX87
{
    /// <summary>HYBRIDVMM_FUZZ_X87: sequences per reference (default 20,000).</summary>
    public static long? Cases => long.TryParse(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_X87"), out long n) ? n : null;
}
