using System.Runtime.CompilerServices;
using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// 32-bit paging (Intel SDM Vol. 3A, 4.3) and PAE paging (4.4): the guest's own page tables translate a linear address to a
/// guest-physical one, which the second-level table then translates to host memory (System/X86Core.Memory.cs).
/// Together they are the two-dimensional walk of EPT/NPT: the guest's walk reads its page-directory and page-table
/// entries at guest-physical addresses, and each of those reads goes through the second-level table too.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>32-bit paging: 4 KiB pages, and 4 MiB pages when CR4.PSE=1 and PDE.PS=1. No PSE-36 (CPUID leaf 1 does not
/// report it): a 4 MiB page lies below 4 GiB, bits 21:13 of its PDE are reserved (SDM table 4-4) and a set one is a #PF
/// with RSVD. So 32-bit paging, like paging off, reaches only guest-physical addresses below 4 GiB.</item>
/// <item>PAE paging (CR4.PAE=1): four PDPTEs at CR3[31:5], then 512-entry page directories and page tables of 64-bit
/// entries; 2 MiB pages when PDE.PS=1 (whatever CR4.PSE); execute-disable (bit 63) when IA32_EFER.NXE=1, on any level
/// below the PDPTE. MAXPHYADDR is 36 (CPUID 0x80000008 says so, as QEMU's 32-bit CPUs with PAE do): an entry's bits 35:12
/// name a guest-physical page, which may lie above 4 GiB (RAM above 4 GiB, <see cref="GuestRam"/>), and its bits 62:36
/// (and 63 without NXE; all of 63:36 in a PDPTE) are reserved (SDM 4.4.2). A MOV to CR3, or to CR0/CR4 that turns PAE paging on or
/// changes its controls, checks the four PDPTEs and #GPs if a present one has a reserved bit (SDM 4.4.1); the walk then
/// reads the PDPTE from memory each time, as QEMU's TCG does, rather than from PDPTE registers.</item>
/// <item>Access rights (SDM 4.6): a user-mode access (CPL 3, not an implicit supervisor access such as a descriptor
/// table read) needs U/S=1 in both levels, and R/W=1 in both levels to write; a supervisor access may read anything
/// and write anything when CR0.WP=0, only R/W=1 pages when CR0.WP=1.</item>
/// <item>Accessed and dirty flags (SDM 4.8): a walk sets PDE.A when it goes on to the page table, and, once the access
/// is allowed, the leaf's A and (for a write) D. A write through a TLB entry made by a read walks again to set D.</item>
/// <item>A #PF stores the linear address in CR2 and pushes the error code (SDM 4.7): P (a protection violation or a
/// reserved bit, rather than a not-present entry), W/R, U/S and RSVD.</item>
/// <item>The software TLB is direct-mapped by linear page: a hit costs one tag compare and one rights test. It caches
/// linear page → guest-physical page with the rights of the walk; the second-level table is still consulted on every
/// access, so the kernel's changes to it (copy-on-write, dirty logging, remapping) need no TLB shootdown. As on real
/// processors it is not coherent with the page tables: the guest flushes it with MOV CR3 (global pages stay when
/// CR4.PGE=1), INVLPG, or by changing CR0.PG/WP or CR4.PSE/PGE (everything goes).</item>
/// </list>
/// </remarks>
public sealed unsafe partial class X86Core
{
    private const int TlbEntries = 1024;
    private const uint TlbValid = 1;

    // Rights bits of a TLB entry, and the rights an access needs (_readRequired, _writeRequired).
    // TlbSupervisorPage marks a page user mode cannot reach: what a supervisor data access needs under SMAP (CR4.SMAP=1
    // and EFLAGS.AC=0, or an implicit access at CPL 3), and a supervisor fetch under SMEP.
    // TlbExecute: no execute-disable bit applies (every page without PAE and NXE); every fetch needs it.
    private const byte TlbUserRead = 1, TlbUserWrite = 2, TlbSupervisorWrite = 4, TlbDirty = 8, TlbGlobal = 16, TlbLargePage = 32,
        TlbSupervisorPage = 64, TlbExecute = 128;

