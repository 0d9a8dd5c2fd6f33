using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Far control transfers (SDM Vol. 2A, JMP and CALL, "far pointer" operation; Vol. 2B, RET and IRET; Vol. 3A, 5.8):
/// far JMP and CALL to a code segment or through a call gate (a CALL also to an inner ring), RETF (to an outer level
/// through System/X86Core.Privilege.cs) and the code-segment half of IRET and of interrupt delivery. Each checks the target descriptor in the SDM's order before anything
/// architectural changes, so a fault leaves CS, EIP and the stack as they were.
/// </summary>
/// <remarks>
/// A task gate or TSS target is a task switch (System/X86Core.TaskSwitch.cs). Not yet: 16-bit code segments (the
/// decoder is 32-bit), which raise #GP with the selector, a choice of this simulator listed in docs/guest-platform.md.
/// </remarks>
public sealed partial class X86Core
{
    private const uint GateCall16 = 0x4, GateCall32 = 0xC;

    /// <summary>
    /// The descriptor of a code segment a transfer would load: not null, inside its table, code, present and 32-bit.
    /// The privilege rules are the caller's. False with the fault recorded (#GP or #NP with the selector).
    /// </summary>
    private bool CodeDescriptor(ushort selector, out SegmentRegister cache, out uint descriptorAddress, out uint high, bool checkPresent = true)
    {
        cache = default;
        descriptorAddress = high = 0;
        if ((selector & ~3) == 0) return Fault(ExceptionVector.GeneralProtection, 0);
        if (ImpliedBootGdt(selector))
        {
            cache = SegmentRegister.Flat(selector, code: true);
            return true;
        }
        if (!ReadDescriptor(selector, out uint low, out high, out descriptorAddress))
        {
            return !_faulted && Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        }
        cache = CacheOf(selector, low, high);
        ushort a = cache.Attributes;
        if ((a & (AttrSystem | AttrCode)) != (AttrSystem | AttrCode)) return Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        if (checkPresent && (a & AttrPresent) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(selector));
        cache = cache with { Attributes = (ushort)(a | AttrAccessed) };
        return true;
    }

    /// <summary>
    /// The checked cache of a code segment a jump, call or return within the current privilege level would load
    /// (SDM Vol. 3A, 5.8.1-5.8.2): conforming code with DPL ≤ CPL, or nonconforming code with DPL = CPL and RPL ≤ CPL (a
    /// return: RPL = CPL). The loaded selector's RPL becomes the CPL.
    /// </summary>
    private bool CheckCodeTarget(ushort selector, bool viaReturn, out SegmentRegister cache, out uint descriptorAddress, out uint high)
    {
        if (RealMode)
        {
            // Real mode: no descriptor, no checks; CS becomes selector × 16 (SDM Vol. 2A, JMP, "real-address mode").
            (cache, descriptorAddress, high) = (RealModeSegment(Sreg.Cs, selector), 0, 0);
            return true;
        }
        int cpl = _ctx.Cpl, rpl = selector & 3;
        // The privilege checks come before "present" in the SDM; both are faults with the selector, P last.
        if (!CodeDescriptor(selector, out cache, out descriptorAddress, out high, checkPresent: false)) return false;
        if (ImpliedBootGdt(selector)) return true;
        int dpl = (cache.Attributes >> 5) & 3;
        bool conforming = (cache.Attributes & AttrConforming) != 0;
        bool allowed = viaReturn
            ? rpl == cpl && (conforming ? dpl <= rpl : dpl == rpl)
            : conforming ? dpl <= cpl : dpl == cpl && rpl <= cpl;
        if (!allowed) return Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        // SDM Vol. 2A JMP/CALL ("IF DPL > CPL THEN #GP(selector); IF segment not present THEN #NP(selector)") and
        // Vol. 2B RET: the privilege checks come first, #NP for a present bit of 0 last.
        if ((cache.Attributes & AttrPresent) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(selector));
        cache = cache with { Selector = (ushort)((selector & ~3) | cpl) };
        return true;
    }

    /// <summary>Loads a checked code segment and jumps: EIP beyond the limit is #GP(0), checked last (SDM Vol. 2A, JMP).</summary>
    private bool CommitCodeTarget(in SegmentRegister cache, uint descriptorAddress, uint high, uint eip)
    {
        if (eip > cache.Limit) return Fault(ExceptionVector.GeneralProtection, 0);
        if (descriptorAddress != 0 || high != 0) MarkAccessed(descriptorAddress, high);
        if (_faulted) return false;
        SetSegmentCache(Sreg.Cs, cache);
        _ctx.Eip = eip;
        CodeMappingChanged(); // the fetch's linear addresses may have moved with CS.base
        return true;
    }

