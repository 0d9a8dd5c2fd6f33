using System.Security.Cryptography;
using HybridVmm.Guests;
using HybridVmm.Guests.Multiboot;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// Isolation and OS diversity under attack. A C guest ('cpu'), a hand-written assembly guest ('asmhello'), an
/// enlightened guest talking VMBus ('enlcon') and a victim holding a secret in its RAM run side by side with
/// attackers that try to reach other partitions' memory, the host's devices, channels they were not granted
/// and the hypervisor's root-only services. Each attempt runs as its own
/// attacker VM, since a refused access stops the attacker. The report states what each tried and what it
/// got; afterwards the victim's memory and the other guests' output are checked to be untouched.
/// </summary>
public static class AttackScenario
{
    private const uint AttackerMemory = 4u << 20;
    private const uint Secret = 0x5EC12E7;

    /// <summary>
    /// One attack. <see cref="Harmless"/> is the value a surviving attacker must report; <see cref="Ends"/> how an attacker
    /// that ends its own VM must end; with neither, it must be stopped on a fault.
    /// </summary>
    private sealed record Attempt(string Goal, string How, Action<Assembler> Code, string IfSurvived = "", uint? Harmless = null, StopReason? Ends = null);

    private static readonly Attempt[] Attempts =
    {
        new("read another partition's RAM", "load from GPA 0x00400000, just past its own 4 MiB",
            a => { a.mov(eax, __dword_ptr[0x0040_0000]); Report(a); }),
        new("write another partition's RAM", "store to GPA 0x08000000 (where a neighbour's RAM might be)",
            a => { a.mov(__dword_ptr[0x0800_0000], eax); Report(a); }),
        new("write host memory-mapped hardware", "store 0x20 to the local APIC's TPR at 0xFEE00080, read it back",
            a => { a.mov(__dword_ptr[0xFEE0_0080UL], 0x20); a.mov(eax, __dword_ptr[0xFEE0_0080UL]); Report(a); },
            "the APIC page is its own virtual local APIC, which the kernel emulates per vCPU (as Hyper-V does): only its own TPR changed", 0x20),
        new("read the host's PCI configuration", "out 0xCF8 = 0x80000000, in 0xCFC",
            a => { a.mov(dx, 0xCF8); a.mov(eax, 0x8000_0000); a.@out(dx, eax); a.mov(dx, 0xCFC); a.@in(eax, dx); Report(a); },
            "it read its own virtual PCI bus, which its VM worker emulates (as Hyper-V's does): the i440FX host bridge 8086:1237 every guest sees, not the host's", 0x1237_8086),
        new("reset the host through the keyboard controller", "out 0x64 = 0xFE",
            a => { a.mov(al, 0xFE); a.@out(0x64, al); a.mov(eax, 0); Report(a); },
            "the 8042 is the guest's own virtual device: only its own VM reset (a reset stops a VM, as QEMU's -no-reboot does); nothing outside it noticed",
            Ends: StopReason.Reset),
        new("map another partition's RAM via page tables", "PDE: linear 0x80000000 -> GPA 0x00400000 (4 MiB page), CR0.PG",
            a =>
            {
                // Its page tables translate linear to guest-physical only: the second-level table still decides what
                // a guest-physical address reaches (the two-dimensional walk).
                a.mov(eax, 0x10); a.mov(cr4, eax);                                         // CR4.PSE
                a.mov(__dword_ptr[PageDirectory], 0x0000_0083);                            // 0-4 MiB: itself
                a.mov(__dword_ptr[PageDirectory + (0x8000_0000 >> 22) * 4], 0x0040_0083);  // 2 GiB -> GPA 4 MiB
                a.mov(eax, PageDirectory); a.mov(cr3, eax);
                a.mov(eax, cr0); a.or(eax, unchecked((int)0x8000_0000)); a.mov(cr0, eax);
                a.mov(eax, __dword_ptr[0x8000_0000]);
                Report(a);
            }),
        new("execute outside its RAM", "jmp to 0x09000000",
            a => { a.mov(eax, 0x0900_0000); a.jmp(eax); }),
        new("signal a VMBus channel it was not granted", "HvSignalEvent (fast) on connection 0x1000",
            a => { EnableHypercalls(a); Hypercall(a, control: 0x1_005D, ebx: 0, ecx: 0x1000); Report(a); },
            "refused with HV_STATUS_INVALID_CONNECTION_ID (0x12): only the root creates event connections, per open channel", 0x12),
        new("create a partition (a root-only hypercall)", "HvCallCreatePartition (0x0040)",
            a => { EnableHypercalls(a); Hypercall(a, control: 0x0040, ebx: 0, ecx: 0x0030_1000); Report(a); },
            "refused with HV_STATUS_ACCESS_DENIED (0x6): a child partition lacks the CreatePartitions privilege", 0x6),
    };

    private const uint HypercallPage = 0x0030_0000;
    private const uint PageDirectory = 0x0030_0000;

    /// <summary>TLFS: a non-zero guest OS ID, then the hypercall MSR with the page's GPA and the enable bit.</summary>
    private static void EnableHypercalls(Assembler a)
    {
        a.mov(esp, 0x0020_0000); // a stack for the call into the hypercall page
        a.mov(ecx, 0x4000_0000); a.mov(eax, 1); a.xor(edx, edx); a.wrmsr();
        a.mov(ecx, 0x4000_0001); a.mov(eax, HypercallPage | 1); a.xor(edx, edx); a.wrmsr();
    }

