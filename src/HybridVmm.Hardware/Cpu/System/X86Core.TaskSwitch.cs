namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Hardware task switching (SDM Vol. 3A, 8.3 "Task Switching"): a far JMP or CALL to a TSS descriptor or a task gate,
/// an interrupt or exception through a task gate in the IDT, and IRET with EFLAGS.NT set. Linux's i386 kernel takes
/// its double fault through a task gate, and kvm-unit-tests' taskswitch test takes #GP through one.
/// </summary>
/// <remarks>
/// The checks that the SDM makes before the switch (the selector, the descriptor's type, presence and limit, the
/// privilege of a JMP or CALL) fault in the old task with nothing changed. After the switch commits, a bad segment in
/// the new task's image is a fault in the new task (#TS, #NP or #SS with the selector), delivered at its first
/// instruction, as table 8-1 orders them. Only 32-bit TSSs are simulated: a 16-bit TSS (type 1 or 3) is #GP with
/// its selector here, listed in docs/guest-platform.md.
/// </remarks>
public sealed partial class X86Core
{
    private enum TaskSwitchSource : byte { Jmp, Call, Iret, Interrupt }

    private const uint TypeTaskGate = 0x5, TypeTss32Busy = 0xB;
    private const uint TssMinimumLimit = 0x67;
    private const uint Dr6TaskSwitch = 1u << 15;

    // 32-bit TSS offsets (SDM Vol. 3A, figure 8-2).
    private const uint TssLink = 0x00, TssCr3 = 0x1C, TssEip = 0x20, TssEflags = 0x24, TssEax = 0x28,
        TssEs = 0x48, TssLdt = 0x60, TssTrap = 0x64;

    private static bool IsTss32Type(uint type) => type is TypeTss32Available or TypeTss32Busy;

    /// <summary>A far JMP or CALL through a task gate (SDM Vol. 2A, JMP, "TASK-GATE"): the gate's DPL ≥ CPL and ≥ RPL.</summary>
    private bool ThroughTaskGate(ushort gateSelector, uint gateLow, uint gateHigh, TaskSwitchSource source)
    {
        int gateDpl = (int)(gateHigh >> 13) & 3;
        if (gateDpl < _ctx.Cpl || gateDpl < (gateSelector & 3)) return Fault(ExceptionVector.GeneralProtection, SelectorError(gateSelector));
        if ((gateHigh & 0x8000) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(gateSelector));
        return SwitchTask((ushort)(gateLow >> 16), source, _ctx.Eip, hasErrorCode: false, 0);
    }

    /// <summary>A far JMP or CALL naming a TSS descriptor (SDM Vol. 2A, JMP, "TASK-STATE-SEGMENT"): its DPL ≥ CPL and ≥ RPL.</summary>
    private bool ToTssDescriptor(ushort selector, uint high, TaskSwitchSource source)
    {
        int dpl = (int)(high >> 13) & 3;
        if (dpl < _ctx.Cpl || dpl < (selector & 3)) return Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        return SwitchTask(selector, source, _ctx.Eip, hasErrorCode: false, 0);
    }

    /// <summary>IRET with NT=1 returns to the task named by the current TSS's previous-task link (SDM Vol. 2B, IRET, "TASK-RETURN").</summary>
    private bool TaskReturn()
    {
        SegmentRegister tr = _ctx.Tr;
        if ((tr.Attributes & AttrPresent) == 0 || tr.Limit < 1) return Fault(ExceptionVector.InvalidTss, SelectorError(tr.Selector));
        var link = (ushort)SupervisorRead16(tr.Base + TssLink);
        return !_faulted && SwitchTask(link, TaskSwitchSource.Iret, _ctx.Eip, hasErrorCode: false, 0);
    }

