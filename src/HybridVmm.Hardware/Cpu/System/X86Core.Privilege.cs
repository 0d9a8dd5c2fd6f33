using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Privilege levels (SDM Vol. 3A, 5.5-5.9 and 6.12; Vol. 1, 18.5): CPL 0 to 3, the stack switch through the TSS when an
/// interrupt or exception enters an inner ring, IRET and RETF back to an outer ring, the IOPL and the TSS I/O
/// permission bitmap for IN/OUT, and the EFLAGS rules of CLI, STI and POPF at each CPL and IOPL.
/// </summary>
/// <remarks>
/// The CPL is SS.DPL (<see cref="CpuContext.Cpl"/>), so every privilege change is a load of SS. Accesses the processor
/// makes on its own behalf (descriptor tables, the TSS, the IDT) are supervisor accesses whatever the CPL
/// (<see cref="BeginSupervisorAccess"/>), as SDM Vol. 3A, 4.6 defines "implicit supervisor-mode accesses".
/// </remarks>
public sealed partial class X86Core
{
    private const uint IoplMask = 0x3000, NtFlag = 0x4000, RfFlag = 0x10000, VmFlag = 0x20000, AcFlag = 0x40000;

    private int Iopl => (int)((_ctx.Eflags & IoplMask) >> 12);

    /// <summary>#GP(0) unless at CPL 0: the privileged instructions (SDM Vol. 3A, 5.9).</summary>
    private bool RequireRing0() => _ctx.Cpl == 0 || Fault(ExceptionVector.GeneralProtection, 0);

    /// <summary>
    /// Starts an implicit supervisor-mode access (a descriptor table, the TSS, the IDT): until
    /// <see cref="EndSupervisorAccess"/>, paging checks rights as for CPL 0. Returns what to restore.
    /// </summary>
    private (byte Read, byte Write) BeginSupervisorAccess()
    {
        (byte, byte) saved = (_readRequired, _writeRequired);
        // SMAP applies to implicit accesses to user pages whatever EFLAGS.AC at CPL 3, and as to any supervisor data
        // access below it (SDM Vol. 3A, 4.6.1).
        byte smap = (_ctx.Cr4 & Cr4Smap) != 0 && (_ctx.Cpl == 3 || (_ctx.Eflags & AcFlag) == 0) ? TlbSupervisorPage : (byte)0;
        _readRequired = smap;
        _writeRequired = (byte)(TlbSupervisorWrite | TlbDirty | smap);
        return saved;
    }

    private void EndSupervisorAccess((byte Read, byte Write) saved) => (_readRequired, _writeRequired) = saved;

    private uint SupervisorRead16(uint linear)
    {
        var saved = BeginSupervisorAccess();
        uint value = Read16(linear);
        EndSupervisorAccess(saved);
        return value;
    }

    private uint SupervisorRead32(uint linear)
    {
        var saved = BeginSupervisorAccess();
        uint value = Read32(linear);
        EndSupervisorAccess(saved);
        return value;
    }

    // ---- EFLAGS ----

    /// <summary>CLI and STI: IF changes only at CPL ≤ IOPL, otherwise #GP(0) (SDM Vol. 2A, CLI; no VME or PVI).</summary>
    private bool Cli() => _ctx.Cpl <= Iopl ? SetFlag((uint)EFlags.IF, false) : Fault(ExceptionVector.GeneralProtection, 0);

    /// <summary>
    /// The EFLAGS bits POPF and IRET may change at the current privilege level (SDM Vol. 2B, POPF): IOPL only at CPL 0,
    /// IF only at CPL ≤ IOPL. A POPF at CPL 3 that tries to clear IF leaves it set, silently: the sensitive but
    /// unprivileged instruction of Popek and Goldberg's argument.
    /// </summary>
    private uint FlagsWritableAtCpl()
    {
        uint mask = EFlagsWritableMask;
        int cpl = _ctx.Cpl;
        if (cpl != 0) mask &= ~IoplMask;
        if (cpl > Iopl) mask &= ~(uint)EFlags.IF;
        return mask;
    }

    // ---- I/O permission (SDM Vol. 1, 18.5) ----

