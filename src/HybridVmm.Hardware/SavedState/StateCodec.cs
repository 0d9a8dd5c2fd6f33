using System.Diagnostics.CodeAnalysis;

namespace HybridVmm.Hardware.SavedState;

/// <summary>
/// The one codec of one state type, in the spirit of Firecracker's <c>Persist</c>: it writes the state as a
/// chunk of its current <see cref="Version"/>, and reads back the versions it knows. A new field means a new
/// version here (and, if old files should still load, a read path for the old one); nothing else changes.
/// </summary>
/// <remarks>
/// The codec reads from a <see cref="SavedStateReader"/> bounded by the chunk's length, so it may take its
/// payload straight from a file or a socket; every count it reads is bounded before it allocates.
/// </remarks>
public abstract class StateCodec<TState>
{
    /// <summary>What the state is, for messages: "com1 (16550 UART)", "CPU".</summary>
    public abstract string StateName { get; }

    /// <summary>The version this build writes.</summary>
    public abstract int Version { get; }

    /// <summary>The versions this build reads; by default only the one it writes.</summary>
    public virtual bool CanRead(int version) => version == Version;

    public abstract void Write(SavedStateWriter writer, TState state);

    /// <summary>Reads a state of <paramref name="version"/> (one <see cref="CanRead"/> accepted); throws <see cref="SavedStateFormatException"/> on a defect.</summary>
    public abstract TState Read(SavedStateReader reader, int version);

    public SavedStateChunk Encode(string tag, TState state)
    {
        using var payload = new MemoryStream();
        Write(new SavedStateWriter(payload), state);
        return new SavedStateChunk(tag, Version, payload.ToArray());
    }

    /// <summary>Null when this build reads <paramref name="version"/>, else the refusal naming the chunk and its version.</summary>
    public string? VersionRefusal(string tag, int version) => CanRead(version)
        ? null
        : $"chunk '{tag}' holds {StateName} state version {version}, which this build does not read (it writes version {Version})";

    public bool TryDecode(SavedStateChunk chunk, [MaybeNullWhen(false)] out TState state, out string error) =>
        TryDecode(chunk.Tag, chunk.Version, new SavedStateReader(chunk.Payload), out state, out error);

    /// <summary>Decodes a chunk whose payload <paramref name="reader"/> holds; the whole payload must be consumed.</summary>
    public bool TryDecode(string tag, int version, SavedStateReader reader, [MaybeNullWhen(false)] out TState state, out string error)
    {
        state = default;
        if (VersionRefusal(tag, version) is { } refused)
        {
            error = refused;
            return false;
        }

        try
        {
            state = Read(reader, version);
            reader.EnsureEnd();
        }
        catch (SavedStateFormatException e)
        {
            state = default;
            error = $"chunk '{tag}' ({StateName} state version {version}) is malformed: {e.Message}";
            return false;
        }

        error = "";
        return true;
    }
}