    /// <summary>
    /// Switches to the task whose TSS <paramref name="selector"/> names (SDM Vol. 3A, 8.3, steps 1-14). The old task's
    /// state is saved with EIP = <paramref name="returnEip"/>. False with a fault recorded and nothing changed if a check
    /// before the switch fails; true once the switch has happened, even if the new task then faults.
    /// </summary>
    private bool SwitchTask(ushort selector, TaskSwitchSource source, uint returnEip, bool hasErrorCode, uint errorCode)
    {
        bool iret = source == TaskSwitchSource.Iret;
        byte selectorFault = iret ? ExceptionVector.InvalidTss : ExceptionVector.GeneralProtection;
        // Steps 2-4: the new TSS descriptor, in the GDT, of the right type for the source, present and large enough.
        if ((selector & 4) != 0 || (selector & ~3) == 0 || !ReadDescriptor(selector, out uint low, out uint high, out uint descriptorAddress))
        {
            return !_faulted && Fault(selectorFault, SelectorError(selector));
        }
        uint type = (high >> 8) & 0x1F; // S and type
        if (type != (iret ? TypeTss32Busy : TypeTss32Available)) return Fault(selectorFault, SelectorError(selector));
        if ((high & 0x8000) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(selector));
        SegmentRegister newTr = CacheOf(selector, low, high);
        if (newTr.Limit < TssMinimumLimit) return Fault(ExceptionVector.InvalidTss, SelectorError(selector));
        SegmentRegister oldTr = _ctx.Tr;
        if ((oldTr.Attributes & AttrPresent) == 0 || oldTr.Limit < TssMinimumLimit || !IsTss32Type(oldTr.Attributes & 0x1Fu))
        {
            return Fault(ExceptionVector.InvalidTss, SelectorError(oldTr.Selector));
        }

        var saved = BeginSupervisorAccess();
        bool switched = SwitchTaskCommit(selector, newTr, descriptorAddress, high, oldTr, source, returnEip);
        EndSupervisorAccess(saved);
        if (!switched) return false;

        // Step 14 and after: the new task's image is loaded; its segments are checked in the new task's context.
        if (!LoadTaskSegments() || (hasErrorCode && !PushTaskErrorCode(errorCode))) return true;
        if (_ctx.Eip > _ctx.Cs.Limit)
        {
            QueueTaskException(ExceptionVector.GeneralProtection, 0);
        }
        else if ((SupervisorRead16(newTr.Base + TssTrap) & 1) != 0)
        {
            // The TSS's T flag: a debug trap before the new task's first instruction (SDM Vol. 3A, 18.2.3, DR6.BT).
            _ctx.Dr6 |= Dr6TaskSwitch;
            QueueTaskException(ExceptionVector.Debug, 0);
        }
        return true;
    }

