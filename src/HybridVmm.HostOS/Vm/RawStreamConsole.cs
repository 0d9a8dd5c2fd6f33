namespace HybridVmm.HostOS.Vm;

/// <summary>Passes one guest's COM1 bytes through unchanged (for <c>hybridvmm run</c>: byte for byte like QEMU's -serial stdio).</summary>
public sealed class RawStreamConsole : IGuestConsole
{
    private readonly Stream _output;

    public RawStreamConsole(Stream output) => _output = output;

    private readonly object _gate = new();

    public void Write(VirtualMachine vm, long virtualTime, byte value)
    {
        lock (_gate)
        {
            _output.WriteByte(value);
        }
    }

    public void Flush()
    {
        lock (_gate)
        {
            _output.Flush();
        }
    }
}
