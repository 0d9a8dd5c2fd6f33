using System.Security.Cryptography;
using HybridVmm.HostOS.Storage;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// A disk as a snapshot or a migration stream refers to it: by identity, never by path. The host's own
/// configuration names the file behind a disk (<c>restore --disk</c>, <c>receive --disk</c>, serve's
/// <c>DiskImage</c>), as Hyper-V's VM configuration names its VHDX and QEMU's command line its drives while
/// their saved state only refers to them. A crafted snapshot therefore cannot choose a host file for the guest
/// to write. The identity (size and SHA-256 of the guest-visible contents when the VM was saved) makes a wrong
/// or changed disk a refusal instead of a corrupted guest.
/// </summary>
/// <param name="Name">The file name the disk had when saved (no directory): for messages only, never opened.</param>
/// <param name="Bytes">The disk's size in bytes; null in a snapshot from an older build, which kept a path only.</param>
/// <param name="Sha256">Lower-case hex SHA-256 of the disk's contents; null when it was not taken (an older
/// snapshot, or a high-availability checkpoint that never leaves its process).</param>
public sealed record DiskReference(string Name, long? Bytes, string? Sha256)
{
    /// <summary>The longest name kept, in characters.</summary>
    public const int MaxNameLength = 255;

    /// <summary>A reference from an older snapshot's path: its file name alone, nothing to verify against.</summary>
    public static DiskReference Legacy(string path) => new(PrintableName(path), null, null);

    /// <summary>The identity of a VM's disk as the guest sees it, read through its backend (a file or a copy-on-write overlay).</summary>
    public static DiskReference Of(string path, IDiskBackend disk)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        const int SectorsPerRead = 2048;
        byte[] buffer = new byte[SectorsPerRead * IDiskBackend.SectorSize];
        for (long sector = 0; sector < disk.CapacitySectors; sector += SectorsPerRead)
        {
            int count = (int)Math.Min(SectorsPerRead, disk.CapacitySectors - sector);
            Span<byte> span = buffer.AsSpan(0, count * IDiskBackend.SectorSize);
            disk.Read(sector, span);
            hash.AppendData(span);
        }

        return new DiskReference(PrintableName(path), disk.CapacitySectors * IDiskBackend.SectorSize, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    /// <summary>The identity of a disk-image file the host supplies (a regular file the caller has checked), read in full.</summary>
    public static DiskReference OfFile(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 20);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        long total = 0;
        int read;
        while ((read = file.Read(buffer)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            total += read;
        }

        return new DiskReference(PrintableName(path), total, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    /// <summary>
    /// Null when the host's disk-image file <paramref name="path"/> is the disk this reference names (same size and
    /// contents), else one line saying how it differs. A reference without a size or hash (an older snapshot) accepts
    /// any disk: the host chose the file, so nothing but the guest's consistency is at stake.
    /// </summary>
    public string? Mismatch(string path)
    {
        if (Bytes is null && Sha256 is null)
        {
            return null;
        }

        long size = new FileInfo(path).Length;
        if (Bytes is { } bytes && size != bytes)
        {
            return $"disk image '{path}' is not the disk the VM was saved with: it holds {size} bytes, the saved disk '{Name}' held {bytes}";
        }

        if (Sha256 is { } expected && OfFile(path).Sha256 != expected)
        {
            return $"disk image '{path}' is not the disk the VM was saved with: its contents differ (SHA-256), though its size ({size} bytes) is that of the saved disk '{Name}'";
        }

        return null;
    }

    private static string PrintableName(string path)
    {
        string name = Path.GetFileName(path);
        return VmNames.Printable(name.Length > 0 ? name : "disk");
    }
}
