namespace HybridVmm.Hardware.SavedState;

/// <summary>
/// A component that has saved state, seen without its state type: what the root uses to walk a VM's devices
/// and channels. Implement <see cref="ISaveRestore{TState}"/> rather than this; its default members do the
/// chunk work through the component's codec. A component without state implements neither.
/// </summary>
public interface IPersistentState
{
    /// <summary>The component's state as one chunk under <paramref name="tag"/>; null when it has nothing to save (a wrapper of a stateless device).</summary>
    SavedStateChunk? SaveChunk(string tag);

    /// <summary>Null when this build reads the chunk's version, else the refusal naming the chunk and version.</summary>
    string? VersionRefusal(SavedStateChunk chunk);

    /// <summary>False when the chunk is not a state the component can take (malformed, or not valid for it).</summary>
    bool RestoreChunk(SavedStateChunk chunk);
}

/// <summary>
/// A component with a typed, versioned state (Firecracker's <c>Persist</c>): it produces a
/// <typeparamref name="TState"/> record and takes one back, and one <see cref="StateCodec{TState}"/> per
/// state type turns that record into a chunk. The component's I/O interface knows nothing of it.
/// </summary>
public interface ISaveRestore<TState> : IPersistentState
{
    StateCodec<TState> StateCodec { get; }

    TState Save();

    /// <summary>Takes the state back; false when it is not valid for this component (it then keeps its own state).</summary>
    bool Restore(TState state);

    SavedStateChunk? IPersistentState.SaveChunk(string tag) => StateCodec.Encode(tag, Save());

    string? IPersistentState.VersionRefusal(SavedStateChunk chunk) => StateCodec.VersionRefusal(chunk.Tag, chunk.Version);

    bool IPersistentState.RestoreChunk(SavedStateChunk chunk) => StateCodec.TryDecode(chunk, out TState? state, out _) && Restore(state);
}
