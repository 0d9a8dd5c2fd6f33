namespace HybridVmm.HostOS.Devices;

/// <summary>What a serial input source answered: a byte, nothing yet (interactive sources only), or its end.</summary>
public enum SerialInputStatus
{
    Byte,
    NotYet,
    End,
}

/// <summary>
/// The host's end of a serial line (QEMU's character device behind <c>-serial</c>): bytes for the guest. The UART asks
/// for one byte at a time, on virtual time, from the VM worker (<see cref="Uart16550.ConnectInput"/>).
/// A deterministic source (a file, a pipe) never answers <see cref="SerialInputStatus.NotYet"/>: it waits for its next
/// byte or its end, so where each byte lands in the guest's run depends only on the guest and the input. An
/// interactive source (a terminal) answers at once.
/// </summary>
public interface ISerialInput
{
    SerialInputStatus Read(out byte value);
}
