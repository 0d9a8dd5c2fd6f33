using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// Encapsulation: the CPU-heavy guest is saved to a file at several points, each file restored on a fresh
/// hypervisor, and the output before the save plus the output after the restore is compared with one
/// uninterrupted run.
/// </summary>
public static class EncapsulationScenario
{
    private static readonly long[] SavePoints = { 1_000_000, 8_000_000, 16_000_000, 23_000_000 };

    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        byte[] image = EmbeddedGuests.Load("cpu")!;
        (string whole, _) = await RunAsync(image, saveAt: 0, snapshot: null);
        output.WriteLine($"uninterrupted run: {whole.Split('\n').Length - 1} lines of output");
        output.WriteLine($"{"saved at",12} {"file bytes",11} {"pages",6} {"lines before",13} {"lines after",12}  identical");
        int failures = 0;
        string directory = Path.Combine(Path.GetTempPath(), $"hybridvmm-encapsulation-{Environment.ProcessId}");
        Directory.CreateDirectory(directory);
        try
        {
            foreach (long at in SavePoints)
            {
                string file = Path.Combine(directory, $"cpu-{at}.snap");
                (string before, _) = await RunAsync(image, at, file);
                VmSnapshot snapshot = SnapshotFile.TryRead(file, out string error) ?? throw new InvalidOperationException(error);
                using SavedMemory memory = snapshot.Memory; // the open file, which the restore reads the pages from
                (string after, _) = await RunAsync(image, 0, null, snapshot);
                bool same = before + after == whole;
                failures += same ? 0 : 1;
                output.WriteLine($"{at,12} {new FileInfo(file).Length,11} {memory.Count,6} {Lines(before),13} {Lines(after),12}  {(same ? "yes" : "NO")}");
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }

        output.WriteLine(failures == 0 ? "Every restored run continued exactly where its snapshot left off." : $"{failures} restored run(s) diverged.");
        return failures == 0 ? 0 : 1;
    }

    private static int Lines(string text) => text.Count(c => c == '\n');

    private static async Task<(string Output, VirtualMachine Vm)> RunAsync(byte[] image, long saveAt, string? snapshot, VmSnapshot? restore = null)
    {
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 40L << 20 }, console, new TraceRecorder(null));
        VirtualMachine vm = (restore is null
            ? system.Root.CreateVm(new VmConfiguration { Name = "cpu", Image = image, MemoryBytes = 32u << 20 }, out VmCreationError? error)
            : system.Root.RestoreVm(restore, out error)) ?? throw new InvalidOperationException(error!.Message);
        if (saveAt > 0)
        {
            system.Root.PauseAtInstruction(vm, saveAt);
        }

        system.Root.Start(vm);
        await system.RunUntilIdleAsync();
        if (snapshot is not null)
        {
            SnapshotFile.Write(snapshot, system.Root.CaptureSnapshot(vm));
        }

        return (console.Text(vm), vm);
    }
}
