using System.Runtime.InteropServices;

namespace HybridVmm.Testing.Reference;

/// <summary>
/// The P/Invoke binding to libunicorn 2 (QEMU TCG) in 32-bit protected mode: the reference CPU of the
/// hardware cross-checks and of the differential fuzzers (docs/conformance.md). Guest memory is a native
/// buffer mapped with <c>uc_mem_map_ptr</c>, so setting up and comparing memory windows costs no calls;
/// registers go one by one (<see cref="SetReg"/>) or through the batch calls (<see cref="SetState"/>).
/// One instance serves many test cases.
/// </summary>
public sealed unsafe class Unicorn : IDisposable
{
    private const string Library = "libunicorn.so.2";
    private const int ArchX86 = 4;
    private const int Mode32 = 1 << 2;
    private const uint ProtReadWrite = 3, ProtReadExecute = 5, ProtAll = 7;
    private const int HookIntr = 1;
    // UC_CTL(type, nr, rw) = type | nr << 26 | rw << 30 (unicorn.h); rw 1 = write.
    private const int CtlCpuModel = 7 | (1 << 26) | (1 << 30);
    private const int CtlRemoveCache = 9 | (2 << 26) | (1 << 30);
    private const int CtlUseExits = 4 | (1 << 26) | (1 << 30);
    /// <summary>UC_CPU_X86_HASWELL: a model with BMI1/ABM, so F3 0F BC/BD are TZCNT/LZCNT as on the core and the host.</summary>
    public const int CpuModelHaswell = 19;

    /// <summary>uc_x86_reg values.</summary>
    public const int RegEax = 19, RegEbp = 20, RegEbx = 21, RegEcx = 22, RegEdi = 23, RegEdx = 24,
        RegEflags = 25, RegEip = 26, RegEsi = 29, RegEsp = 30;

    /// <summary>uc_x86_reg values of the segment selectors (a write loads the descriptor as MOV Sreg does) and CR0-CR4.</summary>
    public const int RegCs = 11, RegDs = 17, RegEs = 28, RegFs = 32, RegGs = 33, RegSs = 49, RegCr0 = 50, RegCr2 = 52, RegCr3 = 53, RegCr4 = 54;

    /// <summary>uc_x86_reg values of the memory-management registers (read and written as a <c>uc_x86_mmr</c>).</summary>
    public const int RegIdtr = 242, RegGdtr = 243, RegLdtr = 244, RegTr = 245;

    /// <summary>uc_x86_reg values for ES, CS, SS, DS, FS, GS (the core's Sreg order).</summary>
    public static readonly int[] SegmentIds = [RegEs, RegCs, RegSs, RegDs, RegFs, RegGs];

    /// <summary>uc_x86_reg values for EAX..EDI in the core's Gpr order (EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI).</summary>
    public static readonly int[] GprIds = [RegEax, RegEcx, RegEdx, RegEbx, RegEsp, RegEbp, RegEsi, RegEdi];

    /// <summary>Size of the memory <see cref="TryCreate()"/> maps at physical 0.</summary>
    public const uint MemorySize = 0x100000;

    public const int ErrOk = 0, ErrReadUnmapped = 6, ErrWriteUnmapped = 7, ErrFetchUnmapped = 8, ErrInsnInvalid = 10, ErrWriteProtected = 12, ErrFetchProtected = 14, ErrException = 21;