    /// <summary>IN, OUT, INS and OUTS at CPL &gt; IOPL: every port of the access must be allowed by the TSS I/O bitmap, else #GP(0).</summary>
    private bool IoAllowed(ushort port, int size)
    {
        if (_ctx.Cpl <= Iopl) return true;
        SegmentRegister tr = _ctx.Tr;
        // Only a 32-bit TSS has a bitmap: its base is the word at offset 0x66, and its bytes must lie within TR's limit.
        if ((tr.Attributes & 0xF) != 0xB || tr.Limit < 0x67) return Fault(ExceptionVector.GeneralProtection, 0);
        uint mapBase = SupervisorRead16(tr.Base + 0x66);
        uint first = mapBase + (uint)(port >> 3);
        if (_faulted) return false;
        if (first + 1 > tr.Limit) return Fault(ExceptionVector.GeneralProtection, 0);
        uint bits = SupervisorRead16(tr.Base + first);
        if (_faulted) return false;
        uint mask = ((1u << size) - 1) << (port & 7);
        return (bits & mask) == 0 || Fault(ExceptionVector.GeneralProtection, 0);
    }

    // ---- Entering an inner ring through an interrupt or trap gate ----

    /// <summary>
    /// The stack of ring <paramref name="ring"/> from the current TSS (SS0:ESP0 at offsets 8 and 4, and so on), checked
    /// as SDM Vol. 3A, 6.12.1 says; a bad one is #TS with its selector.
    /// </summary>
    private bool InnerStack(int ring, out SegmentRegister ss, out uint esp)
    {
        ss = default;
        esp = 0;
        SegmentRegister tr = _ctx.Tr;
        uint offset = (uint)(4 + 8 * ring);
        if ((tr.Attributes & 0x80) == 0 || offset + 5 > tr.Limit) return Fault(ExceptionVector.InvalidTss, tr.Selector & 0xFFFCu);
        uint stackPointer = SupervisorRead32(tr.Base + offset);
        var selector = (ushort)SupervisorRead16(tr.Base + offset + 4);
        if (_faulted) return false;
        if ((selector & ~3) == 0 || (selector & 3) != ring) return Fault(ExceptionVector.InvalidTss, SelectorError(selector));
        if (!ReadDescriptor(selector, out uint low, out uint high, out _))
        {
            return !_faulted && Fault(ExceptionVector.InvalidTss, SelectorError(selector));
        }
        SegmentRegister cache = CacheOf(selector, low, high);
        ushort a = cache.Attributes;
        if ((a & (AttrSystem | AttrCode | AttrWritable)) != (AttrSystem | AttrWritable) || ((a >> 5) & 3) != ring)
        {
            return Fault(ExceptionVector.InvalidTss, SelectorError(selector));
        }
        if ((a & AttrPresent) == 0) return Fault(ExceptionVector.StackFault, SelectorError(selector));
        ss = cache with { Attributes = (ushort)(a | AttrAccessed) };
        esp = stackPointer;
        return true;
    }

