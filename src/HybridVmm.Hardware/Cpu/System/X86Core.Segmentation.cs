using System.Runtime.CompilerServices;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Segmentation (SDM Vol. 3A, chapter 3 and 5.4): selectors load their descriptor from the GDT or the LDT into the
/// hidden cache, with the checks of MOV/POP/LxS to a segment register; every memory access adds its segment's base
/// and, for a segment that is not flat, is checked against its limit (expand-up or expand-down).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>The hot path pays one test per access: <see cref="_nonFlatSegments"/> has a bit for each segment register
/// whose cache is not base 0, limit 4 GiB, usable and (for data) writable and expand-up. Flat segments, which is
/// what almost every kernel uses, add nothing and check nothing.</item>
/// <item>Until the guest loads a GDT (GDTR limit 0), a selector loads the flat cache the Multiboot boot state
/// implies: the boot GDT of QEMU's and GRUB's loaders is not in guest memory here.</item>
/// <item>Real mode (CR0.PE clear) loads selector × 16 with no descriptor (<see cref="RealModeSegment"/>); CS.D clear
/// decodes 16-bit code and SS.B clear makes SP the stack pointer.</item>
/// <item>Stack accesses are checked against SS's limit (<see cref="StackAddress"/>, #SS(0)).</item>
/// <item>Not yet: the type checks of a single access (a write through a read-only data segment, a read through an
/// execute-only code segment).</item>
/// </list>
/// </remarks>
public sealed partial class X86Core
{
    // Attribute bits of a descriptor cache (VMX access-rights layout, SegmentRegister).
    private const ushort AttrAccessed = 0x01, AttrWritable = 0x02, AttrExpandDown = 0x04, AttrCode = 0x08,
        AttrSystem = 0x10, AttrPresent = 0x80, AttrBig = 0x4000, AttrGranularity = 0x8000;
    private const ushort AttrReadable = AttrWritable, AttrConforming = AttrExpandDown;

    // Bit n set: segment register n (Sreg order) needs its base added and its limit checked.
    private byte _nonFlatSegments;
    // CS.base, added to EIP to form the linear address of an instruction fetch.
    private uint _csBase;
    // CS.D clear: instructions decode as 16-bit code (real mode, or a 16-bit code segment).
    private bool _code16;
    // SS.B clear: the stack pointer is SP, wrapping at 64 KiB (real mode, or a 16-bit stack segment).
    private bool _stack16;

    /// <summary>LDTR and TR with their caches (LLDT, LTR).</summary>
    public SegmentRegister Ldtr => _ctx.Ldtr;
    public SegmentRegister TaskRegister => _ctx.Tr;

    /// <summary>Loads the flat cache the boot state implies (host-side setters, reset).</summary>
    private void LoadSegment(Sreg segment, ushort selector) =>
        SetSegmentCache(segment, SegmentRegister.Flat(selector, code: segment == Sreg.Cs));

    /// <summary>Installs a descriptor cache and recomputes what depends on it (flatness, CS base, the CPL).</summary>
    private void SetSegmentCache(Sreg segment, in SegmentRegister cache)
    {
        _ctx.Segments[(int)segment] = cache;
        bool flat = cache.Base == 0 && cache.Limit == 0xFFFF_FFFF && (cache.Attributes & AttrPresent) != 0
            && (segment == Sreg.Cs || (cache.Attributes & (AttrCode | AttrWritable | AttrExpandDown)) == AttrWritable);
        int bit = 1 << (int)segment;
        _nonFlatSegments = (byte)(flat ? _nonFlatSegments & ~bit : _nonFlatSegments | bit);
        if (segment == Sreg.Cs)
        {
            _csBase = cache.Base;
            _code16 = (cache.Attributes & AttrBig) == 0;
        }
        else if (segment == Sreg.Ss)
        {
            _stack16 = (cache.Attributes & AttrBig) == 0 && (cache.Attributes & AttrPresent) != 0;
            UpdateAccessRights(); // SS.DPL is the CPL
        }
    }

    /// <summary>Iced's ES, CS, SS, DS, FS, GS are consecutive and in <see cref="Sreg"/> order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Sreg ToSreg(Register segment) => (Sreg)(segment - Register.ES);

    private uint ReadSegment(Register s) => _ctx.Segments[(int)ToSreg(s)].Selector;

    // ---- Addresses ----

