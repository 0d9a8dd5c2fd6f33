namespace HybridVmm.HostOS.Vm;

/// <summary>Why a VM could not be created: bad input, not a simulator bug.</summary>
public enum VmCreationErrorKind
{
    InvalidImage,
    InvalidConfiguration,
    OutOfHostMemory,

    /// <summary>A host file the configuration names (a disk image) is missing, a directory or not a regular file.</summary>
    NoInput,
}

public sealed record VmCreationError(VmCreationErrorKind Kind, string Message);
