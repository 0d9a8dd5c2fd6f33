namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Where a compared sample guest prints something else under QEMU than under HybridVmm because QEMU's TCG departs
/// from the Intel SDM, and HybridVmm follows the SDM. The tests replace exactly these lines of QEMU's output by the
/// SDM's and then require byte-identical output, so each difference is asserted rather than hidden
/// (docs/conformance.md, "Whole-program runs").
/// </summary>
internal static class QemuDepartures
{
    private static readonly Dictionary<string, (string Qemu, string Sdm, string Why)[]> ByGuest = new()
    {
        ["paging"] =
        [
            ("reserved bit 21 in a 4 MiB pde: faults=1 cr2=40507004 error=8",
             "reserved bit 21 in a 4 MiB pde: faults=1 cr2=40507004 error=9",
             "SDM Vol. 3A, 4.7: RSVD is set only with P (the entry was present); QEMU 7.2 reports RSVD alone"),
        ],
        ["segments"] =
        [
            ("own gdt: cs=8 ds=10 ss=10, code descriptor accessed=0",
             "own gdt: cs=8 ds=10 ss=10, code descriptor accessed=1",
             "SDM Vol. 3A, 3.4.5.1: loading a selector into any segment register sets the descriptor's accessed bit; QEMU's far JMP does not"),
            ("read across the limit: faults=0 vector=0 error=0",
             "read across the limit: faults=1 vector=13 error=0",
             "SDM Vol. 3A, 5.3: an access past the segment limit is #GP(0); QEMU's TCG does not check data-segment limits"),
            ("expand-down, below the limit: faults=0 vector=0 error=0",
             "expand-down, below the limit: faults=1 vector=13 error=0",
             "SDM Vol. 3A, 5.3: offsets up to the limit of an expand-down segment are outside it; QEMU does not check"),
            ("use of a null fs: faults=0 vector=0 error=0",
             "use of a null fs: faults=1 vector=13 error=0",
             "SDM Vol. 3A, 5.4.1: an access through a segment register holding a null selector is #GP(0); QEMU does not check"),
        ],
    };

    /// <summary>The guests with departures (every other compared guest must match QEMU as it is).</summary>
    public static IEnumerable<string> Guests => ByGuest.Keys;

    /// <summary>The QEMU lines each departure replaces: all of them must be in QEMU's output, or the list is stale.</summary>
    public static IEnumerable<string> QemuLines(string guest) => ByGuest[guest].Select(d => d.Qemu);

    /// <summary>QEMU's output with its departures from the SDM replaced by what the SDM prescribes.</summary>
    public static string AsTheSdmSays(string guest, string qemuOutput) =>
        ByGuest[guest].Aggregate(qemuOutput, (text, d) => text.Replace(d.Qemu + "\n", d.Sdm + "\n"));
}
