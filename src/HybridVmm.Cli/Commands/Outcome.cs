using HybridVmm.Cli.Common;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.Cli.Commands;

/// <summary>Turns how a guest ended into a message on stderr and the documented exit status.</summary>
internal static class Outcome
{
    public static int Report(VirtualMachine vm, PartitionExit exit, TextWriter error)
    {
        switch (exit.Reason)
        {
            case StopReason.GuestExit:
                return (int)(exit.ExitValue & 0xFF);
            case StopReason.GuestFault:
                error.WriteLine($"hybridvmm: guest '{vm.Name}' stopped on a fault; other guests are unaffected.");
                error.WriteLine(exit.Diagnostic);
                return ExitStatus.GuestFault;
            case StopReason.WorkerFailure:
                error.WriteLine($"hybridvmm: guest '{vm.Name}' stopped: {exit.Diagnostic}");
                return ExitStatus.GuestFault;
            case StopReason.Halted:
                error.WriteLine($"hybridvmm: guest '{vm.Name}' halted with interrupts unable to wake it, without writing to the exit port 0xf4.");
                return ExitStatus.GuestHalted;
            case StopReason.PoweredOff:
                error.WriteLine($"hybridvmm: guest '{vm.Name}' powered off.");
                return 0;
            case StopReason.Reset when exit.Diagnostic is not null:
                // A triple fault resets a PC; as under QEMU's -no-reboot the reset ends the run, but it was not asked for.
                error.WriteLine($"hybridvmm: guest '{vm.Name}' triple-faulted, which resets a PC; the reset ends the run (run --reboot boots it again).");
                error.WriteLine(exit.Diagnostic);
                return ExitStatus.GuestFault;
            case StopReason.Reset:
                // As QEMU with -no-reboot: a guest that asks for a reset ends the run (run --reboot boots it again).
                error.WriteLine($"hybridvmm: guest '{vm.Name}' asked for a reset, which ends the run (run --reboot boots it again).");
                return 0;
            case StopReason.InstructionLimit:
                error.WriteLine($"hybridvmm: guest '{vm.Name}' reached the instruction limit ({vm.Configuration.InstructionLimit}).");
                return ExitStatus.InstructionLimit;
            default:
                error.WriteLine($"hybridvmm: guest '{vm.Name}' was stopped.");
                return ExitStatus.Interrupted;
        }
    }

    public static int CreationFailed(VmCreationError error, TextWriter stderr)
    {
        stderr.WriteLine($"hybridvmm: error: {error.Message}");
        return ExitStatus.OfCreationError(error.Kind);
    }

}
