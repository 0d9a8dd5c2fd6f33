using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hypervisor.GuestMemory;

/// <summary>
/// Hands out host physical frames and counts their references. Only the kernel holds it: a partition gets
/// frames through its second-level translation and never learns their host addresses. A frame shared
/// copy-on-write by a template and its clones has one reference per address space that maps it.
/// <para>
/// Every free frame reads as zeros: host memory starts so, and a frame that loses its last reference is discarded
/// (<see cref="HostPhysicalMemory.Discard"/>), which also gives its page back to the host. So a frame never carries a
/// previous owner's data into a new partition, and handing one out touches nothing: host memory is committed only
/// where a guest (or the host on its behalf) writes. Frames never handed out are not on the free list at all; the
/// next one is <see cref="_next"/>, so the order is the same as a list that started full.
/// </para>
/// </summary>
internal sealed class FrameAllocator
{
    private readonly HostPhysicalMemory _memory;
    private readonly Stack<int> _free = new();
    private readonly int[] _references;
    private int _next;

    public FrameAllocator(HostPhysicalMemory memory)
    {
        _memory = memory;
        _references = new int[memory.FrameCount];
    }

    public int FreeFrames => _free.Count + (_memory.FrameCount - _next);

    public int TotalFrames => _memory.FrameCount;

    public bool TryAllocate(out int frame)
    {
        if (!_free.TryPop(out frame))
        {
            if (_next == _memory.FrameCount)
            {
                return false;
            }

            frame = _next++;
        }

        _references[frame] = 1;
        return true;
    }

    public int References(int frame) => _references[frame];

    /// <summary>One more address space maps this frame (a copy-on-write share).</summary>
    public void Share(int frame) => _references[frame]++;

    /// <summary>Drops one reference; the frame is discarded and returns to the free list with the last one.</summary>
    public void Free(int frame) => Free([frame]);

    /// <summary>
    /// Drops one reference to each frame. Those that lose their last are discarded a run of consecutive frames at a
    /// time (one system call for a whole guest's RAM, which was handed out in order), then return to the free list.
    /// </summary>
    public void Free(ReadOnlySpan<int> frames)
    {
        int runStart = 0, runLength = 0;
        foreach (int frame in frames)
        {
            if (--_references[frame] != 0)
            {
                continue;
            }

            if (runLength > 0 && frame == runStart + runLength)
            {
                runLength++;
            }
            else
            {
                _memory.Discard(runStart, runLength);
                (runStart, runLength) = (frame, 1);
            }

            // Pushed before its run is discarded: nothing allocates until this call returns.
            _free.Push(frame);
        }

        _memory.Discard(runStart, runLength);
    }
}
