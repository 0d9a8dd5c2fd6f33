using System.Text;

namespace HybridVmm.HostOS.Vm;

/// <summary>
/// Shows several guests' output on one terminal, each line prefixed with the guest's name. Lines completed
/// during a scheduler round are written at the round barrier in (virtual time, partition) order, so the
/// interleaving is the same on every run.
/// </summary>
public sealed class PrefixedLineConsole : IGuestConsole
{
    private readonly TextWriter _output;
    private readonly object _gate = new();
    private readonly Dictionary<VirtualMachine, List<byte>> _partial = new();
    private readonly List<(long Time, int Partition, long Sequence, string Text)> _ready = new();
    private long _sequence;

    public PrefixedLineConsole(TextWriter output) => _output = output;

    public void Write(VirtualMachine vm, long virtualTime, byte value)
    {
        lock (_gate)
        {
            if (!_partial.TryGetValue(vm, out List<byte>? line))
            {
                _partial[vm] = line = new List<byte>();
            }

            if (value == (byte)'\n')
            {
                Emit(vm, virtualTime, line);
            }
            else if (value != (byte)'\r')
            {
                line.Add(value);
            }
        }
    }

    public void Flush()
    {
        lock (_gate)
        {
            _ready.Sort();
            foreach ((_, _, _, string text) in _ready)
            {
                _output.WriteLine(text);
            }

            _ready.Clear();
            _output.Flush();
        }
    }

    /// <summary>Writes any unterminated lines (at the end of a run).</summary>
    public void FlushPartialLines()
    {
        lock (_gate)
        {
            foreach ((VirtualMachine vm, List<byte> line) in _partial)
            {
                if (line.Count > 0)
                {
                    Emit(vm, long.MaxValue, line);
                }
            }
        }

        Flush();
    }

    private void Emit(VirtualMachine vm, long time, List<byte> line)
    {
        string text = Encoding.UTF8.GetString(line.ToArray());
        _ready.Add((time, vm.Partition.Id, _sequence++, $"{vm.Name,-10}| {text}"));
        line.Clear();
    }
}
