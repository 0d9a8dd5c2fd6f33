namespace HybridVmm.Hardware.SavedState;

/// <summary>
/// One component's saved state: a tag that names the component instance ("cpu.vp0", "device.com1",
/// "vmbus.channel.1"), the version of its state layout, and the payload its codec wrote. The container
/// (<see cref="SavedStateContainer"/>) stores chunks without knowing what is inside them.
/// </summary>
public sealed record SavedStateChunk(string Tag, int Version, byte[] Payload)
{
    /// <summary>Tags are short ASCII names, so a chunk table entry is bounded and a tag prints safely in a message.</summary>
    public const int MaxTagLength = 64;

    /// <summary>1 to <see cref="MaxTagLength"/> characters of [a-z0-9._-].</summary>
    public static bool IsValidTag(ReadOnlySpan<char> tag)
    {
        if (tag.IsEmpty || tag.Length > MaxTagLength)
        {
            return false;
        }

        foreach (char c in tag)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '_' or '-'))
            {
                return false;
            }
        }

        return true;
    }
}
