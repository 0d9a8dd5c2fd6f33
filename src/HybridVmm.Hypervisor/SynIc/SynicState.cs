namespace HybridVmm.Hypervisor.SynIc;

/// <summary>
/// One virtual processor's SynIC registers and the messages queued behind busy slots, for save and restore.
/// The message and event-flag pages themselves are guest RAM (overlay pages, TLFS 11.2), so a slot's contents
/// and its MessagePending flag (the guest's cue to write EOM) travel with the RAM, not here.
/// <paramref name="Timers"/>: the four synthetic timers, null when none was in use (and in snapshots older than them).
/// </summary>
public sealed record SynicState(ulong SControl, ulong Simp, ulong Siefp, IReadOnlyList<ulong> Sints, IReadOnlyList<SynicQueuedMessage> Queued,
    IReadOnlyList<SyntheticTimerState>? Timers = null);

/// <summary>A message waiting in <see cref="Sint"/>'s queue, in delivery order.</summary>
public sealed record SynicQueuedMessage(int Sint, uint MessageType, byte[] Payload, ulong Sender);
