namespace HybridVmm.HostOS.Storage;

/// <summary>Where a synthetic disk's sectors live on the host. Sector size is 512 bytes.</summary>
public interface IDiskBackend : IDisposable
{
    const int SectorSize = 512;

    long CapacitySectors { get; }

    void Read(long sector, Span<byte> destination);

    void Write(long sector, ReadOnlySpan<byte> source);

    /// <summary>Returns once everything written so far is durable on the host (fsync).</summary>
    void Flush();
}
