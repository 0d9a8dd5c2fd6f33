using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Devices;

/// <summary>The chipset-device contract end to end: claims checked when the VM is built, timers on virtual time, interrupt lines, deferred accesses.</summary>
public class ChipsetDeviceTests
{
    private static VmConfiguration Config(string name, byte[] image, params string[] devices) =>
        new() { Name = name, Image = image, MemoryBytes = 4u << 20, Devices = devices, InstructionLimit = 1_000_000 };

    [Test]
    public void OverlappingClaimsAreRefusedWhenTheMachineIsBuilt()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(Config("claims", FlatKernel.Build(a => a.hlt()), "com1", "debug-exit"));
        Assert.Multiple(() =>
        {
            Assert.That(() => vm.Worker.Attach(new TestDevice("lcr-thief", ports: new PortRange(0x3FB, 0x3FB))),
                Throws.InvalidOperationException.With.Message.EqualTo("lcr-thief ports 0x3fb-0x3fb overlap com1"));
            Assert.That(() => vm.Worker.Attach(new TestDevice("in-ram", mmio: new MmioRange(0x003F_F000, 0x0040_0FFF))),
                Throws.InvalidOperationException.With.Message.EqualTo("in-ram gpa 0x003ff000-0x00400fff overlaps the guest's RAM"));
            vm.Worker.Attach(new TestDevice("window", mmio: new MmioRange(0xE000_0000, 0xE000_0FFF)));
            Assert.That(() => vm.Worker.Attach(new TestDevice("shadow", mmio: new MmioRange(0xE000_0800, 0xE000_17FF))),
                Throws.InvalidOperationException.With.Message.EqualTo("shadow gpa 0xe0000800-0xe00017ff overlaps window gpa 0xe0000000-0xe0000fff"));
            Assert.That(() => vm.Worker.Attach(new TestDevice("com1")), Throws.InvalidOperationException.With.Message.Contains("already attached"));
            Assert.That(vm.Worker.Devices.Select(d => d.Name), Is.EqualTo(new[] { "com1", "debug-exit", "window" }), "a refused device is not attached");
        });
    }

    private const byte TimerVector = 0x08; // IRQ 0 at the vector the firmware left the master PIC at
    private const long Deadline = 50_000;
    private const int SetupInstructions = 11;

    /// <summary>Installs a gate for IRQ 0's vector (0x08 through the PIC), counts in ECX until the interrupt comes, and exits with the count.</summary>
    private static byte[] CountUntilInterrupted()
    {
        ulong handler = Assemble(0, out _);
        Assemble(handler, out byte[] code);
        return FlatKernel.Wrap(code);

        static ulong Assemble(ulong handlerAddress, out byte[] code)
        {
            var a = new Assembler(32);
            Label spin = a.CreateLabel(), handlerLabel = a.CreateLabel();
            a.mov(esp, 0x90000);                                      // 1
            a.mov(eax, (uint)handlerAddress);                         // 2
            a.mov(__word_ptr[0x20000 + TimerVector * 8], ax);         // 3
            a.mov(__word_ptr[0x20000 + TimerVector * 8 + 2], cs);     // 4
            a.and(eax, unchecked((int)0xFFFF0000));                   // 5
            a.or(eax, 0x8E00);                                        // 6
            a.mov(__dword_ptr[0x20000 + TimerVector * 8 + 4], eax);   // 7
            a.mov(__dword_ptr[0x8000], 0x07FF0000);                   // 8
            a.mov(__dword_ptr[0x8004], 0x20000);                      // 9
            a.lidt(__[0x8002]);                                       // 10
            a.xor(ecx, ecx);                                          // 11
            a.sti();                                                  // the loop: sti; inc ecx; jmp
            a.Label(ref spin);
            a.inc(ecx);
            a.jmp(spin);
            a.Label(ref handlerLabel);
            a.mov(eax, ecx);
            a.@out(0xF4, eax);
            using var stream = new MemoryStream();
            AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), FlatKernel.Entry, BlockEncoderOptions.ReturnNewInstructionOffsets);
            code = stream.ToArray();
            return FlatKernel.Entry + result.Result[0].NewInstructionOffsets[^2];
        }
    }

    private static async Task<(PartitionExit Exit, string[] Trace)> RunTimerGuest()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(Config("ticker", CountUntilInterrupted(), "debug-exit", "pic"));
        var device = new TimerDevice(vm.Worker.Services, Deadline);
        vm.Worker.Attach(device);
        await machine.RunAsync();
        return (await vm.Exited, machine.TraceLines.ToArray());
    }

    [Test]
    public async Task ATimerDeviceRaisesItsLineAtTheSameInstructionOnEveryRun()
    {
        (PartitionExit first, string[] trace) = await RunTimerGuest();
        (PartitionExit second, string[] again) = await RunTimerGuest();
        // The timer fires when the vCPU has retired exactly Deadline instructions (no intercept before it): the
        // interrupt is taken at that boundary (SDM Vol. 3A, 6.6), after STI and (Deadline - 12) / 2 loop passes.
        uint expected = (uint)((Deadline - SetupInstructions - 1) / 2);
        Assert.Multiple(() =>
        {
            Assert.That((first.Reason, first.ExitValue), Is.EqualTo((StopReason.GuestExit, expected)), first.Diagnostic);
            Assert.That(trace.Count(l => l.Contains($"device timer at {Deadline}: 1 fired")), Is.EqualTo(1));
            Assert.That(trace.Count(l => l.Contains("pic acknowledge irq 0 vector=0x08")), Is.EqualTo(1));
            Assert.That((second.Reason, second.ExitValue), Is.EqualTo((first.Reason, first.ExitValue)));
            Assert.That(again, Is.EqualTo(trace), "the same guest and devices give the same trace");
        });
    }

    [Test]
    public async Task ADeferredReadHoldsTheVcpuUntilTheDeviceCompletesIt()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(Config("patient", FlatKernel.Build(a =>
        {
            a.mov(dx, 0x510);
            a.@in(al, dx);
            a.movzx(eax, al);
            a.@out(0xF4, eax);
        }), "debug-exit"));
        var device = new TestDevice("slow", ports: new PortRange(0x510, 0x510)) { DeferReadsWith = 0x5A };
        vm.Worker.Attach(device);
        await machine.RunAsync();
        PartitionExit exit = await vm.Exited;
        Assert.Multiple(() =>
        {
            Assert.That((exit.Reason, exit.ExitValue), Is.EqualTo((StopReason.GuestExit, 0x5Au)), exit.Diagnostic);
            Assert.That(machine.TraceLines.Any(l => l.Contains("slow read port=0x0510 size=1 (deferred) -> 0x5a")), Is.True);
        });
    }

    [Test]
    public async Task ADeviceErrorFaultsOnlyItsGuestWithTheDevicesReason()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(Config("refused", FlatKernel.Build(a =>
        {
            a.mov(dx, 0x510);
            a.@in(al, dx);
            a.hlt();
        })));
        VirtualMachine bystander = machine.Create(Config("bystander", FlatKernel.Build(a => a.@out(0xF4, eax)), "debug-exit"));
        vm.Worker.Attach(new TestDevice("broken", ports: new PortRange(0x510, 0x510)) { ReadError = "no medium" });
        await machine.RunAsync();
        PartitionExit exit = await vm.Exited;
        Assert.Multiple(async () =>
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(exit.Diagnostic, Does.StartWith("guest fault: broken read port=0x0510 size=1: no medium"));
            Assert.That((await bystander.Exited).Reason, Is.EqualTo(StopReason.GuestExit));
        });
    }

    /// <summary>Arms a timer when built; on expiry raises interrupt line 0.</summary>
    private sealed class TimerDevice : IChipsetDevice
    {
        public TimerDevice(DeviceServices services, long deadline)
        {
            IInterruptLine line = services.InterruptLine(0);
            IVirtualTimer timer = services.CreateTimer(_ => line.Raise());
            timer.ArmAt(deadline);
        }

        public string Name => "ticker";
    }

    private sealed class TestDevice(string name, PortRange? ports = null, MmioRange? mmio = null) : IChipsetDevice, IPortIoDevice, IMmioDevice
    {
        public string Name => name;

        public uint? DeferReadsWith { get; init; }

        public string? ReadError { get; init; }

        public IPortIoDevice? PortIo => ports is null ? null : this;

        public IMmioDevice? Mmio => mmio is null ? null : this;

        public IReadOnlyList<PortRange> Ports => ports is { } p ? new[] { p } : Array.Empty<PortRange>();

        public IReadOnlyList<MmioRange> Regions => mmio is { } m ? new[] { m } : Array.Empty<MmioRange>();

        public IoResult Read(ushort port, int size)
        {
            if (ReadError is { } error)
            {
                return IoResult.Fail(error);
            }

            if (DeferReadsWith is not { } value)
            {
                return IoResult.Ok(0);
            }

            IoResult result = IoResult.Defer(out DeferredIo token);
            _ = Task.Run(async () =>
            {
                await Task.Delay(50);
                token.Complete(value);
            });
            return result;
        }

        public IoResult Write(ushort port, int size, uint value) => IoResult.Ok();

        public IoResult Read(uint gpa, int size) => IoResult.Ok(0);

        public IoResult Write(uint gpa, int size, uint value) => IoResult.Ok();
    }
}
