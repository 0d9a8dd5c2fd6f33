using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hypervisor.GuestMemory;

/// <summary>
/// Hands out host physical frames and counts their references. Only the kernel holds it: a partition gets
/// frames through its second-level translation and never learns their host addresses. A frame shared
/// copy-on-write by a template and its clones has one reference per address space that maps it.
/// </summary>
internal sealed class FrameAllocator
{
    private readonly HostPhysicalMemory _memory;
    private readonly Stack<int> _free = new();
    private readonly int[] _references;

    public FrameAllocator(HostPhysicalMemory memory)
    {
        _memory = memory;
        _references = new int[memory.FrameCount];
        for (int frame = memory.FrameCount - 1; frame >= 0; frame--)
        {
            _free.Push(frame);
        }
    }

    public int FreeFrames => _free.Count;

    public int TotalFrames => _memory.FrameCount;

    public bool TryAllocate(out int frame)
    {
        if (_free.TryPop(out frame))
        {
            // A frame never carries a previous owner's data into a new partition.
            _memory.Frame(frame).Clear();
            _references[frame] = 1;
            return true;
        }

        return false;
    }

    public int References(int frame) => _references[frame];

    /// <summary>One more address space maps this frame (a copy-on-write share).</summary>
    public void Share(int frame) => _references[frame]++;

    /// <summary>Drops one reference; the frame returns to the free list with the last one.</summary>
    public void Free(int frame)
    {
        if (--_references[frame] == 0)
        {
            _free.Push(frame);
        }
    }
}