    /// <summary>The linear address of <paramref name="size"/> bytes at <paramref name="offset"/> in a segment.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint Linear(Sreg segment, uint offset, int size) =>
        (_nonFlatSegments & (1 << (int)segment)) == 0 ? offset : SegmentedLinear(segment, offset, size);

    /// <summary>The base and limit of a segment that is not flat (SDM Vol. 3A, 5.3): #GP(0) on a violation (#SS(0) for SS), and for a null segment.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private uint SegmentedLinear(Sreg segment, uint offset, int size)
    {
        ref SegmentRegister s = ref _ctx.Segments[(int)segment];
        byte vector = segment == Sreg.Ss ? ExceptionVector.StackFault : ExceptionVector.GeneralProtection;
        if ((s.Attributes & AttrPresent) == 0)
        {
            SegmentFault(vector); // a null selector's cache is unusable
            return offset;
        }
        uint last = offset + (uint)(size - 1);
        bool inside = (s.Attributes & (AttrCode | AttrExpandDown)) == AttrExpandDown
            // Expand-down: valid offsets are limit+1 .. 0xFFFF (B=0) or 0xFFFFFFFF (B=1).
            ? offset > s.Limit && last >= offset && last <= ((s.Attributes & AttrBig) != 0 ? 0xFFFF_FFFFu : 0xFFFFu)
            : last >= offset && last <= s.Limit;
        if (!inside)
        {
            SegmentFault(vector);
        }
        return s.Base + offset;
    }

    /// <summary>A segment-limit or null-segment violation: stops the instruction like a #PF (later accesses do nothing).</summary>
    private void SegmentFault(byte vector)
    {
        if (!_faulted)
        {
            _faulted = true;
            _interceptCompletable = false;
            _exit = new CpuExit(CpuExitReason.Exception, Vector: vector, ErrorCode: 0);
        }
    }

    /// <summary>
    /// The linear address of <paramref name="size"/> stack bytes at <paramref name="offset"/> (ESP, EBP-relative frames):
    /// SS.base added and SS's limit checked, expand-up or expand-down, when SS is not flat; a violation is #SS(0)
    /// (SDM Vol. 3A, 6.15, interrupt 12). A flat SS adds and checks nothing.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint StackAddress(uint offset, int size) =>
        (_nonFlatSegments & (1 << (int)Sreg.Ss)) == 0 ? offset : SegmentedLinear(Sreg.Ss, offset, size);

    /// <summary>True in real-address mode (CR0.PE clear, SDM Vol. 3A, chapter 20): segments are selector × 16.</summary>
    private bool RealMode => (_ctx.Cr0 & (uint)Cr0Flags.PE) == 0;

    /// <summary>
    /// A segment register loaded in real mode (SDM Vol. 3A, 20.1.1): the base is the selector × 16; the limit and the
    /// size bit stay as the descriptor cache holds them (which is what lets "unreal mode" keep 4 GiB limits), and the
    /// segment is a present, writable, accessed data segment (CS: code) of privilege 0. CS's D bit is cleared: a real-mode
    /// far transfer runs 16-bit code.
    /// </summary>
    private SegmentRegister RealModeSegment(Sreg segment, ushort selector)
    {
        SegmentRegister old = _ctx.Segments[(int)segment];
        ushort keep = (ushort)(old.Attributes & (AttrBig | AttrGranularity));
        if (segment == Sreg.Cs) keep = (ushort)(keep & ~AttrBig);
        ushort type = segment == Sreg.Cs ? (ushort)(AttrCode | AttrReadable) : AttrWritable;
        uint limit = (old.Attributes & AttrPresent) != 0 ? old.Limit : 0xFFFF;
        return new SegmentRegister(selector, (uint)selector << 4, limit, (ushort)(keep | AttrPresent | AttrSystem | AttrAccessed | type));
    }

    /// <summary>ESP moved by <paramref name="delta"/>: only SP with a 16-bit stack (SS.B clear), wrapping at 64 KiB.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AdjustStackPointer(uint delta) =>
        _ctx.Esp = _stack16 ? (_ctx.Esp & 0xFFFF0000) | ((_ctx.Esp + delta) & 0xFFFF) : _ctx.Esp + delta;

    // ---- Descriptors ----