    // Page-directory and page-table entry bits (SDM Vol. 3A, tables 4-4 to 4-6).
    private const uint PtePresent = 1, PteWritable = 2, PteUser = 4, PteAccessed = 0x20, PteDirty = 0x40, PtePageSize = 0x80, PteGlobal = 0x100;
    private const uint Pde4MReservedBits = 0x003F_E000; // bits 21:13: no PSE-36, a 4 MiB page stays below 4 GiB
    // PAE entries (SDM Vol. 3A, tables 4-8 to 4-11), with MAXPHYADDR 36: in the high dword, bits 3:0 are address bits
    // 35:32 and the rest is reserved but for XD (bit 63) under NXE (a PDPTE has no XD); a PDPTE also reserves bits 2:1 and
    // 8:5, and a 2 MiB PDE bits 20:13.
    private const uint PdpteReservedLow = 0x1E6, Pde2MReservedLow = 0x001F_E000, PaeXdHigh = 0x8000_0000,
        PaeAddressHigh = (1u << (GuestRam.MaxPhysicalAddressBits - 32)) - 1, PaeReservedHigh = ~PaeAddressHigh;

    private const uint Cr0Pe = (uint)Cr0Flags.PE, Cr0Wp = (uint)Cr0Flags.WP, Cr0Pg = (uint)Cr0Flags.PG;
    private const uint Cr4Pse = (uint)Cr4Flags.PSE, Cr4Pae = (uint)Cr4Flags.PAE, Cr4Pge = (uint)Cr4Flags.PGE,
        Cr4Smep = (uint)Cr4Flags.SMEP, Cr4Smap = (uint)Cr4Flags.SMAP;

    // #PF error code bits (SDM Vol. 3A, 4.7).
    private const uint PfPresent = 1, PfWrite = 2, PfUser = 4, PfReserved = 8, PfFetch = 16;

    // PageBase first: 16 bytes an entry rather than 24 (the TLB is read on every access).
    private struct TlbEntry
    {
        /// <summary>The guest-physical page base the linear page maps to (above 4 GiB only through PAE paging).</summary>
        public ulong PageBase;
        /// <summary>The linear page base with <see cref="TlbValid"/> set; 0 when empty.</summary>
        public uint Tag;
        public byte Rights;
    }

    private readonly TlbEntry[] _tlb = new TlbEntry[TlbEntries];
    // CR0.PG (with PE): linear addresses go through the guest's page tables.
    private bool _pagingEnabled;
    // Some TLB entry came from a 4 MiB page: INVLPG must then drop every entry of that page, not one.
    private bool _tlbHasLargePages;
    // The TLB rights a data read, a data write and an instruction fetch need at the current privilege level (and, for
    // a supervisor, under the current CR4.SMAP, EFLAGS.AC and CR4.SMEP).
    private byte _readRequired;
    private byte _writeRequired = TlbSupervisorWrite | TlbDirty;
    private byte _fetchRequired = TlbExecute;

    /// <summary>True when CR0.PG is set: linear addresses are translated by the guest's page tables.</summary>
    public bool PagingEnabled => _pagingEnabled;

    /// <summary>
    /// Linear → guest-physical for a data access while paging is on: the TLB on a hit, otherwise a walk. -1 when the
    /// access faulted (#PF recorded, or the walk's own memory access intercepted).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long LinearToPhysical(uint linear, bool write)
    {
        ref TlbEntry entry = ref _tlb[(linear >> PageShift) & (TlbEntries - 1)];
        byte required = write ? _writeRequired : _readRequired;
        if (entry.Tag == ((linear & ~PageOffsetMask) | TlbValid) && (entry.Rights & required) == required)
        {
            return (long)(entry.PageBase | (linear & PageOffsetMask));
        }
        return WalkAndFill(linear, write, fetch: false, required);
    }

