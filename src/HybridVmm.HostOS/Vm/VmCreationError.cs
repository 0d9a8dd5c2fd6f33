namespace HybridVmm.HostOS.Vm;

/// <summary>Why a VM could not be created: bad input, not a simulator bug.</summary>
public enum VmCreationErrorKind
{
    InvalidImage,
    InvalidConfiguration,
    OutOfHostMemory,
}

public sealed record VmCreationError(VmCreationErrorKind Kind, string Message);