    /// <summary>The descriptor cache a code or data descriptor describes (SDM Vol. 3A, 3.4.5, figure 3-8).</summary>
    private static SegmentRegister CacheOf(ushort selector, uint low, uint high)
    {
        uint baseAddress = (low >> 16) | ((high & 0xFF) << 16) | (high & 0xFF00_0000);
        uint limit = (low & 0xFFFF) | (high & 0x000F_0000);
        var attributes = (ushort)((high >> 8) & 0xF0FF);
        if ((attributes & AttrGranularity) != 0)
        {
            limit = (limit << 12) | 0xFFF;
        }
        return new SegmentRegister(selector, baseAddress, limit, attributes);
    }

    /// <summary>
    /// Reads the descriptor <paramref name="selector"/> names, from the GDT or (TI=1) the LDT. False when the selector
    /// lies outside its table (the caller raises #GP(selector)) or the read faulted (<see cref="_faulted"/>).
    /// </summary>
    private bool ReadDescriptor(ushort selector, out uint low, out uint high, out uint address)
    {
        low = high = address = 0;
        uint tableBase, tableLimit;
        if ((selector & 4) != 0)
        {
            if ((_ctx.Ldtr.Attributes & AttrPresent) == 0) return false;
            tableBase = _ctx.Ldtr.Base;
            tableLimit = _ctx.Ldtr.Limit;
        }
        else
        {
            tableBase = _ctx.Gdtr.Base;
            tableLimit = _ctx.Gdtr.Limit;
        }
        uint index = selector & ~7u;
        if (index + 7 > tableLimit) return false;
        address = tableBase + index;
        var saved = BeginSupervisorAccess();
        low = Read32(address);
        high = Read32(address + 4);
        EndSupervisorAccess(saved);
        return !_faulted;
    }

    /// <summary>Sets the accessed bit of a descriptor the processor loads, as hardware does (SDM Vol. 3A, 3.4.5.1).</summary>
    private void MarkAccessed(uint address, uint high)
    {
        if ((high & 0x100) == 0)
        {
            var saved = BeginSupervisorAccess();
            Write8(address + 5, (high >> 8) | AttrAccessed);
            EndSupervisorAccess(saved);
        }
    }

    /// <summary>True while no GDT has been loaded: selectors then load the flat boot-state caches.</summary>
    private bool ImpliedBootGdt(ushort selector) => (selector & 4) == 0 && _ctx.Gdtr.Limit == 0;

    private static uint SelectorError(ushort selector) => selector & 0xFFFCu;

    /// <summary>
    /// MOV, POP or LxS to DS, ES, FS, GS or SS with the protected-mode checks of SDM Vol. 2B, MOV (Operation), in its
    /// order. False with the fault recorded; the register is unchanged then.
    /// </summary>
    private bool LoadDataSegment(Sreg segment, ushort selector)
    {
        if (segment == Sreg.Cs) return UndefinedOpcode(); // MOV CS, r/m is #UD; POP CS does not exist
        if (RealMode)
        {
            SetSegmentCache(segment, RealModeSegment(segment, selector));
            return true;
        }
        if (ImpliedBootGdt(selector))
        {
            LoadSegment(segment, selector);
            return true;
        }
        int cpl = _ctx.Cpl;
        int rpl = selector & 3;
        if ((selector & ~3) == 0)
        {
            if (segment == Sreg.Ss) return Fault(ExceptionVector.GeneralProtection, 0);
            SetSegmentCache(segment, new SegmentRegister(selector, 0, 0, 0)); // null: loads, but any use faults
            return true;
        }
        if (!ReadDescriptor(selector, out uint low, out uint high, out uint address))
        {
            return _faulted ? false : Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        }
        SegmentRegister cache = CacheOf(selector, low, high);
        ushort a = cache.Attributes;
        int dpl = (a >> 5) & 3;
        bool code = (a & AttrCode) != 0;
        if ((a & AttrSystem) == 0) return Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        if (segment == Sreg.Ss)
        {
            if (rpl != cpl || code || (a & AttrWritable) == 0 || dpl != cpl) return Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
            if ((a & AttrPresent) == 0) return Fault(ExceptionVector.StackFault, SelectorError(selector));
        }
        else
        {
            bool readable = !code || (a & AttrReadable) != 0;
            bool conformingCode = code && (a & AttrConforming) != 0;
            if (!readable || (!conformingCode && (rpl > dpl || cpl > dpl))) return Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
            if ((a & AttrPresent) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(selector));
        }
        MarkAccessed(address, high);
        if (_faulted) return false;
        SetSegmentCache(segment, cache with { Attributes = (ushort)(a | AttrAccessed) });
        return true;
    }

    private void WriteSegment(Register s, ushort selector) => LoadDataSegment(ToSreg(s), selector);
}
