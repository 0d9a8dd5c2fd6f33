using Iced.Intel;
using HybridVmm.Conformance.Tests.Reference;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>
/// The native-hardware check: register forms of ALU, shift/rotate, multiply/divide, bit, CMOV/SETcc, BSWAP
/// and XADD/CMPXCHG instructions run on the core, on the host processor and (when installed) on Unicorn.
/// Core vs. hardware must agree on defined state; Unicorn vs. hardware disagreements are collected.
/// </summary>
internal sealed class NativeFuzzer : IDisposable
{
    private readonly NativeCpu _native;
    private readonly CoreSide _core = new();
    private readonly UnicornSide? _unicorn;
    private readonly ulong _seed;
    private readonly CaseGenerator _generator;
    private readonly TestCase _case = new();
    private readonly Outcome _coreOut = new(), _nativeOut = new(), _refOut = new();
    private readonly byte[] _native64 = new byte[16];
    private readonly byte[] _slot = new byte[MachineLayout.SlotSize];
    private readonly byte[] _nativeMemory = new byte[8];
    private readonly Encoder _encoder64;
    private readonly Writer _writer = new();

    private NativeFuzzer(NativeCpu native, ulong seed, InstructionForm[] forms)
    {
        _native = native;
        _seed = seed;
        _generator = new CaseGenerator(seed, forms, native: true);
        _unicorn = UnicornSide.TryCreate();
        _encoder64 = Encoder.Create(64, _writer);
    }

    public static NativeFuzzer? TryCreate(ulong seed, InstructionForm[] forms, Func<long, string> rerun)
    {
        NativeCpu? native = NativeCpu.TryCreate();
        return native is null ? null : new NativeFuzzer(native, seed, forms) { Rerun = rerun };
    }

    public bool HasUnicorn => _unicorn is not null;

    /// <summary>Disagreements between Unicorn and the host CPU on defined state, by form.</summary>
    public readonly Dictionary<Code, (long Count, string Example)> UnicornVsHardware = [];
    /// <summary>Core vs. hardware differences on SDM-undefined flags (masked), by mnemonic and flags.</summary>
    public readonly Dictionary<Mnemonic, (long Count, uint Flags)> UndefinedVsHardware = [];
    public long Skipped;
    public readonly List<string> EncodeErrors = [];

    /// <summary>The command that replays one case (set by the test, which knows its seed and name).</summary>
    public Func<long, string> Rerun { get; private init; } = index => $"case {index}";

    public FuzzReport Run(long firstCase, long count)
    {
        var report = new FuzzReport();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        TestCase c = _case;
        for (long index = firstCase; index < firstCase + count; index++)
        {
            report.Cases++;
            if (!_generator.Generate(index, MachineLayout.CodeBase, c) || !Encode64(c, out int length)) { report.NotEncodable++; continue; }
            if (DivideFaults(c)) { Skipped++; continue; }

            _slot.AsSpan().Fill(0xF4);
            c.Code.CopyTo(_slot);
            _core.LoadCode(MachineLayout.CodeBase, _slot);
            _core.Run(c, _coreOut);
            RunNative(c, length);
            report.Retired++;

            string? diff = Comparison.Differences(c, _coreOut, _nativeOut, default, default, compareMemory: false, out uint undefinedDiff);
            UndefinedState.Flags(c, out bool resultUndefined);
            if (c.EffectiveAddress != 0 && _coreOut.Kind == OutcomeKind.Retired && !resultUndefined
                && !_core.Bytes.Slice((int)c.EffectiveAddress, 8).SequenceEqual(_nativeMemory))
            {
                diff = (diff is null ? "" : diff + " ") + $"memory@{c.EffectiveAddress:x} (core {Convert.ToHexString(_core.Bytes.Slice((int)c.EffectiveAddress, 8))}, host {Convert.ToHexString(_nativeMemory)})";
            }
            if (undefinedDiff != 0)
            {
                var (n, f) = UndefinedVsHardware.GetValueOrDefault(c.Form.Mnemonic);
                UndefinedVsHardware[c.Form.Mnemonic] = (n + 1, f | undefinedDiff);
            }
            if (diff is not null)
            {
                report.Mismatches++;
                report.MismatchesByForm[c.Form.Code] = report.MismatchesByForm.GetValueOrDefault(c.Form.Code) + 1;
                if (report.Reproducers.Count < 12)
                    report.Reproducers.Add(Comparison.Reproducer(Rerun(c.Index), c, _coreOut, _nativeOut, "host", diff, default, default));
            }

            if (_unicorn is not null)
            {
                _unicorn.LoadCode(MachineLayout.CodeBase, _slot);
                _unicorn.Run(c, _refOut);
                string? refDiff = Comparison.Differences(c, _refOut, _nativeOut, default, default, compareMemory: false, out _);
                if (refDiff is not null)
                {
                    var (n, example) = UnicornVsHardware.GetValueOrDefault(c.Form.Code);
                    UnicornVsHardware[c.Form.Code] = (n + 1, example ?? Comparison.Reproducer(Rerun(c.Index), c, _refOut, _nativeOut, "host", refDiff, default, default).Replace("core  :", "unicorn:"));
                }
            }
        }
        report.Elapsed = watch.Elapsed;
        return report;
    }

