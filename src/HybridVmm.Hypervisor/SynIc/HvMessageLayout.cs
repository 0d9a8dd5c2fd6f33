namespace HybridVmm.Hypervisor.SynIc;

/// <summary>
/// The SynIC page layouts (TLFS 11.8-11.9). The message page holds 16 HV_MESSAGE slots of 256 bytes, one per
/// SINT: MessageType u32, PayloadSize u8, MessageFlags u8 (bit 0 MessagePending), Reserved u16, Sender u64,
/// then 240 bytes of payload. The event-flags page holds 16 blocks of 256 bytes (2,048 flags) per SINT.
/// </summary>
public static class HvMessageLayout
{
    public const int SintCount = 16;
    public const int SlotSize = 256;
    public const int HeaderSize = 16;
    public const int MaxPayload = 240;
    public const int FlagsPerSint = SlotSize * 8;

    public const int MessageTypeOffset = 0;
    public const int PayloadSizeOffset = 4;
    public const int FlagsOffset = 5;
    public const int SenderOffset = 8;
    public const byte MessagePendingFlag = 0x01;

    /// <summary>HvMessageTypeNone: the slot is free.</summary>
    public const uint MessageTypeNone = 0;

    /// <summary>Message types with bit 31 set belong to the hypervisor (TLFS 11.10.2); a guest may not post them.</summary>
    public const uint HypervisorMessageTypeMask = 0x8000_0000;

    /// <summary>Messages a SINT queues while its slot is busy, before a post fails with HV_STATUS_INSUFFICIENT_BUFFERS.</summary>
    public const int QueueLimit = 32;
}
