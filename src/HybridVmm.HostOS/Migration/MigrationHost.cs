using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS.Migration;

/// <summary>
/// How a live migration reaches the hypervisor it moves a VM out of or into. Every step that reads or changes the
/// VM or the kernel (dirty tracking, page reads, the final capture, the restore) runs through
/// <see cref="AtBarrierAsync{T}"/>, and the guest runs between pre-copy rounds through <see cref="RunForAsync"/>.
/// Two hosts implement it: <see cref="Driven"/>, for a command that drives the scheduler itself (<c>run
/// --migrate-to</c>, <c>receive</c>), where nothing else runs and a step runs at once; and serve's, whose scheduler
/// runs on its own thread and takes each step at a round barrier, as the management API does, so the other VMs run
/// on while one migrates.
/// </summary>
public abstract class MigrationHost(HybridSystem system)
{
    public HybridSystem System => system;

    /// <summary>Runs <paramref name="action"/> where no vCPU executes and every intercept is answered.</summary>
    public abstract Task<T> AtBarrierAsync<T>(Func<T> action, CancellationToken cancellationToken);

    /// <summary>Lets the VM run <paramref name="instructions"/> more instructions, then returns with it paused there, or stopped if it ended first.</summary>
    public abstract Task RunForAsync(VirtualMachine vm, long instructions, CancellationToken cancellationToken);

    /// <summary>Source, at the barrier of the final capture: what the host adds to the VM's final state (serve: the console's backlog).</summary>
    public virtual VmSnapshot Finishing(VirtualMachine vm, VmSnapshot final) => final;

    /// <summary>Source, at the barrier that stops the VM once the target has it: what the host does with its stopped copy (serve deletes it).</summary>
    public virtual void Departed(VirtualMachine vm)
    {
    }

    /// <summary>Target, at a barrier, before any page is taken: why a VM of this name cannot come here, or null.</summary>
    public virtual string? Admit(string name) => null;

    /// <summary>
    /// Target, before the restore and outside any barrier: this host's file behind the arriving VM's synthblk disk,
    /// which <paramref name="final"/> refers to by identity (<see cref="VmSnapshot.Disk"/>), or null for none.
    /// </summary>
    public virtual string? DiskFor(VmSnapshot final) => null;

    /// <summary>Target, at the barrier that restored the VM (created, not started) from <paramref name="final"/>.</summary>
    public virtual void Arrived(VirtualMachine vm, VmSnapshot final)
    {
    }

    /// <summary>Target, at the barrier that deletes a restored VM again because the source did not commit the hand-over.</summary>
    public virtual void Withdrawn(VirtualMachine vm)
    {
    }

    /// <summary>The host of a command that drives the scheduler itself: a step runs at once, and a pre-copy window runs the scheduler until the VM pauses.</summary>
    public static MigrationHost Driven(HybridSystem system) => new DrivenHost(system);

    private sealed class DrivenHost(HybridSystem system) : MigrationHost(system)
    {
        public override Task<T> AtBarrierAsync<T>(Func<T> action, CancellationToken cancellationToken) => Task.FromResult(action());

        public override async Task RunForAsync(VirtualMachine vm, long instructions, CancellationToken cancellationToken)
        {
            System.Root.PauseAtInstruction(vm, System.Root.BootInstructionsRetired(vm) + instructions);
            System.Root.Start(vm);
            await System.RunUntilIdleAsync(cancellationToken, () => vm.State != PartitionState.Running);
        }
    }
}
