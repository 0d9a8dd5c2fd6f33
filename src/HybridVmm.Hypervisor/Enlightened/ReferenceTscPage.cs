using System.Buffers.Binary;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.Hypervisor.Enlightened;

/// <summary>
/// The partition's reference TSC page (TLFS chapter 12, "Partition Reference TSC Page": HV_REFERENCE_TSC_PAGE): TscSequence (u32 at 0), TscScale (u64 at 8) and
/// TscOffset (i64 at 16), from which a guest computes the partition reference time without an exit:
/// reference = ((TSC * TscScale) >> 64) + TscOffset, in 100 ns units. Here the TSC counts the guest's virtual time in
/// ticks (1 ns) plus the vCPU's TSC offset (IA32_TIME_STAMP_COUNTER writes move it), and HV_X64_MSR_TIME_REF_COUNT is
/// that time divided by 100: the page gives exactly the counter's value. It is written when the guest enables it and
/// whenever a vCPU's TSC offset changes. When no one page can agree with the counter (the vCPUs' TSC offsets differ, or one
/// is not a whole number of reference units), TscSequence is 0, which tells the guest to read the MSR instead (TLFS
/// chapter 12), as KVM does when its TSC is not stable.
/// </summary>
internal static class ReferenceTscPage
{
    /// <summary>⌈2^64 / 100⌉: ticks (1 ns) to 100 ns units, exact (the product's error stays below one unit for 5 years of virtual time).</summary>
    public const ulong Scale = 184_467_440_737_095_517;

    public const int SequenceOffset = 0, ScaleOffset = 8, OffsetOffset = 16;

    /// <summary>Bit 0 of HV_X64_MSR_REFERENCE_TSC.</summary>
    public const ulong EnableBit = 1;

    /// <summary>
    /// Rewrites the page of <paramref name="partition"/> if it is enabled: invalidated first (sequence 0), then the scale
    /// and offset, then a sequence that differs from the one the page held, so a reader that saw the old one retries.
    /// </summary>
    public static void Update(Partition partition)
    {
        ulong msr = partition.Hv.ReferenceTscMsr;
        if ((msr & EnableBit) == 0 || partition.AddressSpace is not { } space)
        {
            return;
        }

        ulong gpa = msr & ~0xFFFUL;
        Span<byte> header = stackalloc byte[24];
        if (!space.TryRead(gpa, header))
        {
            return;
        }

        uint old = BinaryPrimitives.ReadUInt32LittleEndian(header);
        space.TryWrite(gpa + SequenceOffset, [0, 0, 0, 0]);

        long tscOffset = (long)partition.VirtualProcessors[0].Core.TscOffset;
        bool valid = tscOffset % SyntheticTimersUnit == 0;
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            valid &= (long)vp.Core.TscOffset == tscOffset;
        }

        if (!valid)
        {
            return; // sequence 0: the guest falls back to HV_X64_MSR_TIME_REF_COUNT
        }

        // TSC = time + offset, with offset a multiple of 100: (TSC >> scale) = time / 100 + offset / 100.
        BinaryPrimitives.WriteUInt64LittleEndian(header[ScaleOffset..], Scale);
        BinaryPrimitives.WriteInt64LittleEndian(header[OffsetOffset..], -(tscOffset / SyntheticTimersUnit));
        space.TryWrite(gpa + ScaleOffset, header[ScaleOffset..]);
        uint sequence = old + 1;
        if (sequence is 0 or uint.MaxValue)
        {
            sequence = 1; // 0 means invalid (0xFFFFFFFF did in older versions of the TLFS)
        }

        BinaryPrimitives.WriteUInt32LittleEndian(header, sequence);
        space.TryWrite(gpa + SequenceOffset, header[..4]);
    }

    private const long SyntheticTimersUnit = SynIc.SyntheticTimers.TicksPerReferenceUnit;
}
