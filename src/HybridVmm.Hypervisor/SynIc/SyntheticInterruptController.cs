using System.Buffers.Binary;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.GuestMemory;

namespace HybridVmm.Hypervisor.SynIc;

/// <summary>
/// One virtual processor's synthetic interrupt controller (TLFS chapter 11): SCONTROL, the message page
/// (SIMP), the event-flags page (SIEFP), sixteen SINT registers and end-of-message. A message is copied into
/// its SINT's slot when the slot is free, otherwise it queues and the slot's MessagePending flag asks the
/// guest to write EOM when it frees the slot. An unmasked SINT is a fixed interrupt of the vCPU's local APIC with its
/// vector: the guest takes it through its IDT and writes the APIC's EOI, or sets the SINT's AutoEOI bit. Touched only by the scheduler thread, or by the root while the scheduler
/// waits for it at a barrier.
/// </summary>
internal sealed class SyntheticInterruptController
{
    private const ulong EnableBit = 1;
    private const ulong SintMasked = 1UL << 16;
    private const ulong SintAutoEoi = 1UL << 17;
    private const ulong SintPolling = 1UL << 18;
    private const ulong SintWritable = 0xFF | SintMasked | SintAutoEoi | SintPolling;
    private const ulong PageRegisterWritable = ~0xFFEUL; // enable bit 0 and GPA page bits 63:12

    // The partition's RAM (its message and event-flag pages live there) and the local APIC it interrupts through.
    private readonly GuestPhysicalAddressSpace? _memory;
    private readonly Apic.LocalApic _apic;
    private readonly ulong[] _sint = new ulong[HvMessageLayout.SintCount];
    private readonly Queue<QueuedMessage>?[] _queues = new Queue<QueuedMessage>?[HvMessageLayout.SintCount];

    internal SyntheticInterruptController(GuestPhysicalAddressSpace? memory, Apic.LocalApic apic)
    {
        _memory = memory;
        _apic = apic;
        Array.Fill(_sint, SintMasked);
        Timers = new SyntheticTimers(this, apic);
    }

    /// <summary>This vCPU's synthetic timers (TLFS chapter 12), which signal through this SynIC or, in direct mode, the APIC.</summary>
    public SyntheticTimers Timers { get; }

    public ulong SControl { get; private set; }
    public ulong Simp { get; private set; }
    public ulong Siefp { get; private set; }

    public bool Enabled => (SControl & EnableBit) != 0;

    public ulong Sint(int index) => _sint[index];

    private ulong SimpGpa => Simp & ~0xFFFUL;
    private ulong SiefpGpa => Siefp & ~0xFFFUL;

    /// <summary>Reads a SynIC or synthetic-timer MSR. False for an index this controller does not own.</summary>
    internal bool TryReadMsr(uint msr, out ulong value)
    {
        if (SyntheticTimers.Owns(msr))
        {
            value = Timers.Read(msr);
            return true;
        }

        value = msr switch
        {
            HvMsr.SControl => SControl,
            HvMsr.SVersion => 1,
            HvMsr.Simp => Simp,
            HvMsr.Siefp => Siefp,
            HvMsr.Eom => 0,
            >= HvMsr.Sint0 and <= HvMsr.Sint15 => _sint[msr - HvMsr.Sint0],
            _ => ulong.MaxValue,
        };
        return msr is HvMsr.SControl or HvMsr.SVersion or HvMsr.Simp or HvMsr.Siefp or HvMsr.Eom or (>= HvMsr.Sint0 and <= HvMsr.Sint15);
    }

    /// <summary>
    /// Writes a SynIC or synthetic-timer MSR at guest time <paramref name="now"/> (ticks). False (the caller injects #GP)
    /// for reserved bits, a read-only register or a page outside RAM.
    /// </summary>
    internal bool TryWriteMsr(uint msr, ulong value, long now = 0)
    {
        if (SyntheticTimers.Owns(msr))
        {
            return Timers.Write(msr, value, now);
        }

        switch (msr)
        {
            case HvMsr.SControl:
                if ((value & ~EnableBit) != 0) return false;
                SControl = value;
                Timers.RetryWaiting(now); // a timer message that found the SynIC disabled may go now
                return true;
            case HvMsr.Simp:
            case HvMsr.Siefp:
                if ((value & ~PageRegisterWritable) != 0 || !PageInRam(value)) return false;
                if (msr == HvMsr.Simp)
                {
                    Simp = value;
                    DeliverQueued();
                    Timers.RetryWaiting(now);
                }
                else
                {
                    Siefp = value;
                }

                return true;
            case HvMsr.Eom:
                EndOfMessage();
                Timers.RetryWaiting(now);
                return true;
            case >= HvMsr.Sint0 and <= HvMsr.Sint15:
                if ((value & ~SintWritable) != 0 || (value & 0xFF) is > 0 and < 16) return false;
                _sint[msr - HvMsr.Sint0] = value;
                return true;
            default:
                return false;
        }
    }

    private bool PageInRam(ulong register) =>
        (register & EnableBit) == 0 || (_memory is { } space && space.IsRam(register & ~0xFFFUL, 0x1000));