    /// <summary>Linear → guest-physical for an instruction fetch (a read at the current privilege level, and SMEP's rule for a supervisor).</summary>
    private long FetchToPhysical(uint linear)
    {
        ref TlbEntry entry = ref _tlb[(linear >> PageShift) & (TlbEntries - 1)];
        if (entry.Tag == ((linear & ~PageOffsetMask) | TlbValid) && (entry.Rights & _fetchRequired) == _fetchRequired)
        {
            return (long)(entry.PageBase | (linear & PageOffsetMask));
        }
        return WalkAndFill(linear, write: false, fetch: true, _fetchRequired);
    }

    /// <summary>The page walk (SDM Vol. 3A, 4.3), the access-rights check, A/D updates and the TLB fill.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private long WalkAndFill(uint linear, bool write, bool fetch, byte required)
    {
        if (_faulted)
        {
            return -1;
        }
        bool user = (required & (TlbUserRead | TlbUserWrite)) != 0;
        // A supervisor access that SMAP (data) or SMEP (fetch) forbids on a user page; the caller's required rights say
        // whether the rule applies now (CR4, EFLAGS.AC, CPL, implicit access).
        bool supervisorPageOnly = (required & TlbSupervisorPage) != 0;
        if ((_ctx.Cr4 & Cr4Pae) != 0)
        {
            return WalkPaeAndFill(linear, write, fetch, user, supervisorPageOnly);
        }
        // No NX in 32-bit paging: the I/D bit reports a fetch only while CR4.SMEP=1 (SDM 4.7).
        uint accessBits = (write ? PfWrite : 0) | (user ? PfUser : 0) | (fetch && (_ctx.Cr4 & Cr4Smep) != 0 ? PfFetch : 0);

        uint pdeAddress = (_ctx.Cr3 & ~PageOffsetMask) | ((linear >> 22) << 2);
        if (!ReadPagingEntry(pdeAddress, out uint pde)) return -1;
        if ((pde & PtePresent) == 0) return PageFault(linear, accessBits);

        bool large = (pde & PtePageSize) != 0 && (_ctx.Cr4 & Cr4Pse) != 0;
        uint leaf, leafAddress, rights, pageBase;
        if (large)
        {
            if ((pde & Pde4MReservedBits) != 0) return PageFault(linear, accessBits | PfPresent | PfReserved);
            leaf = pde;
            leafAddress = pdeAddress;
            rights = pde;
            pageBase = (pde & 0xFFC0_0000) | (linear & 0x003F_F000);
        }
        else
        {
            if ((pde & PteAccessed) == 0)
            {
                pde |= PteAccessed;
                if (!WritePagingEntry(pdeAddress, pde)) return -1;
            }
            leafAddress = (pde & ~PageOffsetMask) | (((linear >> PageShift) & 0x3FF) << 2);
            if (!ReadPagingEntry(leafAddress, out leaf)) return -1;
            if ((leaf & PtePresent) == 0) return PageFault(linear, accessBits);
            rights = pde & leaf;
            pageBase = leaf & ~PageOffsetMask;
        }

        return CheckAndFill(linear, accessBits, write, user, supervisorPageOnly, fetch, rights, leaf, leafAddress, pageBase, large, executable: true);
    }

