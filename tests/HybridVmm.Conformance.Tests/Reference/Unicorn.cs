using System.Runtime.InteropServices;

namespace HybridVmm.Conformance.Tests.Reference;

/// <summary>
/// A small P/Invoke binding to libunicorn 2 (QEMU TCG) in 32-bit protected mode. Guest memory is a native
/// buffer the test owns and maps with <c>uc_mem_map_ptr</c>, so setting up and comparing memory windows
/// costs no calls; registers go through the batch calls. One instance serves many test cases.
/// </summary>
internal sealed unsafe class Unicorn : IDisposable
{
    private const string Library = "libunicorn.so.2";
    private const int ArchX86 = 4;
    private const int Mode32 = 1 << 2;
    private const uint ProtReadWrite = 3, ProtReadExecute = 5;
    private const int HookIntr = 1;
    // UC_CTL(type, nr, rw) = type | nr << 26 | rw << 30 (unicorn.h); rw 1 = write.
    private const int CtlCpuModel = 7 | (1 << 26) | (1 << 30);
    private const int CtlRemoveCache = 9 | (2 << 26) | (1 << 30);
    /// <summary>UC_CPU_X86_HASWELL: a model with BMI1/ABM, so F3 0F BC/BD are TZCNT/LZCNT as on the core and the host.</summary>
    public const int CpuModelHaswell = 19;

    // uc_x86_reg values for EAX..EDI in the core's Gpr order (EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI).
    public static readonly int[] GprIds = [19, 22, 24, 21, 30, 20, 29, 23];
    public const int RegEflags = 25, RegEip = 26;

    public const int ErrOk = 0, ErrReadUnmapped = 6, ErrWriteUnmapped = 7, ErrFetchUnmapped = 8, ErrInsnInvalid = 10, ErrWriteProtected = 12, ErrFetchProtected = 14, ErrException = 21;

    [DllImport(Library)] private static extern int uc_open(int arch, int mode, out IntPtr uc);
    [DllImport(Library)] private static extern int uc_close(IntPtr uc);
    [DllImport(Library)] private static extern int uc_mem_map_ptr(IntPtr uc, ulong address, nuint size, uint perms, void* ptr);
    [DllImport(Library)] private static extern int uc_reg_write_batch(IntPtr uc, int* regs, void** values, int count);
    [DllImport(Library)] private static extern int uc_reg_read_batch(IntPtr uc, int* regs, void** values, int count);
    [DllImport(Library)] private static extern int uc_emu_start(IntPtr uc, ulong begin, ulong until, ulong timeout, nuint count);
    [DllImport(Library)] private static extern int uc_emu_stop(IntPtr uc);
    [DllImport(Library)] private static extern int uc_hook_add(IntPtr uc, out IntPtr hook, int type, void* callback, void* userData, ulong begin, ulong end);
    [DllImport(Library)] private static extern int uc_context_alloc(IntPtr uc, out IntPtr context);
    [DllImport(Library)] private static extern int uc_context_save(IntPtr uc, IntPtr context);
    [DllImport(Library)] private static extern int uc_context_restore(IntPtr uc, IntPtr context);
    [DllImport(Library)] private static extern int uc_context_free(IntPtr context);
    [DllImport(Library, EntryPoint = "uc_ctl")] private static extern int uc_ctl_int(IntPtr uc, int control, int value);
    [DllImport(Library, EntryPoint = "uc_ctl")] private static extern int uc_ctl_range(IntPtr uc, int control, ulong begin, ulong end);

    private IntPtr _uc;
    private readonly GCHandle _self;
    private readonly int* _regIds;
    private readonly ulong* _regValues;
    private readonly void** _regPointers;
    private const int RegCount = 10; // 8 GPRs, EFLAGS, EIP

    private Unicorn(IntPtr uc, byte* memory)
    {
        _uc = uc;
        Memory = memory;
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

    /// <summary>Vector of the last CPU exception or software interrupt, or -1.</summary>
    public int LastInterrupt { get; private set; } = -1;

    /// <summary>Why not available, when <see cref="TryCreate"/> returned null.</summary>
    public static string? UnavailableReason { get; private set; }

    /// <summary>Null when libunicorn.so.2 is not installed.</summary>
    public static Unicorn? TryCreate(byte* memory, uint size, Func<uint, bool> writable)
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
                err = uc_mem_map_ptr(uc, start, end - start, w ? ProtReadWrite : ProtReadExecute, memory + start);
                start = end;
            }
            if (err != 0) { uc_close(uc); UnavailableReason = $"uc_mem_map_ptr failed: {err}"; return null; }
            var unicorn = new Unicorn(uc, memory);
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

    /// <summary>
    /// Executes one instruction at <paramref name="eip"/> (a REP string instruction: all its iterations, up to
    /// <paramref name="until"/>); returns the uc_err code. After an exception the CPU state saved at creation is
    /// restored: QEMU remembers an exception the hook swallowed and would turn the next one into a #DF.
    /// </summary>
    public int Step(uint eip, uint until = 0xFFFFFFFF, int count = 1)
    {
        LastInterrupt = -1;
        int err = uc_emu_start(_uc, eip, until, 0, (nuint)count);
        return err;
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

    private IntPtr _context;

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
            NativeMemory.Free(_regIds);
            NativeMemory.Free(_regValues);
            NativeMemory.Free(_regPointers);
        }
    }
}