    /// <summary>The far pointer of a far JMP/CALL: ptr16:16/32 immediate, or m16:16/32 (offset, then selector).</summary>
    private bool ReadFarPointer(ref Instruction ins, out ushort selector, out uint offset, out int size)
    {
        switch (ins.Op0Kind)
        {
            case OpKind.FarBranch32:
                (selector, offset, size) = (ins.FarBranchSelector, ins.FarBranch32, 4);
                return true;
            case OpKind.FarBranch16:
                (selector, offset, size) = (ins.FarBranchSelector, ins.FarBranch16, 2);
                return true;
            default:
                size = ins.MemorySize == MemorySize.SegPtr16 ? 2 : 4;
                uint ea = Ea(ref ins);
                offset = size == 4 ? Read32(ea) : Read16(ea);
                selector = (ushort)Read16(ea + (uint)size);
                return !_faulted;
        }
    }

    private bool FarJmp(ref Instruction ins) =>
        ReadFarPointer(ref ins, out ushort selector, out uint offset, out int size) && FarTransfer(selector, offset, size, call: false);

    private bool FarCall(ref Instruction ins) =>
        ReadFarPointer(ref ins, out ushort selector, out uint offset, out int size) && FarTransfer(selector, offset, size, call: true);

    private bool FarTransfer(ushort selector, uint offset, int size, bool call)
    {
        if (!RealMode && !ImpliedBootGdt(selector) && (selector & ~3) != 0 && IsSystemDescriptor(selector, out uint gateLow, out uint gateHigh))
        {
            var source = call ? TaskSwitchSource.Call : TaskSwitchSource.Jmp;
            return ((gateHigh >> 8) & 0x1F) switch
            {
                GateCall32 or GateCall16 => ThroughCallGate(selector, gateLow, gateHigh, call),
                TypeTaskGate => ThroughTaskGate(selector, gateLow, gateHigh, source),
                TypeTss32Available or TypeTss32Busy => ToTssDescriptor(selector, gateHigh, source),
                _ => Fault(ExceptionVector.GeneralProtection, SelectorError(selector)), // an LDT, a 16-bit TSS, an interrupt gate
            };
        }
        if (!CheckCodeTarget(selector, viaReturn: false, out SegmentRegister cache, out uint address, out uint high)) return false;
        return (!call || PushReturnAddress(size)) && CommitCodeTarget(cache, address, high, size == 2 ? offset & 0xFFFF : offset);
    }

    private bool PushReturnAddress(int size)
    {
        Push(_ctx.Cs.Selector, size);
        Push(size == 2 ? _ctx.Eip & 0xFFFF : _ctx.Eip, size);
        return !_faulted;
    }

    /// <summary>The selector names a system descriptor (S=0): a gate or a TSS, which a far JMP or CALL treats apart.</summary>
    private bool IsSystemDescriptor(ushort selector, out uint low, out uint high)
    {
        low = high = 0;
        if (!ReadDescriptor(selector, out low, out high, out _)) return false;
        return (high & 0x1000) == 0;
    }

    /// <summary>
    /// A far JMP or CALL through a call gate (SDM Vol. 3A, 5.8.4-5.8.5): to the same privilege level, or, for a CALL to a
    /// nonconforming segment of a numerically lower DPL, to an inner ring on the stack the TSS names for it.
    /// </summary>
    private bool ThroughCallGate(ushort gateSelector, uint low, uint high, bool call)
    {
        int cpl = _ctx.Cpl, rpl = gateSelector & 3, gateDpl = (int)(high >> 13) & 3;
        if (gateDpl < cpl || gateDpl < rpl) return Fault(ExceptionVector.GeneralProtection, SelectorError(gateSelector));
        if ((high & 0x8000) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(gateSelector));
        var target = (ushort)(low >> 16);
        bool gate32 = ((high >> 8) & 0xF) == GateCall32;
        uint offset = gate32 ? (low & 0xFFFF) | (high & 0xFFFF_0000) : low & 0xFFFF;
        int size = gate32 ? 4 : 2;
        if (call && !ImpliedBootGdt(target) && (target & ~3) != 0 && ReadDescriptor(target, out uint targetLow, out uint targetHigh, out _))
        {
            SegmentRegister probe = CacheOf(target, targetLow, targetHigh);
            int dpl = (probe.Attributes >> 5) & 3;
            bool code = (probe.Attributes & (AttrSystem | AttrCode)) == (AttrSystem | AttrCode);
            if (code && (probe.Attributes & AttrConforming) == 0 && dpl < cpl)
            {
                if (!CodeDescriptor((ushort)(target & ~3), out SegmentRegister inner, out uint innerAddress, out uint innerHigh)) return false;
                return CallToInnerRing(inner, innerAddress, innerHigh, offset, size, (int)(high & 0x1F));
            }
        }
        if (_faulted) return false;
        if (!CheckCodeTarget((ushort)(target & ~3), viaReturn: false, out SegmentRegister cache, out uint address, out uint codeHigh)) return false;
        return (!call || PushReturnAddress(size)) && CommitCodeTarget(cache, address, codeHigh, offset);
    }

