namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// The channel-management messages the guest and the root's VMBus server exchange over HvPostMessage (guest to
/// root, connection 1) and the SynIC message page (root to guest, SINT 2). Every message starts with the VMBus
/// header { u32 MessageType; u32 Padding }. Numbers follow Linux's enum vmbus_channel_message_type where the
/// message exists there; docs/enlightened-io.md has the byte layouts.
/// </summary>
public static class VmBusProtocol
{
    /// <summary>HvPostMessage / SynIC message type of every VMBus message (as on Hyper-V).</summary>
    public const uint HvMessageType = 1;
    /// <summary>The SINT the VMBus server uses toward guests (VMBUS_MESSAGE_SINT on Hyper-V).</summary>
    public const int MessageSint = 2;

    public const uint OfferChannel = 1;
    public const uint RequestOffers = 3;
    public const uint AllOffersDelivered = 4;
    public const uint OpenChannel = 5;
    public const uint OpenChannelResult = 6;
    public const uint CloseChannel = 7;

    /// <summary>Connection IDs for HvSignalEvent on a channel: this base plus the relid.</summary>
    public const uint ChannelConnectionBase = 0x1000;

    public const int HeaderSize = 8;
    /// <summary>Header, interface GUID, instance GUID, relid, connection ID.</summary>
    public const int OfferSize = HeaderSize + 16 + 16 + 4 + 4;
    /// <summary>Header, relid, open ID, GPADL ID, inbound ring page offset (host-to-guest ring start, in pages).</summary>
    public const int OpenSize = HeaderSize + 4 + 4 + 4 + 4;
    /// <summary>Header, relid, open ID, status.</summary>
    public const int OpenResultSize = HeaderSize + 12;

    public const uint OpenStatusSuccess = 0;
    public const uint OpenStatusInvalid = 1;
}
