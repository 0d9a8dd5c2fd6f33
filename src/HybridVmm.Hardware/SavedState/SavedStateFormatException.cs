namespace HybridVmm.Hardware.SavedState;

/// <summary>
/// Saved-state bytes that do not have the layout they claim (a count beyond its limit, a payload that ends
/// early or has bytes left over). Thrown by <see cref="SavedStateReader"/> inside a codec and caught by
/// <see cref="StateCodec{TState}"/> and the container, which turn it into a one-line refusal: it never escapes
/// to the user as a stack trace.
/// </summary>
public sealed class SavedStateFormatException(string message) : Exception(message);
