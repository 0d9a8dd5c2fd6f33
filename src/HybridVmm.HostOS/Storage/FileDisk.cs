namespace HybridVmm.HostOS.Storage;

/// <summary>A disk that is a raw image file, read and written in place.</summary>
public sealed class FileDisk : IDiskBackend
{
    private readonly FileStream _file;

    public FileDisk(string path)
    {
        _file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, 4096, FileOptions.None);
        CapacitySectors = _file.Length / IDiskBackend.SectorSize;
    }

    public long CapacitySectors { get; }

    public void Read(long sector, Span<byte> destination)
    {
        _file.Position = sector * IDiskBackend.SectorSize;
        _file.ReadExactly(destination);
    }

    public void Write(long sector, ReadOnlySpan<byte> source)
    {
        _file.Position = sector * IDiskBackend.SectorSize;
        _file.Write(source);
    }

    public void Flush() => _file.Flush(flushToDisk: true);

    public void Dispose() => _file.Dispose();
}