    [DllImport(Library)] private static extern int uc_open(int arch, int mode, out IntPtr uc);
    [DllImport(Library)] private static extern int uc_close(IntPtr uc);
    [DllImport(Library)] private static extern int uc_mem_map_ptr(IntPtr uc, ulong address, nuint size, uint perms, void* ptr);
    [DllImport(Library)] private static extern int uc_mem_map(IntPtr uc, ulong address, nuint size, uint perms);
    [DllImport(Library)] private static extern int uc_mem_write(IntPtr uc, ulong address, byte* bytes, nuint size);
    [DllImport(Library)] private static extern int uc_mem_read(IntPtr uc, ulong address, byte* bytes, nuint size);
    [DllImport(Library)] private static extern int uc_reg_write(IntPtr uc, int reg, void* value);
    [DllImport(Library)] private static extern int uc_reg_read(IntPtr uc, int reg, void* value);
    [DllImport(Library)] private static extern int uc_reg_write_batch(IntPtr uc, int* regs, void** values, int count);
    [DllImport(Library)] private static extern int uc_reg_read_batch(IntPtr uc, int* regs, void** values, int count);
    [DllImport(Library)] private static extern int uc_emu_start(IntPtr uc, ulong begin, ulong until, ulong timeout, nuint count);
    [DllImport(Library)] private static extern int uc_emu_stop(IntPtr uc);
    [DllImport(Library)] private static extern int uc_hook_add(IntPtr uc, out IntPtr hook, int type, void* callback, void* userData, ulong begin, ulong end);
    [DllImport(Library)] private static extern int uc_context_alloc(IntPtr uc, out IntPtr context);
    [DllImport(Library)] private static extern int uc_context_save(IntPtr uc, IntPtr context);
    [DllImport(Library)] private static extern int uc_context_restore(IntPtr uc, IntPtr context);
    [DllImport(Library)] private static extern int uc_context_free(IntPtr context);
    [DllImport(Library)] private static extern nuint uc_context_size(IntPtr uc);
    [DllImport(Library, EntryPoint = "uc_ctl")] private static extern int uc_ctl_int(IntPtr uc, int control, int value);
    [DllImport(Library, EntryPoint = "uc_ctl")] private static extern int uc_ctl_range(IntPtr uc, int control, ulong begin, ulong end);

    private IntPtr _uc;
    private readonly GCHandle _self;
    private readonly bool _ownsMemory;
    private readonly int* _regIds;
    private readonly ulong* _regValues;
    private readonly void** _regPointers;
    private const int RegCount = 10; // 8 GPRs, EFLAGS, EIP
    private IntPtr _context;

    private Unicorn(IntPtr uc, byte* memory, bool ownsMemory)
    {
        _uc = uc;
        Memory = memory;
        _ownsMemory = ownsMemory;
        _self = GCHandle.Alloc(this);
        _regIds = (int*)NativeMemory.Alloc(RegCount * sizeof(int));
        _regValues = (ulong*)NativeMemory.AllocZeroed(RegCount * sizeof(ulong));
        _regPointers = (void**)NativeMemory.Alloc((nuint)(RegCount * sizeof(void*)));
        for (int i = 0; i < 8; i++) _regIds[i] = GprIds[i];
        _regIds[8] = RegEflags;
        _regIds[9] = RegEip;
        for (int i = 0; i < RegCount; i++) _regPointers[i] = _regValues + i;
    }

    /// <summary>The guest memory Unicorn sees (physical = linear, flat segments).</summary>
    public byte* Memory { get; }

    /// <summary>Vector of the last CPU exception or software interrupt, or -1 (only with the fuzzers' <see cref="TryCreate(byte*, uint, Func{uint, bool})"/>).</summary>
    public int LastInterrupt { get; private set; } = -1;

    /// <summary>Why not available, when a <c>TryCreate</c> returned null.</summary>
    public static string? UnavailableReason { get; private set; }

    /// <summary>
    /// For single-instruction cross-checks: <see cref="MemorySize"/> bytes of zeroed memory of its own at physical 0,
    /// readable, writable and executable, on Unicorn's default CPU model. A CPU exception ends <see cref="Run"/>
    /// with false. Null when libunicorn.so.2 is not installed.
    /// </summary>
    public static Unicorn? TryCreate()
    {
        byte* memory = (byte*)NativeMemory.AlignedAlloc(MemorySize, 4096);
        new Span<byte>(memory, (int)MemorySize).Clear();
        try
        {
            if (uc_open(ArchX86, Mode32, out IntPtr uc) != 0) { UnavailableReason = "uc_open failed"; NativeMemory.AlignedFree(memory); return null; }
            int err = uc_mem_map_ptr(uc, 0, MemorySize, ProtAll, memory);
            if (err != 0) { uc_close(uc); NativeMemory.AlignedFree(memory); UnavailableReason = $"uc_mem_map_ptr failed: {err}"; return null; }
            return new Unicorn(uc, memory, ownsMemory: true);
        }
        catch (DllNotFoundException e)
        {
            NativeMemory.AlignedFree(memory);
            UnavailableReason = "libunicorn.so.2 not installed (Debian package libunicorn2): " + e.Message;
            return null;
        }
    }

    /// <summary>
    /// For the differential fuzzers: maps <paramref name="size"/> bytes of the caller's <paramref name="memory"/> at
    /// physical 0 (writable pages read/write, the others read/execute), on a Haswell model, with a hook that stops
    /// at any CPU exception or software interrupt and records it in <see cref="LastInterrupt"/>.
    /// Null when libunicorn.so.2 is not installed.
    /// </summary>
    public static Unicorn? TryCreate(byte* memory, uint size, Func<uint, bool> writable) => TryCreate(memory, size, writable, executeWritable: false);

