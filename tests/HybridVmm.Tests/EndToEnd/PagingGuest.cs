namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// The `paging` sample guest prints the same bytes under QEMU and HybridVmm but for one line: a reserved bit in a
/// 4 MiB PDE. The SDM (Vol. 3A, 4.7, "RSVD flag") says the error code then has P set as well, because reserved bits
/// are checked only in present entries: 9 for a read. QEMU 7.2's TCG reports RSVD alone (8). HybridVmm follows the
/// SDM, and the tests assert the difference rather than hide it (docs/conformance.md).
/// </summary>
internal static class PagingGuest
{
    public const string QemuReservedBitLine = "reserved bit 21 in a 4 MiB pde: faults=1 cr2=40507004 error=8";
    private const string SdmReservedBitLine = "reserved bit 21 in a 4 MiB pde: faults=1 cr2=40507004 error=9";

    /// <summary>QEMU's output with its one departure from the SDM replaced by what the SDM prescribes.</summary>
    public static string AsTheSdmSays(string qemuOutput) => qemuOutput.Replace(QemuReservedBitLine, SdmReservedBitLine);
}