    /// <summary>
    /// Posts a message to <paramref name="sint"/>: into the slot if it is free, otherwise queued (TLFS 11.10.3).
    /// Fails with HV_STATUS_INVALID_SYNIC_STATE when the SynIC, the message page or the SINT is disabled.
    /// </summary>
    public HvStatus PostMessage(int sint, uint messageType, ReadOnlySpan<byte> payload, ulong sender)
    {
        if ((uint)sint >= HvMessageLayout.SintCount || payload.Length > HvMessageLayout.MaxPayload || messageType == HvMessageLayout.MessageTypeNone)
        {
            return HvStatus.InvalidParameter;
        }

        if (!Enabled || (Simp & EnableBit) == 0 || (_sint[sint] & SintMasked) != 0)
        {
            return HvStatus.InvalidSynicState;
        }

        Queue<QueuedMessage> queue = _queues[sint] ??= new Queue<QueuedMessage>();
        if (queue.Count >= HvMessageLayout.QueueLimit)
        {
            return HvStatus.InsufficientBuffers;
        }

        queue.Enqueue(new QueuedMessage(messageType, payload.ToArray(), sender));
        DeliverQueued();
        return HvStatus.Success;
    }

    /// <summary>Sets event flag <paramref name="flag"/> of <paramref name="sint"/>; a flag that goes from 0 to 1 asserts the SINT (TLFS 11.9).</summary>
    public HvStatus SignalEvent(int sint, int flag)
    {
        if ((uint)sint >= HvMessageLayout.SintCount || (uint)flag >= HvMessageLayout.FlagsPerSint)
        {
            return HvStatus.InvalidParameter;
        }

        if (!Enabled || (Siefp & EnableBit) == 0 || (_sint[sint] & SintMasked) != 0 || _memory is not { } space)
        {
            return HvStatus.InvalidSynicState;
        }

        ulong address = SiefpGpa + (ulong)(sint * HvMessageLayout.SlotSize + flag / 8);
        Span<byte> b = stackalloc byte[1];
        if (!space.TryRead(address, b)) return HvStatus.InvalidSynicState;
        byte bit = (byte)(1 << (flag & 7));
        if ((b[0] & bit) == 0)
        {
            b[0] |= bit;
            space.TryWrite(address, b);
            Assert(sint);
        }

        return HvStatus.Success;
    }

    /// <summary>
    /// Puts a hypervisor message (a timer's) straight into <paramref name="sint"/>'s slot if the SynIC, the message page
    /// and the slot are free and nothing is queued before it, and asserts the SINT. Otherwise sets the slot's
    /// MessagePending flag, so the guest writes EOM when it frees the slot, and returns false: the sender keeps the message.
    /// </summary>
    internal bool TryDeliverNow(int sint, uint messageType, ReadOnlySpan<byte> payload)
    {
        if (!Enabled || (Simp & EnableBit) == 0 || _memory is not { } space)
        {
            return false;
        }

        ulong address = SimpGpa + (ulong)(sint * HvMessageLayout.SlotSize);
        Span<byte> slot = stackalloc byte[HvMessageLayout.SlotSize];
        if (!space.TryRead(address, slot[..HvMessageLayout.HeaderSize]))
        {
            return false;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(slot) != HvMessageLayout.MessageTypeNone || QueuedMessages(sint) > 0)
        {
            if ((slot[HvMessageLayout.FlagsOffset] & HvMessageLayout.MessagePendingFlag) == 0)
            {
                space.TryWrite(address + HvMessageLayout.FlagsOffset, [(byte)(slot[HvMessageLayout.FlagsOffset] | HvMessageLayout.MessagePendingFlag)]);
            }

            return false;
        }

        slot.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(slot, messageType);
        slot[HvMessageLayout.PayloadSizeOffset] = (byte)payload.Length;
        payload.CopyTo(slot[HvMessageLayout.HeaderSize..]);
        space.TryWrite(address, slot);
        Assert(sint);
        return true;
    }

    /// <summary>
    /// Raises <paramref name="sint"/>'s interrupt with no message or event flag, as a device's SINT route does (KVM's
    /// irqfd to a SINT, which QEMU's hyperv-testdev drives). False when the SINT is masked or the SynIC disabled.
    /// </summary>
    internal bool AssertSint(int sint)
    {
        if ((uint)sint >= HvMessageLayout.SintCount || !Enabled || (_sint[sint] & SintMasked) != 0)
        {
            return false;
        }

        Assert(sint);
        return true;
    }

    /// <summary>The guest wrote HV_X64_MSR_EOM: slots it freed take the next queued message.</summary>
    public void EndOfMessage() => DeliverQueued();

    public int QueuedMessages(int sint) => _queues[sint]?.Count ?? 0;

    /// <summary>The registers and queued messages, for a snapshot (the pages are guest RAM and saved with it).</summary>
    public SynicState SaveState()
    {
        var queued = new List<SynicQueuedMessage>();
        for (int sint = 0; sint < HvMessageLayout.SintCount; sint++)
        {
            if (_queues[sint] is { } queue)
            {
                foreach (QueuedMessage m in queue)
                {
                    queued.Add(new SynicQueuedMessage(sint, m.Type, m.Payload.ToArray(), m.Sender));
                }
            }
        }

        return new SynicState(SControl, Simp, Siefp, _sint.ToArray(), queued, Timers.AnyActive ? Timers.SaveState() : null);
    }