    /// <summary>
    /// The end of either walk (SDM Vol. 3A, 4.6 and 4.8): the access-rights check on the levels' combined R/W and U/S
    /// (<paramref name="rights"/>) and, for a fetch, execute-disable; then the leaf's A and (for a write) D; then the TLB
    /// entry. <paramref name="fetch"/> only matters here for a page that is not <paramref name="executable"/>.
    /// </summary>
    private long CheckAndFill(uint linear, uint accessBits, bool write, bool user, bool supervisorPageOnly, bool fetch,
        uint rights, uint leaf, ulong leafAddress, ulong pageBase, bool large, bool executable)
    {
        bool writable = (rights & PteWritable) != 0;
        bool userPage = (rights & PteUser) != 0;
        bool supervisorWrite = writable || (_ctx.Cr0 & Cr0Wp) == 0;
        if ((user && !userPage) || (write && (user ? !writable : !supervisorWrite)) || (supervisorPageOnly && userPage)
            || (fetch && !executable))
        {
            return PageFault(linear, accessBits | PfPresent);
        }

        uint updated = leaf | PteAccessed | (write ? PteDirty : 0);
        if (updated != leaf && !WritePagingEntry(leafAddress, updated)) return -1;

        ref TlbEntry entry = ref _tlb[(linear >> PageShift) & (TlbEntries - 1)];
        entry.Tag = (linear & ~PageOffsetMask) | TlbValid;
        entry.PageBase = pageBase;
        entry.Rights = (byte)((userPage ? TlbUserRead : 0) | (userPage && writable ? TlbUserWrite : 0)
            | (supervisorWrite ? TlbSupervisorWrite : 0) | ((updated & PteDirty) != 0 ? TlbDirty : 0)
            | ((leaf & PteGlobal) != 0 && (_ctx.Cr4 & Cr4Pge) != 0 ? TlbGlobal : 0) | (large ? TlbLargePage : 0)
            | (userPage ? 0 : TlbSupervisorPage) | (executable ? TlbExecute : 0));
        _tlbHasLargePages |= large;
        FastTlbDrop(linear); // the translator's entry came from the entry this one replaces
        return (long)(pageBase | (linear & PageOffsetMask));
    }

    /// <summary>
    /// The PAE walk (SDM Vol. 3A, 4.4): PDPTE, PDE, then (for a 4 KiB page) PTE, each 64 bits. R/W and U/S come from
    /// the PDE and PTE (a PDPTE has neither), and so does execute-disable under NXE. A/D as in 32-bit paging.
    /// </summary>
    private long WalkPaeAndFill(uint linear, bool write, bool fetch, bool user, bool supervisorPageOnly)
    {
        bool nxe = (_ctx.Efer & EferNxe) != 0;
        uint highReserved = nxe ? PaeReservedHigh & ~PaeXdHigh : PaeReservedHigh;
        // With NXE the I/D bit reports every fetch; without it, only under SMEP (SDM 4.7).
        uint accessBits = (write ? PfWrite : 0) | (user ? PfUser : 0) | (fetch && (nxe || (_ctx.Cr4 & Cr4Smep) != 0) ? PfFetch : 0);

        uint pdpteAddress = (_ctx.Cr3 & ~0x1Fu) | ((linear >> 30) << 3);
        if (!ReadPagingEntry(pdpteAddress, out uint pdpte) || !ReadPagingEntry(pdpteAddress + 4, out uint pdpteHigh)) return -1;
        if ((pdpte & PtePresent) == 0) return PageFault(linear, accessBits);
        if ((pdpte & PdpteReservedLow) != 0 || (pdpteHigh & PaeReservedHigh) != 0) return PageFault(linear, accessBits | PfPresent | PfReserved);

        ulong pdeAddress = PaeBase(pdpte, pdpteHigh) | (((linear >> 21) & 0x1FF) << 3);
        if (!ReadPagingEntry(pdeAddress, out uint pde) || !ReadPagingEntry(pdeAddress + 4, out uint pdeHigh)) return -1;
        if ((pde & PtePresent) == 0) return PageFault(linear, accessBits);
        bool large = (pde & PtePageSize) != 0;
        if ((pdeHigh & highReserved) != 0 || (large && (pde & Pde2MReservedLow) != 0))
        {
            return PageFault(linear, accessBits | PfPresent | PfReserved);
        }

        uint leaf, rights;
        ulong leafAddress, pageBase;
        bool executeDisabled = (pdeHigh & PaeXdHigh) != 0;
        if (large)
        {
            (leaf, leafAddress, rights) = (pde, pdeAddress, pde);
            pageBase = ((ulong)(pdeHigh & PaeAddressHigh) << 32) | (pde & 0xFFE0_0000) | (linear & 0x001F_F000);
        }
        else
        {
            if ((pde & PteAccessed) == 0)
            {
                pde |= PteAccessed;
                if (!WritePagingEntry(pdeAddress, pde)) return -1;
            }
            leafAddress = PaeBase(pde, pdeHigh) | (((linear >> PageShift) & 0x1FF) << 3);
            if (!ReadPagingEntry(leafAddress, out leaf) || !ReadPagingEntry(leafAddress + 4, out uint leafHigh)) return -1;
            if ((leaf & PtePresent) == 0) return PageFault(linear, accessBits);
            if ((leafHigh & highReserved) != 0) return PageFault(linear, accessBits | PfPresent | PfReserved);
            rights = pde & leaf;
            pageBase = PaeBase(leaf, leafHigh);
            executeDisabled |= (leafHigh & PaeXdHigh) != 0;
        }

        return CheckAndFill(linear, accessBits, write, user, supervisorPageOnly, fetch, rights, leaf, leafAddress, pageBase, large,
            executable: !(nxe && executeDisabled));
    }

