using HybridVmm.HostOS.Vm;

namespace HybridVmm.Cli.Common;

/// <summary>
/// The process exit statuses of <c>hybridvmm</c> (documented in README.md and docs/exit-codes.md).
/// A guest that exits through the debug-exit port gives its own value (modulo 256, as any Unix status);
/// the simulator's own outcomes use the sysexits.h and timeout(1) conventions.
/// </summary>
public static class ExitStatus
{
    public const int Success = 0;
    /// <summary>EX_USAGE: the command line is wrong.</summary>
    public const int Usage = 64;
    /// <summary>EX_DATAERR: the image is malformed, truncated or not a Multiboot kernel, or does not fit.</summary>
    public const int InvalidImage = 65;
    /// <summary>EX_NOINPUT: an input file does not exist or cannot be read.</summary>
    public const int NoInput = 66;
    /// <summary>EX_UNAVAILABLE: a vm command cannot reach serve's management API (no serve, wrong socket or port), or the hypervisor is not running.</summary>
    public const int Unavailable = 69;
    /// <summary>EX_SOFTWARE: a bug in the simulator itself.</summary>
    public const int InternalError = 70;
    /// <summary>EX_CANTCREAT/IOERR: an output file (the trace) cannot be written.</summary>
    public const int CannotWrite = 73;
    /// <summary>EX_PROTOCOL: the management API refused a vm command's request (unknown VM, illegal state transition, bad input).</summary>
    public const int ApiRefused = 76;
    /// <summary>EX_NOPERM: the management API on TCP refused a vm command without the right token.</summary>
    public const int PermissionDenied = 77;
    /// <summary>EX_CONFIG: the serve configuration is invalid.</summary>
    public const int Configuration = 78;
    /// <summary>The guest reached --max-instructions (as timeout(1) reports a time limit).</summary>
    public const int InstructionLimit = 124;
    /// <summary>The guest faulted (#DE, #UD, #GP, an access outside its memory, ...).</summary>
    public const int GuestFault = 125;
    /// <summary>The guest halted with nothing that could wake it, without writing to the exit port.</summary>
    public const int GuestHalted = 126;
    /// <summary>Interrupted by Ctrl+C or SIGTERM (128 + SIGINT).</summary>
    public const int Interrupted = 130;

    /// <summary>The status of a VM that could not be created: 65 for its image, 66 for a host file it names (a disk image), else 78.</summary>
    public static int OfCreationError(VmCreationErrorKind kind) => kind switch
    {
        VmCreationErrorKind.InvalidImage => InvalidImage,
        VmCreationErrorKind.NoInput => NoInput,
        _ => Configuration,
    };
}