    private void RunNative(TestCase c, int length)
    {
        _nativeOut.Kind = OutcomeKind.Retired;
        c.Gprs.CopyTo(_nativeOut.Gprs, 0);
        uint flags = c.Eflags;
        if (c.EffectiveAddress != 0) c.InputAt(c.EffectiveAddress)[..8].CopyTo(_nativeMemory);
        _native.Run(_native64.AsSpan(0, length), _nativeOut.Gprs, ref flags, _nativeMemory);
        // The host keeps its own ESP, EIP and control flags: take them from the core's run.
        _nativeOut.Gprs[4] = _coreOut.Gprs[4];
        _nativeOut.Eip = c.Eip + (uint)c.Length;
        _nativeOut.Eflags = (flags & Comparison.StatusFlags) | (_coreOut.Eflags & ~Comparison.StatusFlags);
    }

    private bool Encode64(TestCase c, out int length)
    {
        _writer.Reset(_native64);
        Instruction instruction = c.Instruction;
        if (c.EffectiveAddress != 0)
        {
            // The memory operand becomes [r15+40] in the host stub's state block.
            instruction.MemoryBase = Register.R15;
            instruction.MemoryIndex = Register.None;
            instruction.MemoryIndexScale = 1;
            instruction.MemoryDisplacement64 = NativeCpu.MemoryOffset;
            instruction.MemoryDisplSize = 1;
            instruction.SegmentPrefix = Register.None;
        }
        bool ok = _encoder64.TryEncode(instruction, 0, out uint n, out string? error);
        if (!ok && EncodeErrors.Count < 5) EncodeErrors.Add($"{c.Form.Code}: {error}");
        length = (int)n;
        return ok && n <= NativeCpu.SlotSize;
    }

    /// <summary>True when DIV/IDIV would raise #DE (zero divisor or quotient overflow): such inputs are not run natively.</summary>
    public static bool DivideFaults(TestCase c)
    {
        if (c.Form.Mnemonic is not (Mnemonic.Div or Mnemonic.Idiv)) return false;
        Register r = c.Instruction.Op0Register;
        int bits = c.Form.OperandBits;
        uint[] g = c.Gprs;
        uint divisor = c.Instruction.Op0Kind == OpKind.Memory
            ? System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(c.InputAt(c.EffectiveAddress))
                & (bits == 8 ? 0xffu : bits == 16 ? 0xffffu : 0xffffffffu)
            : r switch
        {
            >= Register.EAX and <= Register.EDI => g[r - Register.EAX],
            >= Register.AX and <= Register.DI => g[r - Register.AX] & 0xffff,
            >= Register.AL and <= Register.BL => g[r - Register.AL] & 0xff,
            _ => (g[r - Register.AH] >> 8) & 0xff,
        };
        if (divisor == 0) return true;
        bool signed = c.Form.Mnemonic == Mnemonic.Idiv;
        if (bits == 8)
        {
            uint ax = g[0] & 0xffff;
            if (!signed) return ax / divisor > 0xff;
            int q = (short)ax / (sbyte)divisor;
            return q is < -128 or > 127;
        }
        if (bits == 16)
        {
            uint dividend = ((g[2] & 0xffff) << 16) | (g[0] & 0xffff);
            if (!signed) return dividend / divisor > 0xffff;
            long q = (long)(int)dividend / (short)divisor;
            return q is < short.MinValue or > short.MaxValue;
        }
        ulong wide = ((ulong)g[2] << 32) | g[0];
        if (!signed) return wide / divisor > uint.MaxValue;
        Int128 sq = (Int128)(long)wide / (int)divisor;
        return sq < int.MinValue || sq > int.MaxValue;
    }

    public void Dispose()
    {
        _native.Dispose();
        _unicorn?.Dispose();
    }

    private sealed class Writer : CodeWriter
    {
        private byte[] _buffer = [];
        private int _position;
        public void Reset(byte[] buffer) { _buffer = buffer; _position = 0; }
        public override void WriteByte(byte value) { if (_position < _buffer.Length) _buffer[_position] = value; _position++; }
    }
}