    /// <summary>
    /// A CALL through a call gate to an inner ring (SDM Vol. 2A, CALL, "MORE-PRIVILEGE"): the new stack from the TSS, the
    /// caller's SS and ESP pushed on it, then <paramref name="parameterCount"/> parameters copied from the caller's
    /// stack, then the caller's CS and EIP. RETF imm16 to the outer ring releases the parameters from both stacks. A
    /// fault leaves the caller's state as it was.
    /// </summary>
    private bool CallToInnerRing(in SegmentRegister target, uint targetAddress, uint targetHigh, uint eip, int size, int parameterCount)
    {
        int ring = (target.Attributes >> 5) & 3;
        if (eip > target.Limit) return Fault(ExceptionVector.GeneralProtection, 0);
        if (!InnerStack(ring, out SegmentRegister newSs, out uint newEsp)) return false;
        // The parameters are read from the caller's stack before it is left (with the caller's rights).
        Span<uint> parameters = stackalloc uint[31];
        for (int i = 0; i < parameterCount; i++)
        {
            uint at = _ctx.Esp + (uint)(i * size);
            parameters[i] = size == 4 ? Read32(StackAddress(at, 4)) : Read16(StackAddress(at, 2));
        }
        if (_faulted) return false;
        SegmentFile oldSegments = _ctx.Segments;
        uint oldEsp = _ctx.Esp;
        ushort oldCs = _ctx.Cs.Selector, oldSs = _ctx.Ss.Selector;
        byte oldMask = _nonFlatSegments;
        SetSegmentCache(Sreg.Ss, newSs); // now at the inner ring: the pushes are its own stack's
        _ctx.Esp = newEsp;
        Push(oldSs, size);
        Push(oldEsp, size);
        for (int i = parameterCount - 1; i >= 0; i--) Push(parameters[i], size);
        Push(oldCs, size);
        Push(size == 2 ? _ctx.Eip & 0xFFFF : _ctx.Eip, size);
        if (_faulted)
        {
            NameNewStackInStackFault(newSs.Selector);
            return RestoreOuterStack(oldSegments, oldMask, oldEsp);
        }
        MarkAccessed(targetAddress, targetHigh);
        SetSegmentCache(Sreg.Cs, target with { Selector = (ushort)((target.Selector & ~3) | ring) });
        _ctx.Eip = eip;
        CodeMappingChanged();
        return true;
    }

    /// <summary>A far return whose CS selector has a larger RPL than the CPL goes to an outer ring (System/X86Core.Privilege.cs).</summary>
    private bool IsReturnToOuterRing(ushort selector) => !RealMode && (selector & ~3) != 0 && !ImpliedBootGdt(selector) && (selector & 3) > _ctx.Cpl;

    /// <summary>RETF (imm16), to the same or an outer privilege level.</summary>
    private bool Retf(ref Instruction ins)
    {
        int size = ins.Code is Code.Retfw or Code.Retfw_imm16 ? 2 : 4;
        uint eip = Pop(size);
        var selector = (ushort)Pop(size);
        if (_faulted) return false;
        if (size == 2) eip &= 0xFFFF;
        uint release = ins.Op0Kind == OpKind.Immediate16 ? ins.Immediate16 : 0u;
        if (IsReturnToOuterRing(selector))
        {
            // The parameters are released from both stacks (SDM Vol. 2B, RET, RETURN-TO-OUTER-PRIVILEGE-LEVEL).
            if (!ReturnToOuterRing(selector, eip, size, flags: null, stackAdjust: release)) return false;
            _ctx.Esp += release;
            return true;
        }
        if (!CheckCodeTarget(selector, viaReturn: true, out SegmentRegister cache, out uint address, out uint high)) return false;
        if (!CommitCodeTarget(cache, address, high, eip)) return false;
        AdjustStackPointer(release);
        return true;
    }

    /// <summary>LDS, LES, LFS, LGS, LSS: a far pointer from memory into a segment register and a general register.</summary>
    private bool LoadFarPointer(ref Instruction ins)
    {
        int size = RegSize[(int)ins.Op0Register];
        uint ea = Ea(ref ins);
        uint offset = size == 4 ? Read32(ea) : Read16(ea);
        var selector = (ushort)Read16(ea + (uint)size);
        if (_faulted) return false;
        Sreg segment = ins.Mnemonic switch
        {
            Mnemonic.Lds => Sreg.Ds,
            Mnemonic.Les => Sreg.Es,
            Mnemonic.Lfs => Sreg.Fs,
            Mnemonic.Lgs => Sreg.Gs,
            _ => Sreg.Ss,
        };
        if (!LoadDataSegment(segment, selector)) return false;
        WriteReg(ins.Op0Register, offset);
        return true;
    }
}
