using System.Runtime.InteropServices;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// A minimal P/Invoke binding to libunicorn 2 (QEMU TCG), used as a reference CPU to cross-check
/// single instructions during development. The differential fuzzer (random instructions at volume, with
/// its own batch-oriented binding) is in tests/HybridVmm.Conformance.Tests; see docs/conformance.md.
/// </summary>
internal sealed unsafe class UnicornReference : IDisposable
{
    private const string Library = "libunicorn.so.2";
    private const int ArchX86 = 4;
    private const int Mode32 = 1 << 2;
    private const uint ProtAll = 7;
    public const int RegEax = 19, RegEbp = 20, RegEbx = 21, RegEcx = 22, RegEdi = 23, RegEdx = 24,
        RegEflags = 25, RegEip = 26, RegEsi = 29, RegEsp = 30;
    public const uint MemorySize = 0x100000;

    private IntPtr _uc;

    [DllImport(Library)] private static extern int uc_open(int arch, int mode, out IntPtr uc);
    [DllImport(Library)] private static extern int uc_close(IntPtr uc);
    [DllImport(Library)] private static extern int uc_mem_map(IntPtr uc, ulong address, nuint size, uint perms);
    [DllImport(Library)] private static extern int uc_mem_write(IntPtr uc, ulong address, byte* bytes, nuint size);
    [DllImport(Library)] private static extern int uc_mem_read(IntPtr uc, ulong address, byte* bytes, nuint size);
    [DllImport(Library)] private static extern int uc_reg_write(IntPtr uc, int reg, void* value);
    [DllImport(Library)] private static extern int uc_reg_read(IntPtr uc, int reg, void* value);
    [DllImport(Library)] private static extern int uc_emu_start(IntPtr uc, ulong begin, ulong until, ulong timeout, nuint count);

    private UnicornReference(IntPtr uc) => _uc = uc;

    /// <summary>Null when libunicorn is not installed.</summary>
    public static UnicornReference? TryCreate()
    {
        try
        {
            if (uc_open(ArchX86, Mode32, out IntPtr uc) != 0) return null;
            if (uc_mem_map(uc, 0, MemorySize, ProtAll) != 0) return null;
            return new UnicornReference(uc);
        }
        catch (DllNotFoundException)
        {
            return null;
        }
    }

    public void Write(uint address, ReadOnlySpan<byte> bytes)
    {
        fixed (byte* p = bytes) uc_mem_write(_uc, address, p, (nuint)bytes.Length);
    }

    public byte[] Read(uint address, int length)
    {
        var bytes = new byte[length];
        fixed (byte* p = bytes) uc_mem_read(_uc, address, p, (nuint)length);
        return bytes;
    }

    public void SetReg(int reg, uint value)
    {
        ulong v = value;
        uc_reg_write(_uc, reg, &v);
    }

    public uint GetReg(int reg)
    {
        ulong v = 0;
        uc_reg_read(_uc, reg, &v);
        return (uint)v;
    }

    /// <summary>Runs <paramref name="count"/> instructions from <paramref name="begin"/>; false if the CPU raised an exception.</summary>
    public bool Run(uint begin, uint until, int count) => uc_emu_start(_uc, begin, until, 0, (nuint)count) == 0;

    public void Dispose()
    {
        if (_uc != IntPtr.Zero)
        {
            uc_close(_uc);
            _uc = IntPtr.Zero;
        }
    }
}
