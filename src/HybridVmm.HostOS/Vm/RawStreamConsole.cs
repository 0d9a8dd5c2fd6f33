namespace HybridVmm.HostOS.Vm;

/// <summary>Passes one guest's COM1 bytes through unchanged (for <c>hybridvmm run</c>: byte for byte like QEMU's -serial stdio).</summary>
public sealed class RawStreamConsole : IGuestConsole
{
    private readonly Stream _output;

    public RawStreamConsole(Stream output) => _output = output;

    private readonly object _gate = new();

    /// <summary>
    /// The first host I/O error on the output (stdout to /dev/full, a closed stdout), or null. From then on the
    /// bytes are dropped: the guest runs on, and the command reports the failure when it ends.
    /// </summary>
    public string? Failure => _failure;

    private string? _failure;

    public void Write(VirtualMachine vm, long virtualTime, byte value)
    {
        lock (_gate)
        {
            Guard(() => _output.WriteByte(value));
        }
    }

    public void Flush()
    {
        lock (_gate)
        {
            Guard(_output.Flush);
        }
    }

    private void Guard(Action write) => HostWriteFailure.Guard(ref _failure, write);
}