    /// <param name="executeWritable">Map writable pages read/write/execute (for system-state fuzzing, whose guest page
    /// tables decide what is code).</param>
    public static Unicorn? TryCreate(byte* memory, uint size, Func<uint, bool> writable, bool executeWritable)
    {
        try
        {
            if (uc_open(ArchX86, Mode32, out IntPtr uc) != 0) { UnavailableReason = "uc_open failed"; return null; }
            uc_ctl_int(uc, CtlCpuModel, CpuModelHaswell);
            // Runs of pages with the same permission: writable pages read/write, the others read/execute.
            int err = 0;
            for (uint start = 0; start < size && err == 0;)
            {
                bool w = writable(start);
                uint end = start + 0x1000;
                while (end < size && writable(end) == w) end += 0x1000;
                err = uc_mem_map_ptr(uc, start, end - start, w ? (executeWritable ? ProtAll : ProtReadWrite) : ProtReadExecute, memory + start);
                start = end;
            }
            if (err != 0) { uc_close(uc); UnavailableReason = $"uc_mem_map_ptr failed: {err}"; return null; }
            var unicorn = new Unicorn(uc, memory, ownsMemory: false);
            delegate* unmanaged<IntPtr, uint, IntPtr, void> onInterrupt = &OnInterrupt;
            err = uc_hook_add(uc, out _, HookIntr, onInterrupt, (void*)GCHandle.ToIntPtr(unicorn._self), 1, 0);
            if (err != 0) { unicorn.Dispose(); UnavailableReason = $"uc_hook_add failed: {err}"; return null; }
            return unicorn;
        }
        catch (DllNotFoundException e)
        {
            UnavailableReason = "libunicorn.so.2 not installed (Debian package libunicorn2): " + e.Message;
            return null;
        }
    }

