namespace HybridVmm.Hypervisor.Hv1;

/// <summary>Hypercall result codes, bits 15:0 of the hypercall result value (TLFS 3.10, "Hypercall Status Codes").</summary>
public enum HvStatus : ushort
{
    Success = 0x0000,
    InvalidHypercallCode = 0x0002,
    InvalidHypercallInput = 0x0003,
    InvalidAlignment = 0x0004,
    InvalidParameter = 0x0005,
    AccessDenied = 0x0006,
    InvalidPartitionState = 0x0007,
    OperationDenied = 0x0008,
    InsufficientMemory = 0x000B,
    InvalidPortId = 0x0011,
    InvalidConnectionId = 0x0012,
    InsufficientBuffers = 0x0013,
    InvalidSynicState = 0x0018,
    ObjectInUse = 0x0019,
}

public static class HvStatusNames
{
    /// <summary>The TLFS spelling, e.g. HV_STATUS_INVALID_ALIGNMENT, for traces.</summary>
    public static string Name(HvStatus status) => status switch
    {
        HvStatus.Success => "HV_STATUS_SUCCESS",
        HvStatus.InvalidHypercallCode => "HV_STATUS_INVALID_HYPERCALL_CODE",
        HvStatus.InvalidHypercallInput => "HV_STATUS_INVALID_HYPERCALL_INPUT",
        HvStatus.InvalidAlignment => "HV_STATUS_INVALID_ALIGNMENT",
        HvStatus.InvalidParameter => "HV_STATUS_INVALID_PARAMETER",
        HvStatus.AccessDenied => "HV_STATUS_ACCESS_DENIED",
        HvStatus.InvalidPartitionState => "HV_STATUS_INVALID_PARTITION_STATE",
        HvStatus.OperationDenied => "HV_STATUS_OPERATION_DENIED",
        HvStatus.InsufficientMemory => "HV_STATUS_INSUFFICIENT_MEMORY",
        HvStatus.InvalidPortId => "HV_STATUS_INVALID_PORT_ID",
        HvStatus.InvalidConnectionId => "HV_STATUS_INVALID_CONNECTION_ID",
        HvStatus.InsufficientBuffers => "HV_STATUS_INSUFFICIENT_BUFFERS",
        HvStatus.InvalidSynicState => "HV_STATUS_INVALID_SYNIC_STATE",
        HvStatus.ObjectInUse => "HV_STATUS_OBJECT_IN_USE",
        _ => $"HV_STATUS_0x{(ushort)status:x4}",
    };
}