    /// <summary>The 32-bit calling convention: EDX:EAX the control word, EBX:ECX the input (or its GPA); the status comes back in EAX.</summary>
    private static void Hypercall(Assembler a, uint control, uint ebx, uint ecx)
    {
        a.mov(eax, control); a.xor(edx, edx); a.mov(AssemblerRegisters.ebx, ebx); a.mov(AssemblerRegisters.ecx, ecx);
        a.xor(edi, edi); a.xor(esi, esi);
        a.mov(AssemblerRegisters.ebp, HypercallPage);
        a.call(AssemblerRegisters.ebp);
        a.and(eax, 0xFFFF);
    }

    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        var trace = new TraceRecorder(null, keepInMemory: true);
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 96L << 20 }, console, trace);
        VirtualMachine victim = Create(system, "victim", FlatMultibootImage.Wrap(Assemble(a =>
        {
            a.mov(edi, 0x0020_0000); a.mov(ecx, 1024); a.mov(eax, Secret); a.cld(); a.rep.stosd();
            a.hlt();
        })), AttackerMemory);
        VirtualMachine cpu = Create(system, "cpu", EmbeddedGuests.Load("cpu")!, 8u << 20);
        VirtualMachine asm = Create(system, "asmhello", EmbeddedGuests.Load("asmhello")!, 4u << 20);
        VirtualMachine enlightened = system.Root.CreateVm(new VmConfiguration
        {
            Name = "enlcon", Image = EmbeddedGuests.Load("enlcon")!, MemoryBytes = 8u << 20, CommandLine = "synth", SyntheticDevices = new[] { "synthcon" },
        }, out VmCreationError? enlError) ?? throw new InvalidOperationException(enlError!.Message);
        var attackers = new List<VirtualMachine>();
        for (int i = 0; i < Attempts.Length; i++)
        {
            attackers.Add(Create(system, $"attack{i + 1}", FlatMultibootImage.Wrap(Assemble(Attempts[i].Code)), AttackerMemory));
        }

        foreach (VirtualMachine vm in system.Root.VirtualMachines)
        {
            system.Root.Start(vm);
        }

        await system.RunUntilIdleAsync();

        output.WriteLine($"{"attacker",-9} {"goal",-47} outcome");
        int unexpected = 0;
        for (int i = 0; i < Attempts.Length; i++)
        {
            PartitionExit exit = await attackers[i].Exited;
            bool asExpected = Attempts[i].Harmless is { } value
                ? exit.Reason == StopReason.GuestExit && exit.ExitValue == value
                : exit.Reason == (Attempts[i].Ends ?? StopReason.GuestFault);
            unexpected += asExpected ? 0 : 1;
            string outcome = exit.Reason switch
            {
                StopReason.GuestFault => "stopped: " + exit.Diagnostic!.Split('\n')[0].Replace("guest fault: ", ""),
                StopReason.GuestExit => $"harmless (EAX=0x{exit.ExitValue:x8}): {Attempts[i].IfSurvived}",
                StopReason.Reset => $"harmless (reset): {Attempts[i].IfSurvived}",
                _ => exit.Reason.ToString(),
            } + (asExpected ? "" : "  <-- UNEXPECTED");
            output.WriteLine($"{attackers[i].Name,-9} {Attempts[i].Goal,-47} {outcome}");
            output.WriteLine($"{"",-9} {"  how: " + Attempts[i].How}");
        }

        byte[] ram = new byte[0x1000];
        system.Root.ReadMemoryOfStoppedVm(victim, 0x0020_0000, ram);
        bool secretIntact = Enumerable.Range(0, 1024).All(k => BitConverter.ToUInt32(ram, k * 4) == Secret);
        bool cpuOk = (await cpu.Exited).Reason == StopReason.GuestExit && console.Text(cpu).Contains("cpu: done");
        bool asmOk = (await asm.Exited).Reason == StopReason.GuestExit && console.Text(asm).Contains("says bye");
        output.WriteLine();
        output.WriteLine($"victim's secret page intact: {(secretIntact ? "yes" : "NO")} (sha256 {Convert.ToHexString(SHA256.HashData(ram))[..16].ToLowerInvariant()}...)");
        bool enlOk = (await enlightened.Exited).Reason == StopReason.GuestExit && console.Text(enlightened).Contains("100 lines");
        output.WriteLine($"C guest 'cpu' completed with its digests: {(cpuOk ? "yes" : "NO")}; assembly guest 'asmhello' completed: {(asmOk ? "yes" : "NO")}; " +
            $"enlightened guest 'enlcon' completed over its own VMBus channel: {(enlOk ? "yes" : "NO")}");
        output.WriteLine($"unclaimed port accesses traced: {trace.Lines!.Count(l => l.Contains("unclaimed"))}; faults traced: {trace.Lines!.Count(l => l.Contains(" Fault "))}");
        return unexpected == 0 && secretIntact && cpuOk && asmOk && enlOk ? 0 : 1;
    }

    /// <summary>An attacker that survives reports what EAX holds through the debug-exit port.</summary>
    private static void Report(Assembler a) => a.@out(0xF4, eax);

    private static byte[] Assemble(Action<Assembler> program)
    {
        var asm = new Assembler(32);
        program(asm);
        using var code = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(code), FlatMultibootImage.Entry);
        return code.ToArray();
    }

    private static VirtualMachine Create(HybridSystem system, string name, byte[] image, uint memory) =>
        system.Root.CreateVm(new VmConfiguration { Name = name, Image = image, MemoryBytes = memory }, out VmCreationError? error)
            ?? throw new InvalidOperationException($"{name}: {error!.Message}");
}