    /// <summary>
    /// Interrupt or exception delivery to a handler in an inner ring: switch to the TSS's stack for that ring and push
    /// the old SS:ESP, EFLAGS, CS:EIP and the error code there (SDM Vol. 3A, 6.12.1, figure 6-4), as words through a
    /// 16-bit gate (<paramref name="size"/> 2). False with nothing architectural changed if the stack or a push faults.
    /// </summary>
    private bool DeliverToInnerRing(in SegmentRegister handlerCs, uint handlerEip, uint returnEip, bool hasErrorCode, uint errorCode, uint clearFlags, int size = 4)
    {
        int ring = (handlerCs.Attributes >> 5) & 3;
        if (!InnerStack(ring, out SegmentRegister newSs, out uint newEsp)) return false;
        SegmentFile oldSegments = _ctx.Segments;
        uint oldEsp = _ctx.Esp, oldFlags = _ctx.Eflags;
        ushort oldCs = _ctx.Cs.Selector, oldSs = _ctx.Ss.Selector;
        byte oldMask = _nonFlatSegments;
        SetSegmentCache(Sreg.Ss, newSs); // now at the handler's ring: the pushes are supervisor writes to its stack
        _ctx.Esp = newEsp;
        // SDM Vol. 2A, INT n, "INTER-PRIVILEGE-LEVEL-INTERRUPT": room for the frame on the new stack (#SS(NewSS)), then
        // the handler's offset within its code segment's limit (#GP(EXT)), both before anything is pushed.
        if (!StackHasRoom(newEsp, (hasErrorCode ? 6 : 5) * size))
        {
            RestoreOuterStack(oldSegments, oldMask, oldEsp);
            return Fault(ExceptionVector.StackFault, SelectorError(newSs.Selector));
        }
        if (handlerEip > handlerCs.Limit)
        {
            RestoreOuterStack(oldSegments, oldMask, oldEsp);
            return Fault(ExceptionVector.GeneralProtection, 0);
        }
        Push(oldSs, size);
        Push(oldEsp, size);
        Push(oldFlags, size);
        Push(oldCs, size);
        Push(returnEip, size);
        if (hasErrorCode) Push(errorCode, size);
        if (_faulted)
        {
            NameNewStackInStackFault(newSs.Selector);
            return RestoreOuterStack(oldSegments, oldMask, oldEsp);
        }
        _ctx.Eflags &= ~clearFlags;
        SetSegmentCache(Sreg.Cs, handlerCs with { Selector = (ushort)((handlerCs.Selector & ~3) | ring) });
        _ctx.Eip = handlerEip;
        CodeMappingChanged();
        return true;
    }

    /// <summary>
    /// Whether SS's limit leaves room for <paramref name="bytes"/> below <paramref name="esp"/>, checked before anything is
    /// pushed as the SDM's "IF stack does not have room" is: every byte the pushes would write must lie within the
    /// segment (SDM Vol. 3A, 5.3: an expand-down segment's valid offsets lie above its limit), with SP wrapping at 64 KiB
    /// on a 16-bit stack as Push16 does. A flat stack always has room, as its pushes find.
    /// </summary>
    private bool StackHasRoom(uint esp, int bytes)
    {
        if ((_nonFlatSegments & (1 << (int)Sreg.Ss)) == 0) return true;
        SegmentRegister ss = _ctx.Ss;
        if ((ss.Attributes & AttrPresent) == 0) return false;
        bool big = (ss.Attributes & AttrBig) != 0;
        bool expandDown = (ss.Attributes & (AttrCode | AttrExpandDown)) == AttrExpandDown;
        uint upper = big ? 0xFFFF_FFFFu : 0xFFFFu;
        for (uint j = 1; j <= (uint)bytes; j++)
        {
            uint offset = (esp - j) & upper;
            if (expandDown ? offset <= ss.Limit : offset > ss.Limit) return false;
        }
        return true;
    }

    /// <summary>
    /// A push on the new inner stack that passed SS's limit is #SS with the new SS's selector as its error code, not 0
    /// (SDM Vol. 2A, CALL, and Vol. 3A, 6.12.1 with the INT n pseudocode: "#SS(NewSS)" when the new stack has no room).
    /// </summary>
    private void NameNewStackInStackFault(ushort newSs)
    {
        if (_exit.Reason == CpuExitReason.Exception && _exit.Vector == ExceptionVector.StackFault && _exit.ErrorCode == 0)
        {
            _exit = _exit with { ErrorCode = SelectorError(newSs) };
        }
    }

    /// <summary>A push on an inner ring's stack faulted: back to the outer stack and segments, nothing changed. Always false.</summary>
    private bool RestoreOuterStack(in SegmentFile oldSegments, byte oldMask, uint oldEsp)
    {
        _ctx.Segments = oldSegments;
        _nonFlatSegments = oldMask;
        UpdateAccessRights();
        _ctx.Esp = oldEsp;
        return false;
    }

    // ---- Returning to an outer ring (IRET, RETF) ----