    [UnmanagedCallersOnly]
    private static void OnInterrupt(IntPtr uc, uint vector, IntPtr user)
    {
        var self = (Unicorn)GCHandle.FromIntPtr(user).Target!;
        self.LastInterrupt = (int)vector;
        uc_emu_stop(uc);
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

    /// <summary>
    /// GDTR, IDTR, LDTR or TR (<see cref="RegGdtr"/> etc.): unicorn.h's <c>uc_x86_mmr</c> (selector, base, limit, flags;
    /// the selector is not used by GDTR and IDTR).
    /// </summary>
    public (ushort Selector, uint Base, uint Limit) GetMmr(int reg)
    {
        Mmr m = default;
        uc_reg_read(_uc, reg, &m);
        return (m.Selector, (uint)m.Base, m.Limit);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Mmr
    {
        public ushort Selector;
        public ulong Base;
        public uint Limit;
        public uint Flags;
    }

    /// <summary>
    /// Stops runs by instruction count only (UC_CTL_UC_USE_EXITS with no exits): the until address of
    /// <see cref="Step"/> is then ignored. Without this, Unicorn 2.0.1 drops the translated block at until - 1 after
    /// every run by translating that address through the guest's page tables (resume_all_vcpus), which sets
    /// accessed bits, and on a fault changes CR2 and the error code.
    /// </summary>
    public void StopByCountOnly() => uc_ctl_int(_uc, CtlUseExits, 1);

    /// <summary>
    /// Maps zeroed memory of Unicorn's own (allocated lazily by the host) at [address, address + size). Unicorn 2.0.1
    /// checks a linear address against its mapped physical regions before it translates it (load_helper's
    /// memory_mapping), so with paging on every linear address a guest touches must also fall in some region.
    /// </summary>
    public bool MapRam(ulong address, ulong size) => uc_mem_map(_uc, address, (nuint)size, ProtAll) == ErrOk;

    /// <summary>Drops translated blocks of a code range the test rewrote through <see cref="Memory"/>.</summary>
    public void InvalidateCode(uint begin, uint end) => uc_ctl_range(_uc, CtlRemoveCache, begin, end);

    public void SetState(ReadOnlySpan<uint> gprs, uint eflags, uint eip)
    {
        for (int i = 0; i < 8; i++) _regValues[i] = gprs[i];
        _regValues[8] = eflags;
        _regValues[9] = eip;
        uc_reg_write_batch(_uc, _regIds, _regPointers, RegCount);
    }

    public void GetState(Span<uint> gprs, out uint eflags, out uint eip)
    {
        for (int i = 0; i < RegCount; i++) _regValues[i] = 0;
        uc_reg_read_batch(_uc, _regIds, _regPointers, RegCount);
        for (int i = 0; i < 8; i++) gprs[i] = (uint)_regValues[i];
        eflags = (uint)_regValues[8];
        eip = (uint)_regValues[9];
    }

    /// <summary>Runs <paramref name="count"/> instructions from <paramref name="begin"/> (0: until <paramref name="until"/>); false if the CPU raised an exception.</summary>
    public bool Run(uint begin, uint until, int count) => Step(begin, until, count) == ErrOk;

    /// <summary>
    /// Executes one instruction at <paramref name="eip"/> (a REP string instruction: all its iterations, up to
    /// <paramref name="until"/>); returns the uc_err code. After an exception, call <see cref="ResetCpu"/>:
    /// QEMU remembers an exception the hook swallowed and would turn the next one into a #DF.
    /// </summary>
    public int Step(uint eip, uint until = 0xFFFFFFFF, int count = 1)
    {
        LastInterrupt = -1;
        return uc_emu_start(_uc, eip, until, 0, (nuint)count);
    }

    // Byte offset of QEMU's CPUX86State.error_code in a saved context (found by CalibrateErrorCode); -1 if unknown.
    private int _errorCodeOffset = -1;
    private IntPtr _scratchContext;

    /// <summary>
    /// Unicorn reports an exception's vector to the interrupt hook but not its error code, and never delivers it
    /// through the IDT. QEMU keeps the code in CPUX86State.error_code, which <c>uc_context_save</c> copies; this finds
    /// its offset in the saved context by raising two exceptions with known, distinct error codes (see
    /// <paramref name="raise"/>) and keeping the one 32-bit slot that held each. False if no single slot matched.
    /// </summary>
    /// <param name="raise">Raises an exception with the given error code on this instance (and returns true if it did).</param>
    public bool CalibrateErrorCode(Func<uint, bool> raise)
    {
        int size = (int)uc_context_size(_uc);
        if (_scratchContext == IntPtr.Zero) uc_context_alloc(_uc, out _scratchContext);
        HashSet<int>? candidates = null;
        foreach (uint code in (ReadOnlySpan<uint>)[0x1238, 0x2344, 0x0F50])
        {
            if (!raise(code)) return false;
            uc_context_save(_uc, _scratchContext);
            var blob = new ReadOnlySpan<byte>((void*)_scratchContext, size);
            var found = new HashSet<int>();
            for (int offset = 0; offset + 4 <= size; offset += 4)
            {
                if (BitConverter.ToUInt32(blob[offset..]) == code) found.Add(offset);
            }
            if (candidates is null) candidates = found; else candidates.IntersectWith(found);
            ResetCpu();
        }
        if (candidates is not { Count: 1 }) return false;
        _errorCodeOffset = candidates.First();
        return true;
    }

    /// <summary>The error code of the last exception (after <see cref="CalibrateErrorCode"/>; call before <see cref="ResetCpu"/>).</summary>
    public uint? LastErrorCode
    {
        get
        {
            if (_errorCodeOffset < 0) return null;
            uc_context_save(_uc, _scratchContext);
            return *(uint*)((byte*)_scratchContext + _errorCodeOffset);
        }
    }

    /// <summary>Forgets pending exception state (after an exception the hook stopped).</summary>
    public void ResetCpu()
    {
        if (_context == IntPtr.Zero)
        {
            return;
        }
        uc_context_restore(_uc, _context);
    }

    /// <summary>Saves the current CPU state as the one <see cref="ResetCpu"/> returns to.</summary>
    public void SaveResetState()
    {
        if (_context == IntPtr.Zero) uc_context_alloc(_uc, out _context);
        uc_context_save(_uc, _context);
    }

    public void Dispose()
    {
        if (_uc != IntPtr.Zero)
        {
            uc_close(_uc);
            _uc = IntPtr.Zero;
            _self.Free();
            if (_context != IntPtr.Zero) uc_context_free(_context);
            if (_scratchContext != IntPtr.Zero) uc_context_free(_scratchContext);
            NativeMemory.Free(_regIds);
            NativeMemory.Free(_regValues);
            NativeMemory.Free(_regPointers);
            if (_ownsMemory) NativeMemory.AlignedFree(Memory);
        }
    }
}
