using HybridVmm.Hardware.Cpu;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>The vCPU's interrupt state (pending vectors, the STI shadow) is part of a snapshot (SDM Vol. 3A, 6.8).</summary>
public class InterruptStateSnapshotTests
{
    private const byte Vector = 0x40;

    /// <summary>The instructions up to and including STI; a pause after this many sits in STI's shadow.</summary>
    private const int ThroughSti = 12;

    /// <summary>
    /// Sets up a stack, installs an interrupt gate for vector 0x40, loads the IDT, clears EBX, STI, sets EBX = 0x34, then spins.
    /// The handler exits with EBX: 0x34 only if the instruction after STI ran before the interrupt was taken.
    /// </summary>
    private static byte[] Guest
    {
        get
        {
            // Assembled twice: the first pass tells where the handler lands, the second puts that address in the gate.
            ulong handlerAddress = Assemble(0, out _);
            Assemble(handlerAddress, out byte[] code);
            return FlatKernel.Wrap(code);
        }
    }

    private static ulong Assemble(ulong handlerAddress, out byte[] code)
    {
        var a = new Assembler(32);
        Label handler = a.CreateLabel(), spin = a.CreateLabel();
        a.mov(esp, 0x90000);                                     // 1  a stack for the interrupt frame
        a.mov(eax, (uint)handlerAddress);                        // 2
        a.mov(__word_ptr[0x20000 + Vector * 8], ax);             // 3  offset 15:0
        a.mov(__word_ptr[0x20000 + Vector * 8 + 2], cs);         // 4  selector
        a.and(eax, unchecked((int)0xFFFF0000));                  // 5
        a.or(eax, 0x8E00);                                       // 6  present, 32-bit interrupt gate
        a.mov(__dword_ptr[0x20000 + Vector * 8 + 4], eax);       // 7  offset 31:16
        a.mov(__dword_ptr[0x8000], 0x07FF0000);                  // 8  limit 0x7FF at 0x8002
        a.mov(__dword_ptr[0x8004], 0x20000);                     // 9  base 0x20000
        a.lidt(__[0x8002]);                                      // 10
        a.xor(ebx, ebx);                                         // 11
        a.sti();                                                 // 12
        a.mov(ebx, 0x34);                                        // 13: in STI's shadow
        a.Label(ref spin);
        a.jmp(spin);
        a.Label(ref handler);
        a.mov(eax, ebx);
        a.@out(0xF4, eax);
        using var stream = new MemoryStream();
        AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), FlatKernel.Entry, BlockEncoderOptions.ReturnNewInstructionOffsets);
        code = stream.ToArray();
        return result.GetLabelRIP(handler);
    }

    [TestCase(ThroughSti, 0x34u, TestName = "{m}(in the STI shadow)")]
    [TestCase(ThroughSti + 50, 0x34u, TestName = "{m}(while spinning)")]
    public void AnInterruptPendingAtTheSaveIsDeliveredAfterTheRestore(long saveAt, uint exitValue)
    {
        byte[] file;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create(new VmConfiguration { Name = "irq", Image = Guest, MemoryBytes = 2u << 20, InstructionLimit = 100_000 });
            machine.System.Root.PauseAtInstruction(vm, saveAt);
            machine.RunAsync().GetAwaiter().GetResult();
            Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));

            // As the SynIC does when it asserts a SINT: the vector is requested, not yet delivered.
            machine.System.Root.AssertInterrupt(vm, Vector);
            VmSnapshot snapshot = machine.System.Root.CaptureSnapshot(vm);
            CpuState cpu = snapshot.Cpu;
            Assert.That(cpu.InterruptRequest1, Is.EqualTo(1ul << (Vector - 64)), "vector 0x40 is pending in the saved state");
            Assert.That(cpu.StiShadow, Is.EqualTo(saveAt == ThroughSti));
            file = SnapshotFormat.Serialize(snapshot);
        }

        VmSnapshot restored = SnapshotFormat.TryDeserialize(file, out string error)!;
        Assert.That(restored, Is.Not.Null, error);
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(restored, out VmCreationError? creationError)!;
            Assert.That(vm, Is.Not.Null, creationError?.Message);
            machine.RunAsync().GetAwaiter().GetResult();
            PartitionExit exit = vm.Exited.Result;
            Assert.That((exit.Reason, exit.ExitValue), Is.EqualTo((StopReason.GuestExit, exitValue)), exit.Diagnostic);
            // The handler's MOV and the OUT that ends the guest retire: one instruction more in the shadow case.
            Assert.That(vm.Statistics.InstructionsRetired, Is.EqualTo(saveAt + (saveAt == ThroughSti ? 3 : 2)),
                "the interrupt is taken at the first boundary it may be: after the shadowed instruction, or at once");
        }
    }
}