    /// <summary>
    /// Puts saved state back verbatim: nothing is delivered and no SINT is asserted, because the slots are in the
    /// restored RAM and the requested vectors in the restored vCPU state. Null on success, otherwise why not.
    /// </summary>
    internal string? RestoreState(SynicState state)
    {
        if (state.Sints.Count != HvMessageLayout.SintCount)
        {
            return $"SynIC state has {state.Sints.Count} SINT registers, not {HvMessageLayout.SintCount}";
        }

        foreach (ulong sint in state.Sints)
        {
            if ((sint & ~SintWritable) != 0)
            {
                return $"SynIC SINT register 0x{sint:x} has reserved bits set";
            }
        }

        if ((state.SControl & ~EnableBit) != 0 || (state.Simp & ~PageRegisterWritable) != 0 || (state.Siefp & ~PageRegisterWritable) != 0
            || !PageInRam(state.Simp) || !PageInRam(state.Siefp))
        {
            return "SynIC SCONTROL, SIMP or SIEFP has reserved bits set or names a page outside the VM's RAM";
        }

        if (state.Timers is { } timers && Timers.RestoreState(timers) is { } timerError)
        {
            return timerError;
        }

        var queues = new Queue<QueuedMessage>?[HvMessageLayout.SintCount];
        foreach (SynicQueuedMessage m in state.Queued)
        {
            if ((uint)m.Sint >= HvMessageLayout.SintCount || m.Payload.Length > HvMessageLayout.MaxPayload || m.MessageType == HvMessageLayout.MessageTypeNone)
            {
                return $"SynIC queued message for SINT {m.Sint} is malformed";
            }

            Queue<QueuedMessage> queue = queues[m.Sint] ??= new Queue<QueuedMessage>();
            if (queue.Count >= HvMessageLayout.QueueLimit)
            {
                return $"SynIC queue of SINT {m.Sint} holds more than {HvMessageLayout.QueueLimit} messages";
            }

            queue.Enqueue(new QueuedMessage(m.MessageType, m.Payload.ToArray(), m.Sender));
        }

        SControl = state.SControl;
        Simp = state.Simp;
        Siefp = state.Siefp;
        for (int i = 0; i < _sint.Length; i++)
        {
            _sint[i] = state.Sints[i];
        }

        Array.Copy(queues, _queues, queues.Length);
        return null;
    }

    private void DeliverQueued()
    {
        if (!Enabled || (Simp & EnableBit) == 0 || _memory is not { } space)
        {
            return;
        }

        Span<byte> slot = stackalloc byte[HvMessageLayout.SlotSize];
        for (int sint = 0; sint < HvMessageLayout.SintCount; sint++)
        {
            Queue<QueuedMessage>? queue = _queues[sint];
            if (queue is null || queue.Count == 0)
            {
                continue;
            }

            ulong address = SimpGpa + (ulong)(sint * HvMessageLayout.SlotSize);
            if (!space.TryRead(address, slot[..HvMessageLayout.HeaderSize]))
            {
                continue;
            }

            if (BinaryPrimitives.ReadUInt32LittleEndian(slot) != HvMessageLayout.MessageTypeNone)
            {
                // Busy: ask the guest for an EOM once it has consumed the slot.
                Span<byte> flags = slot.Slice(HvMessageLayout.FlagsOffset, 1);
                if ((flags[0] & HvMessageLayout.MessagePendingFlag) == 0)
                {
                    flags[0] |= HvMessageLayout.MessagePendingFlag;
                    space.TryWrite(address + HvMessageLayout.FlagsOffset, flags);
                }

                continue;
            }

            QueuedMessage message = queue.Dequeue();
            slot.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(slot, message.Type);
            slot[HvMessageLayout.PayloadSizeOffset] = (byte)message.Payload.Length;
            slot[HvMessageLayout.FlagsOffset] = queue.Count > 0 ? HvMessageLayout.MessagePendingFlag : (byte)0;
            BinaryPrimitives.WriteUInt64LittleEndian(slot[HvMessageLayout.SenderOffset..], message.Sender);
            message.Payload.CopyTo(slot[HvMessageLayout.HeaderSize..]);
            space.TryWrite(address, slot);
            Assert(sint);
        }
    }

    private void Assert(int sint)
    {
        ulong config = _sint[sint];
        if (Enabled && (config & (SintMasked | SintPolling)) == 0)
        {
            // Through the local APIC, as on Hyper-V (TLFS 11.8.4): the vector enters IRR and, once taken, ISR, so the
            // guest writes the APIC's EOI, unless the SINT asks for auto-EOI, which takes the vector out of service at once.
            _apic.SetAutoEoi((byte)config, (config & SintAutoEoi) != 0);
            _apic.Accept((byte)config);
        }
    }

    private readonly record struct QueuedMessage(uint Type, byte[] Payload, ulong Sender);
}