    /// <summary>The 4 KiB-aligned guest-physical address a PAE entry names: its bits 35:12 (MAXPHYADDR 36).</summary>
    private static ulong PaeBase(uint low, uint high) => ((ulong)(high & PaeAddressHigh) << 32) | (low & ~PageOffsetMask);

    /// <summary>
    /// Whether PAE paging may use the PDPTEs at <paramref name="cr3"/>: none that is present has a reserved bit set (SDM
    /// Vol. 3A, 4.4.1; a MOV that would load such a PDPTE is #GP(0)). A PDPT outside RAM reads as all ones.
    /// </summary>
    private bool PdptesValid(uint cr3)
    {
        for (uint i = 0; i < 4; i++)
        {
            uint address = (cr3 & ~0x1Fu) + (i << 3);
            uint low = PeekPhysical32(address) ?? ~0u, high = PeekPhysical32(address + 4) ?? ~0u;
            if ((low & PtePresent) != 0 && ((low & PdpteReservedLow) != 0 || (high & PaeReservedHigh) != 0))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Whether PAE paging is on with these control registers (CR0.PG with PE, and CR4.PAE).</summary>
    private static bool PaePaging(uint cr0, uint cr4) => (cr0 & (Cr0Pg | Cr0Pe)) == (Cr0Pg | Cr0Pe) && (cr4 & Cr4Pae) != 0;

    /// <summary>Records a #PF for the current instruction: CR2 = the linear address (SDM Vol. 3A, 4.7).</summary>
    private long PageFault(uint linear, uint errorCode)
    {
        _ctx.Cr2 = linear;
        _faulted = true;
        _interceptCompletable = false;
        _exit = new CpuExit(CpuExitReason.Exception, Vector: ExceptionVector.PageFault, ErrorCode: errorCode);
        return -1;
    }

    /// <summary>
    /// Reads a paging-structure entry at a guest-physical address through the second-level table. An entry outside
    /// RAM is an intercept that cannot be completed (a device cannot hold page tables; EPT calls it a violation
    /// during the guest's walk).
    /// </summary>
    private bool ReadPagingEntry(ulong guestPhysical, out uint value)
    {
        long host = HostAddressOf(guestPhysical, write: false);
        if (host >= 0)
        {
            value = Unsafe.ReadUnaligned<uint>(ref _ram[host]);
            return true;
        }
        value = 0;
        WalkIntercept(guestPhysical, write: false);
        return false;
    }

    /// <summary>Writes back an entry with A/D set. A write-protected page (copy-on-write, dirty logging) exits first.</summary>
    private bool WritePagingEntry(ulong guestPhysical, uint value)
    {
        long host = HostAddressOf(guestPhysical, write: true);
        if (host >= 0)
        {
            Unsafe.WriteUnaligned(ref _ram[host], value);
            CodePage? code = _codePages[guestPhysical >> PageShift];
            if (code is not null && code.Count != 0 && code.Overlaps((uint)guestPhysical & PageOffsetMask, 4))
            {
                code.Clear();
            }
            return true;
        }
        WalkIntercept(guestPhysical, write: true);
        return false;
    }

    private void WalkIntercept(ulong guestPhysical, bool write)
    {
        _faulted = true;
        _interceptCompletable = false;
        _exit = new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: guestPhysical, IsWrite: write, Size: 4);
    }

    /// <summary>
    /// Linear → guest-physical without side effects (no A/D update, no fault, no TLB fill): for diagnostics and for a
    /// host that inspects the guest. Null when the address is not mapped.
    /// </summary>
    public ulong? TranslateLinearForInspection(uint linear)
    {
        if (!_pagingEnabled) return linear;
        if ((_ctx.Cr4 & Cr4Pae) != 0)
        {
            ulong pdpteAddress = (_ctx.Cr3 & ~0x1Fu) | ((linear >> 30) << 3);
            uint pdpte = PeekPhysical32(pdpteAddress) ?? 0;
            if ((pdpte & PtePresent) == 0) return null;
            ulong pdeAddress = PaeBase(pdpte, PeekPhysical32(pdpteAddress + 4) ?? 0) | (((linear >> 21) & 0x1FF) << 3);
            uint pae = PeekPhysical32(pdeAddress) ?? 0;
            if ((pae & PtePresent) == 0) return null;
            uint paeHigh = PeekPhysical32(pdeAddress + 4) ?? 0;
            if ((pae & PtePageSize) != 0) return ((ulong)(paeHigh & PaeAddressHigh) << 32) | (pae & 0xFFE0_0000) | (linear & 0x001F_FFFF);
            ulong pteAddress = PaeBase(pae, paeHigh) | (((linear >> PageShift) & 0x1FF) << 3);
            uint pte4K = PeekPhysical32(pteAddress) ?? 0;
            return (pte4K & PtePresent) == 0 ? null : PaeBase(pte4K, PeekPhysical32(pteAddress + 4) ?? 0) | (linear & PageOffsetMask);
        }
        uint pde = PeekPhysical32((_ctx.Cr3 & ~PageOffsetMask) | ((linear >> 22) << 2)) ?? 0;
        if ((pde & PtePresent) == 0) return null;
        if ((pde & PtePageSize) != 0 && (_ctx.Cr4 & Cr4Pse) != 0)
        {
            return (pde & 0xFFC0_0000) | (linear & 0x003F_FFFF);
        }
        uint pte = PeekPhysical32((pde & ~PageOffsetMask) | (((linear >> PageShift) & 0x3FF) << 2)) ?? 0;
        return (pte & PtePresent) == 0 ? null : (pte & ~PageOffsetMask) | (linear & PageOffsetMask);
    }

    private uint? PeekPhysical32(ulong guestPhysical) =>
        HostAddressOf(guestPhysical, write: false) is long host and >= 0 ? Unsafe.ReadUnaligned<uint>(ref _ram[host]) : null;

    /// <summary>The host address the second-level table gives a guest-physical address (writable, for a write); -1 if none. No exit.</summary>
    private long HostAddressOf(ulong guestPhysical, bool write)
    {
        ulong page = guestPhysical >> PageShift;
        if (page < (ulong)_slatEntries.Length && _slatEntries[page] is int slat && slat >= 0
            && (!write || (slat & SecondLevelPageTable.WritableBit) != 0))
        {
            return ((long)(slat & SecondLevelPageTable.FrameMask) << PageShift) | (long)((uint)guestPhysical & PageOffsetMask);
        }
        return -1;
    }

    // ---- TLB maintenance ----

    /// <summary>Drops every TLB entry, or every non-global one (MOV CR3 with CR4.PGE=1, SDM Vol. 3A, 4.10.4.1).</summary>
    private void FlushTlb(bool keepGlobal)
    {
        TlbEntry[] tlb = _tlb;
        bool large = false;
        for (int i = 0; i < tlb.Length; i++)
        {
            if (keepGlobal && (tlb[i].Rights & TlbGlobal) != 0)
            {
                large |= (tlb[i].Rights & TlbLargePage) != 0;
                continue;
            }
            tlb[i] = default;
        }
        _tlbHasLargePages = large;
        FastTlbFlush();
        CodeMappingChanged();
    }

    /// <summary>INVLPG (SDM Vol. 2A): drops the translation of the page holding <paramref name="linear"/>, global or not.</summary>
    private void InvalidatePage(uint linear)
    {
        if (_tlbHasLargePages)
        {
            // A 4 MiB page is cached as 4 KiB entries: drop every entry of it.
            uint region = linear & 0xFFC0_0000;
            TlbEntry[] tlb = _tlb;
            for (int i = 0; i < tlb.Length; i++)
            {
                if (tlb[i].Tag != 0 && (tlb[i].Tag & 0xFFC0_0000) == region && (tlb[i].Rights & TlbLargePage) != 0)
                {
                    tlb[i] = default;
                    FastTlbDrop(i);
                }
            }
        }
        FastTlbDrop(linear);
        ref TlbEntry entry = ref _tlb[(linear >> PageShift) & (TlbEntries - 1)];
        if (entry.Tag == ((linear & ~PageOffsetMask) | TlbValid))
        {
            entry = default;
        }
        CodeMappingChanged();
    }

    /// <summary>
    /// The run loop caches the code page of EIP's linear page; a changed translation must make it look again before
    /// the next instruction (the event check is the run loop's one per-instruction flag).
    /// </summary>
    private void CodeMappingChanged()
    {
        _codeMappingChanged = true;
        _eventCheck = true;
    }

    private bool _codeMappingChanged;

    /// <summary>
    /// The rights a data access and a fetch need (SDM Vol. 3A, 4.6): after a change of the CPL, of CR4.SMEP/SMAP, or of
    /// EFLAGS.AC. At CPL 3, a user page. At CPL 0-2, any page, except that SMAP (CR4.SMAP=1 with EFLAGS.AC=0) keeps data
    /// accesses off user pages and SMEP (CR4.SMEP=1) keeps fetches off them.
    /// </summary>
    private void UpdateAccessRights()
    {
        bool user = _ctx.Cpl == 3;
        byte smap = !user && (_ctx.Cr4 & Cr4Smap) != 0 && (_ctx.Eflags & AcFlag) == 0 ? TlbSupervisorPage : (byte)0;
        byte read = user ? TlbUserRead : smap, write = (byte)((user ? TlbUserWrite : TlbSupervisorWrite) | TlbDirty | smap);
        if (read != _readRequired || write != _writeRequired)
        {
            FastTlbFlush(); // the translator's entries allow what the old rights allowed
        }
        _readRequired = read;
        _writeRequired = write;
        _fetchRequired = (byte)(TlbExecute | (user ? TlbUserRead : (_ctx.Cr4 & Cr4Smep) != 0 ? TlbSupervisorPage : 0));
    }

    /// <summary>
    /// After an instruction or event that may have changed EFLAGS as a whole (POPF, IRET, a rollback, a restore): SMAP's
    /// rule follows AC, and a set IF arms the event check for the maskable interrupts that waited for it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FlagsChanged()
    {
        if ((_ctx.Cr4 & Cr4Smap) != 0)
        {
            UpdateAccessRights();
        }
        if ((_ctx.Eflags & (uint)EFlags.IF) != 0 && !_eventCheck)
        {
            RecomputeEventCheck();
        }
    }

    private void SetControlRegisters(uint cr0, uint cr3, uint cr4)
    {
        _ctx.Cr0 = cr0;
        _ctx.Cr3 = cr3;
        _ctx.Cr4 = cr4;
        _pagingEnabled = (cr0 & (Cr0Pg | Cr0Pe)) == (Cr0Pg | Cr0Pe);
        FlushTlb(keepGlobal: false);
        UpdateAccessRights();
    }

    /// <summary>Applies a new CR0/CR4 to the paging state: PG, WP, PSE and PGE changes flush the whole TLB.</summary>
    private void PagingControlChanged(uint oldCr0, uint oldCr4)
    {
        _pagingEnabled = (_ctx.Cr0 & (Cr0Pg | Cr0Pe)) == (Cr0Pg | Cr0Pe);
        if (((oldCr0 ^ _ctx.Cr0) & (Cr0Pg | Cr0Wp | Cr0Pe)) != 0 || ((oldCr4 ^ _ctx.Cr4) & (Cr4Pse | Cr4Pge | Cr4Pae)) != 0)
        {
            FlushTlb(keepGlobal: false);
        }
    }
}
