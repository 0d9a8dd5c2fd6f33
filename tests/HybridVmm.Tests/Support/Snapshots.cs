using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.Tests.Support;

/// <summary>Snapshot files the encapsulation tests start from.</summary>
public static class Snapshots
{
    /// <summary>The hello guest saved at instruction 500, as a snapshot file's bytes.</summary>
    public static byte[] SavedHello()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create("hello", Repository.ReadGuest("hello"));
        machine.System.Root.PauseAtInstruction(vm, 500);
        machine.RunAsync().GetAwaiter().GetResult();
        return SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm));
    }
}