    /// <summary>
    /// Steps 5-13: reads the new image, saves the old task, moves the busy flags and the link, and loads TR, CR3, EFLAGS,
    /// EIP, the general registers and the raw selectors. Every read of the new TSS happens before the first write, so a
    /// page fault there leaves the old task as it was.
    /// </summary>
    private bool SwitchTaskCommit(ushort selector, SegmentRegister newTr, uint descriptorAddress, uint high, SegmentRegister oldTr,
        TaskSwitchSource source, uint returnEip)
    {
        uint newBase = newTr.Base;
        uint newCr3 = Read32(newBase + TssCr3);
        uint newEip = Read32(newBase + TssEip);
        uint newFlags = Read32(newBase + TssEflags);
        Span<uint> gpr = stackalloc uint[8];
        for (int i = 0; i < 8; i++) gpr[i] = Read32(newBase + TssEax + (uint)(4 * i));
        Span<ushort> selectors = stackalloc ushort[6];
        for (int i = 0; i < 6; i++) selectors[i] = (ushort)Read16(newBase + TssEs + (uint)(4 * i));
        var ldt = (ushort)Read16(newBase + TssLdt);
        if (_faulted) return false;

        // Step 8: the old task's state. An IRET's saved EFLAGS has NT clear (step 7).
        uint oldFlags = source == TaskSwitchSource.Iret ? _ctx.Eflags & ~NtFlag : _ctx.Eflags;
        Write32(oldTr.Base + TssEip, returnEip);
        Write32(oldTr.Base + TssEflags, oldFlags);
        for (int i = 0; i < 8; i++) Write32(oldTr.Base + TssEax + (uint)(4 * i), _ctx.Gpr[i]);
        for (int i = 0; i < 6; i++) Write16(oldTr.Base + TssEs + (uint)(4 * i), _ctx.Segments[i].Selector);
        if (_faulted) return false;

        // Steps 6, 9 and 10: busy flags in the GDT, the back link and NT for a nested task.
        if (source is TaskSwitchSource.Jmp or TaskSwitchSource.Iret) SetTssBusy(oldTr.Selector, busy: false);
        if (source is TaskSwitchSource.Call or TaskSwitchSource.Interrupt)
        {
            Write16(newBase + TssLink, oldTr.Selector);
            newFlags |= NtFlag;
        }
        if (source != TaskSwitchSource.Iret) Write8(descriptorAddress + 5, (high >> 8) | TypeTssBusyBit);
        if (_faulted) return false;

        // Steps 11-13: TR, CR0.TS, CR3 and the image.
        _ctx.Tr = newTr with { Attributes = (ushort)(newTr.Attributes | TypeTssBusyBit) };
        _ctx.Cr0 |= (uint)Cr0Flags.TS;
        if ((_ctx.Cr0 & (uint)Cr0Flags.PG) != 0)
        {
            _ctx.Cr3 = newCr3;
            FlushTlb(keepGlobal: true);
        }
        _ctx.Eflags = (newFlags & EFlagsWritableMask) | (uint)EFlags.Reserved1;
        _ctx.Eip = newEip;
        for (int i = 0; i < 8; i++) _ctx.Gpr[i] = gpr[i];
        for (int i = 0; i < 6; i++) SetSegmentCache((Sreg)i, new SegmentRegister(selectors[i], 0, 0, 0)); // unusable until checked
        _ctx.Ldtr = new SegmentRegister(ldt, 0, 0, 0);
        CodeMappingChanged();
        return true;
    }

    private void SetTssBusy(ushort selector, bool busy)
    {
        if (!ReadDescriptor(selector, out _, out uint high, out uint address)) return;
        uint access = (high >> 8) & 0xFF;
        Write8(address + 5, busy ? access | TypeTssBusyBit : access & ~TypeTssBusyBit);
    }

