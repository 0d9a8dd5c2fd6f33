using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// Hands out host physical frames. Only the kernel holds it: a partition gets frames through its
/// second-level translation and never learns their host addresses.
/// </summary>
public sealed class FrameAllocator
{
    private readonly HostPhysicalMemory _memory;
    private readonly Stack<int> _free = new();

    public FrameAllocator(HostPhysicalMemory memory)
    {
        _memory = memory;
        for (int frame = memory.FrameCount - 1; frame >= 0; frame--)
        {
            _free.Push(frame);
        }
    }

    public int FreeFrames => _free.Count;

    public bool TryAllocate(out int frame)
    {
        if (_free.TryPop(out frame))
        {
            // A frame never carries a previous owner's data into a new partition.
            _memory.Frame(frame).Clear();
            return true;
        }

        return false;
    }

    public void Free(int frame) => _free.Push(frame);
}