    /// <summary>
    /// The rest of an IRET or RETF whose CS has a larger RPL than the CPL (SDM Vol. 2B, IRET and RET, "RETURN-TO-OUTER-
    /// PRIVILEGE-LEVEL"): pops ESP and SS, checks both segments, loads them, and nulls DS, ES, FS and GS if they are not
    /// valid at the outer level. <paramref name="flags"/> is applied with the rights of the inner level, before the switch.
    /// </summary>
    private bool ReturnToOuterRing(ushort csSelector, uint eip, int size, uint? flags, uint stackAdjust)
    {
        int outer = csSelector & 3;
        if (!ReadDescriptor(csSelector, out uint csLow, out uint csHigh, out _))
        {
            return !_faulted && Fault(ExceptionVector.GeneralProtection, SelectorError(csSelector));
        }
        SegmentRegister cs = CacheOf(csSelector, csLow, csHigh);
        ushort ca = cs.Attributes;
        int csDpl = (ca >> 5) & 3;
        bool conforming = (ca & AttrConforming) != 0;
        if ((ca & (AttrSystem | AttrCode)) != (AttrSystem | AttrCode) || (conforming ? csDpl > outer : csDpl != outer))
        {
            return Fault(ExceptionVector.GeneralProtection, SelectorError(csSelector));
        }
        if ((ca & AttrPresent) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(csSelector));
        _ctx.Esp += stackAdjust;
        uint esp = Pop(size);
        var ssSelector = (ushort)Pop(size);
        if (_faulted) return false;
        if ((ssSelector & ~3) == 0 || (ssSelector & 3) != outer) return Fault(ExceptionVector.GeneralProtection, SelectorError(ssSelector));
        if (!ReadDescriptor(ssSelector, out uint ssLow, out uint ssHigh, out _))
        {
            return !_faulted && Fault(ExceptionVector.GeneralProtection, SelectorError(ssSelector));
        }
        SegmentRegister ss = CacheOf(ssSelector, ssLow, ssHigh);
        ushort sa = ss.Attributes;
        if ((sa & (AttrSystem | AttrCode | AttrWritable)) != (AttrSystem | AttrWritable) || ((sa >> 5) & 3) != outer)
        {
            return Fault(ExceptionVector.GeneralProtection, SelectorError(ssSelector));
        }
        if ((sa & AttrPresent) == 0) return Fault(ExceptionVector.StackFault, SelectorError(ssSelector));
        if (eip > cs.Limit) return Fault(ExceptionVector.GeneralProtection, 0);

        if (flags is uint f)
        {
            uint writable = FlagsWritableAtCpl() | (size == 4 ? RfFlag : 0); // the rights of the ring IRET runs in; a 32-bit IRET loads RF
            _ctx.Eflags = (_ctx.Eflags & ~writable) | (f & writable) | (uint)EFlags.Reserved1;
            if ((_ctx.Eflags & RfFlag) != 0) _eventCheck = true; // RF lasts one instruction (X86Core.Debug.cs)
            FlagsChanged();
        }
        SetSegmentCache(Sreg.Cs, cs with { Attributes = (ushort)(ca | AttrAccessed) });
        SetSegmentCache(Sreg.Ss, ss with { Attributes = (ushort)(sa | AttrAccessed) });
        _ctx.Esp = size == 2 ? (_ctx.Esp & 0xFFFF0000) | (esp & 0xFFFF) : esp;
        _ctx.Eip = eip;
        foreach (Sreg data in (ReadOnlySpan<Sreg>)[Sreg.Es, Sreg.Ds, Sreg.Fs, Sreg.Gs])
        {
            ushort a = _ctx.Segments[(int)data].Attributes;
            bool dataOrNonconforming = (a & AttrCode) == 0 || (a & AttrConforming) == 0;
            // "IF (SegmentSelector == NULL) OR (tempDesc(DPL) < CPL AND tempDesc(Type) is (data or non-conforming code))
            // THEN SegmentSelector := 0": a null selector with RPL 1-3 becomes 0 as well.
            if ((_ctx.Segments[(int)data].Selector & ~3) == 0
                || ((a & AttrPresent) != 0 && dataOrNonconforming && ((a >> 5) & 3) < outer))
            {
                SetSegmentCache(data, new SegmentRegister(0, 0, 0, 0)); // not usable at the outer level
            }
        }
        CodeMappingChanged();
        return true;
    }
}
