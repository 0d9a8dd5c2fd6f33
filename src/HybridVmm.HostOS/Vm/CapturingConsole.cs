using System.Text;

namespace HybridVmm.HostOS.Vm;

/// <summary>Keeps every guest's COM1 bytes, and passes them on to another console for display.</summary>
public sealed class CapturingConsole(IGuestConsole? display = null) : IGuestConsole
{
    private readonly Dictionary<VirtualMachine, List<byte>> _bytes = new();

    public void Write(VirtualMachine vm, long virtualTime, byte value)
    {
        lock (_bytes)
        {
            if (!_bytes.TryGetValue(vm, out List<byte>? list))
            {
                _bytes[vm] = list = new List<byte>();
            }

            list.Add(value);
        }

        display?.Write(vm, virtualTime, value);
    }

    public void Flush() => display?.Flush();

    /// <summary>A guest's output so far, one char per byte.</summary>
    public string Text(VirtualMachine vm)
    {
        lock (_bytes)
        {
            return _bytes.TryGetValue(vm, out List<byte>? list) ? Encoding.Latin1.GetString(list.ToArray()) : "";
        }
    }
}