    /// <summary>
    /// The new task's LDTR, CS, SS and data segments, checked in the order of SDM Vol. 3A, table 8-1, each load as the
    /// SDM's task-switch operation does it (#TS for a bad selector or type, #NP, or #SS for the stack). False when one
    /// faulted; the fault is then queued for the new task's first instruction.
    /// </summary>
    private bool LoadTaskSegments()
    {
        ushort ldt = _ctx.Ldtr.Selector;
        if ((ldt & ~3) != 0)
        {
            if ((ldt & 4) != 0) return QueueTaskException(ExceptionVector.InvalidTss, SelectorError(ldt));
            if (!TaskSegmentCache(ldt, out SegmentRegister cache, out _, out _)) return false;
            if ((cache.Attributes & (AttrSystem | 0xF)) != TypeLdt) return QueueTaskException(ExceptionVector.InvalidTss, SelectorError(ldt));
            if ((cache.Attributes & AttrPresent) == 0) return QueueTaskException(ExceptionVector.SegmentNotPresent, SelectorError(ldt));
            _ctx.Ldtr = cache;
        }

        ushort cs = _ctx.Cs.Selector, ss = _ctx.Ss.Selector;
        int cpl = cs & 3;
        if (!TaskSegmentCache(cs, out SegmentRegister csCache, out uint csAddress, out uint csHigh)) return false;
        ushort a = csCache.Attributes;
        int dpl = (a >> 5) & 3;
        bool conforming = (a & AttrConforming) != 0;
        if ((a & (AttrSystem | AttrCode)) != (AttrSystem | AttrCode) || (a & AttrBig) == 0 || (conforming ? dpl > cpl : dpl != cpl))
        {
            return QueueTaskException(ExceptionVector.InvalidTss, SelectorError(cs));
        }
        if ((a & AttrPresent) == 0) return QueueTaskException(ExceptionVector.SegmentNotPresent, SelectorError(cs));

        if (!TaskSegmentCache(ss, out SegmentRegister ssCache, out uint ssAddress, out uint ssHigh)) return false;
        a = ssCache.Attributes;
        if ((ss & ~3) == 0 || (ss & 3) != cpl || (a & (AttrSystem | AttrCode | AttrWritable)) != (AttrSystem | AttrWritable) || ((a >> 5) & 3) != cpl)
        {
            return QueueTaskException(ExceptionVector.InvalidTss, SelectorError(ss));
        }
        if ((a & AttrPresent) == 0) return QueueTaskException(ExceptionVector.StackFault, SelectorError(ss));
        MarkAccessed(csAddress, csHigh);
        MarkAccessed(ssAddress, ssHigh);
        SetSegmentCache(Sreg.Cs, csCache with { Attributes = (ushort)(csCache.Attributes | AttrAccessed) });
        SetSegmentCache(Sreg.Ss, ssCache with { Attributes = (ushort)(ssCache.Attributes | AttrAccessed) });

        foreach (Sreg segment in DataSegmentsInTaskOrder)
        {
            ushort selector = _ctx.Segments[(int)segment].Selector;
            if ((selector & ~3) == 0) continue; // a null selector loads; a use of it faults later
            if (!TaskSegmentCache(selector, out SegmentRegister cache, out uint address, out uint dataHigh)) return false;
            a = cache.Attributes;
            bool code = (a & AttrCode) != 0;
            int segmentDpl = (a >> 5) & 3;
            bool readable = (a & AttrSystem) != 0 && (!code || (a & AttrReadable) != 0);
            bool checkPrivilege = !code || (a & AttrConforming) == 0;
            if (!readable || (checkPrivilege && (segmentDpl < cpl || segmentDpl < (selector & 3))))
            {
                return QueueTaskException(ExceptionVector.InvalidTss, SelectorError(selector));
            }
            if ((a & AttrPresent) == 0) return QueueTaskException(ExceptionVector.SegmentNotPresent, SelectorError(selector));
            MarkAccessed(address, dataHigh);
            SetSegmentCache(segment, cache with { Attributes = (ushort)(a | AttrAccessed) });
        }
        return !_faulted;
    }

    private static readonly Sreg[] DataSegmentsInTaskOrder = [Sreg.Ds, Sreg.Es, Sreg.Fs, Sreg.Gs];

    /// <summary>The descriptor a task's selector names; a selector outside its table is #TS in the new task.</summary>
    private bool TaskSegmentCache(ushort selector, out SegmentRegister cache, out uint address, out uint high)
    {
        cache = default;
        if (!ReadDescriptor(selector, out uint low, out high, out address))
        {
            // A page fault on the descriptor table is itself the new task's fault.
            return _faulted
                ? QueueTaskException(_exit.Vector, _exit.ErrorCode)
                : QueueTaskException(ExceptionVector.InvalidTss, SelectorError(selector));
        }
        cache = CacheOf(selector, low, high);
        return true;
    }

    /// <summary>An exception through a task gate pushes its error code on the new task's stack (SDM Vol. 3A, 6.12.2).</summary>
    private bool PushTaskErrorCode(uint errorCode)
    {
        Push(errorCode, 4);
        if (!_faulted) return true;
        _faulted = false;
        return QueueTaskException(ExceptionVector.StackFault, 0);
    }

    /// <summary>A fault found after the switch committed: delivered in the new task, before its first instruction.</summary>
    private bool QueueTaskException(byte vector, uint errorCode)
    {
        _faulted = false;
        QueueException(vector, errorCode);
        return false;
    }
}
