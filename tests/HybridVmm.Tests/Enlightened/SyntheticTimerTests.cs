using System.Buffers.Binary;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Enlightened;

/// <summary>
/// The synthetic timers and the partition reference counter (TLFS chapter 12), the ports the root connects inside a
/// partition (TLFS 11.10, through QEMU's hyperv-testdev), and the feature bits that announce them (TLFS 2.4.4): what
/// kvm-unit-tests' hyperv_stimer and hyperv_connections check, which CI cannot run, exercised through the guest's own
/// MSR writes, hypercalls and port writes.
/// </summary>
public class SyntheticTimerTests
{
    private const uint HypercallPage = 0x10000, Input = 0x11000, Simp = 0x12000, Siefp = 0x13000, Log = 0x14000;
    private const uint Idt = 0x15000, IdtDescriptor = 0x16000, ApicEoi = 0xFEE0_00B0;
    private const uint TimerExpired = 0x8000_0010;

    private static void Wrmsr(Assembler a, uint msr, uint value) { a.mov(ecx, msr); a.mov(eax, value); a.xor(edx, edx); a.wrmsr(); }

    private static void ReadReferenceTime(Assembler a) { a.mov(ecx, HvMsr.TimeRefCount); a.rdmsr(); }

    /// <summary>Lets 100,000 loop iterations of virtual time pass (for anything still in flight), then exits with 0.</summary>
    private static void SpinThenExit(Assembler a)
    {
        a.mov(ecx, 100_000);
        Label spin = a.CreateLabel();
        a.Label(ref spin);
        a.dec(ecx);
        a.jnz(spin);
        a.xor(eax, eax);
        a.@out(0xF4, eax);
    }

    private static uint StimerConfig(int timer) => HvMsr.Stimer0Config + 2u * (uint)timer;

    /// <summary>A flat guest: interrupt handlers (each between PUSHAD and POPAD; IRETD) at their vectors, then the main program.</summary>
    private static byte[] Guest(Action<Assembler> main, params (byte Vector, Action<Assembler> Body)[] handlers)
    {
        var addresses = new uint[handlers.Length];
        byte[] code = [];
        for (int pass = 0; pass < 2; pass++)
        {
            var a = new Assembler(32);
            Label start = a.CreateLabel();
            var labels = new Label[handlers.Length];
            a.jmp(start);
            for (int i = 0; i < handlers.Length; i++)
            {
                labels[i] = a.CreateLabel();
                a.Label(ref labels[i]);
                a.pushad();
                handlers[i].Body(a);
                a.popad();
                a.iretd();
            }

            a.Label(ref start);
            a.mov(esp, 0x80000);
            for (int i = 0; i < handlers.Length; i++)
            {
                uint gate = Idt + handlers[i].Vector * 8u;
                a.mov(eax, addresses[i]);
                a.mov(__word_ptr[gate], ax);
                a.mov(__word_ptr[gate + 2], (ushort)0x08);
                a.mov(__word_ptr[gate + 4], (ushort)0x8E00);
                a.shr(eax, 16);
                a.mov(__word_ptr[gate + 6], ax);
            }

            a.mov(__word_ptr[IdtDescriptor], (ushort)(256 * 8 - 1));
            a.mov(__dword_ptr[IdtDescriptor + 2], Idt);
            a.lidt(__[IdtDescriptor]);
            main(a);
            using var stream = new MemoryStream();
            AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), FlatKernel.Entry, BlockEncoderOptions.ReturnNewInstructionOffsets);
            for (int i = 0; i < handlers.Length; i++)
            {
                addresses[i] = (uint)result.GetLabelRIP(labels[i]);
            }

            code = stream.ToArray();
        }

        return FlatKernel.Wrap(code);
    }

    private static async Task<(PartitionExit Exit, uint[] Log, TestMachine Machine)> Run(byte[] image, bool testDevice = false)
    {
        var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration
        {
            Name = "stimer", Image = image, MemoryBytes = 4u << 20,
            Devices = testDevice ? [.. VmConfiguration.KnownDevices, "hyperv-testdev"] : VmConfiguration.KnownDevices,
        });
        await machine.RunAsync();
        byte[] raw = new byte[64];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Log, raw);
        uint[] log = Enumerable.Range(0, 16).Select(i => BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4))).ToArray();
        return (await vm.Exited, log, machine);
    }

    private static void AssertExitedCleanly(PartitionExit exit, TestMachine machine) =>
        Assert.That((exit.Reason, exit.ExitValue), Is.EqualTo((StopReason.GuestExit, 0u)), exit.Diagnostic + "\n" + string.Join("\n", machine.TraceLines.TakeLast(15)));

    /// <summary>
    /// TLFS 12.2-12.3: a one-shot timer (COUNT the absolute reference time) in message mode puts HvMessageTimerExpired
    /// into its SINT's slot: payload TimerIndex, ExpirationTime (the COUNT written) and DeliveryTime, then clears its own
    /// Enable bit. The vCPU halts meanwhile and wakes at exactly that reference time, not before. CPUID 0x40000003 announces
    /// the reference counter (EAX bit 1), the SynIC (bit 2), the timers (bit 3) and direct mode (EDX bit 19); EOM reads as 0.
    /// </summary>
    [Test]
    public async Task AOneShotTimerSendsItsExpirationMessageAtTheReferenceTimeItWasGiven()
    {
        const uint Delay = 1000; // 100 µs of reference time
        byte[] image = Guest(main: a =>
        {
            Label wait = a.CreateLabel();
            a.mov(eax, 0x40000003); a.cpuid(); a.mov(__dword_ptr[Log + 36], eax); a.mov(__dword_ptr[Log + 40], edx);
            a.mov(ecx, HvMsr.Eom); a.rdmsr(); a.mov(__dword_ptr[Log + 44], eax);
            Wrmsr(a, HvMsr.Simp, Simp | 1);
            Wrmsr(a, HvMsr.Sint0 + 2, 0x40);
            Wrmsr(a, HvMsr.SControl, 1);
            a.sti();
            ReadReferenceTime(a);
            a.add(eax, Delay);
            a.mov(__dword_ptr[Log], eax);
            a.mov(ecx, HvMsr.Stimer0Config + 1); a.xor(edx, edx); a.wrmsr();  // STIMER0_COUNT: the expiration time
            Wrmsr(a, HvMsr.Stimer0Config, 1 | (2u << 16));                   // enable, one-shot, SINT2
            a.Label(ref wait);
            a.hlt();
            a.cmp(__dword_ptr[Log + 4], 0);
            a.je(wait);
            a.mov(ecx, HvMsr.Stimer0Config); a.rdmsr(); a.mov(__dword_ptr[Log + 24], eax);
            a.xor(eax, eax); a.@out(0xF4, eax);
        }, (0x40, a =>
        {
            const uint slot = Simp + 2 * 256;
            a.mov(eax, __dword_ptr[slot]); a.mov(__dword_ptr[Log + 4], eax);
            a.movzx(eax, __byte_ptr[slot + 4]); a.mov(__dword_ptr[Log + 8], eax);
            a.mov(eax, __dword_ptr[slot + 16]); a.mov(__dword_ptr[Log + 12], eax);
            a.mov(eax, __dword_ptr[slot + 24]); a.mov(__dword_ptr[Log + 16], eax);
            a.mov(eax, __dword_ptr[slot + 32]); a.mov(__dword_ptr[Log + 20], eax);
            ReadReferenceTime(a); a.mov(__dword_ptr[Log + 28], eax);
            a.mov(__dword_ptr[slot], 0u);
            a.mov(__dword_ptr[ApicEoi], 0u);
        }));

        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(image);
        using (machine)
        {
            AssertExitedCleanly(exit, machine);
            uint due = log[0];
            Assert.Multiple(() =>
            {
                Assert.That(log[1], Is.EqualTo(TimerExpired), "HvMessageTimerExpired");
                Assert.That(log[2], Is.EqualTo(24u), "payload size");
                Assert.That(log[3], Is.EqualTo(0u), "timer index");
                Assert.That(log[4], Is.EqualTo(due), "ExpirationTime is the COUNT written");
                Assert.That(log[5], Is.EqualTo(due), "DeliveryTime: the halted vCPU wakes at the expiration itself");
                Assert.That(log[7], Is.InRange(due, due + 100), "the handler runs at the expiration, not long after");
                Assert.That(log[6], Is.EqualTo(2u << 16), "a one-shot timer clears its Enable bit once it has signalled");
                Assert.That(log[9] & 0xE, Is.EqualTo(0xEu), "CPUID 0x40000003 EAX: reference counter, SynIC and timer MSRs");
                Assert.That(log[10] & (1u << 19), Is.Not.Zero, "CPUID 0x40000003 EDX: direct-mode timers");
                Assert.That(log[11], Is.EqualTo(0u), "EOM reads as 0");
            });
        }
    }

    private const uint Period = 5000; // 500 µs

    private static byte[] PeriodicDirectGuest() => Guest(main: a =>
        {
            Label wait = a.CreateLabel();
            Wrmsr(a, StimerConfig(1) + 1, Period);
            ReadReferenceTime(a);
            a.mov(__dword_ptr[Log], eax);
            Wrmsr(a, StimerConfig(1), 1 | 2 | (1u << 12) | (0x41u << 4)); // enable, periodic, direct mode, vector 0x41
            a.sti();
            a.Label(ref wait);
            a.hlt();
            a.cmp(__dword_ptr[Log + 4], 5);
            a.jb(wait);
            Wrmsr(a, StimerConfig(1), 0);
            SpinThenExit(a);
        }, (0x41, a =>
        {
            Label notFirst = a.CreateLabel();
            a.inc(__dword_ptr[Log + 4]);
            ReadReferenceTime(a); a.mov(__dword_ptr[Log + 8], eax);
            a.cmp(__dword_ptr[Log + 4], 1);
            a.jne(notFirst);
            a.mov(__dword_ptr[Log + 12], eax);
            a.Label(ref notFirst);
            a.mov(__dword_ptr[ApicEoi], 0u);
        }));

    /// <summary>
    /// TLFS 12.2.1: a periodic timer in direct mode raises its APIC vector every period (COUNT the period), with no message
    /// and without the SynIC enabled (as kvm-unit-tests' hyperv_stimer_direct runs it); the fifth interrupt comes five
    /// periods after the timer was enabled.
    /// </summary>
    [Test]
    public async Task APeriodicDirectModeTimerRaisesItsVectorOncePerPeriod()
    {
        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(PeriodicDirectGuest());
        using (machine)
        {
            AssertExitedCleanly(exit, machine);
            Assert.That(log[1], Is.EqualTo(5u), "five interrupts, and none once the timer was disabled");
            Assert.That(log[2] - log[0], Is.InRange(5 * Period, 5 * Period + Period / 10), "the fifth came five periods after the start");
            Assert.That(log[2] - log[3], Is.EqualTo(4 * Period), "from the first to the fifth, exactly four periods: the halted vCPU wakes at each expiration");
        }
    }

    /// <summary>
    /// A periodic message-mode timer on SINT2 whose first message the guest holds for three and a half periods (its handler
    /// keeps the slot busy), so that later expirations find the slot taken. The handler logs the count of messages (log[0]),
    /// each message's ExpirationTime (log[1..7]) and DeliveryTime (log[8..14]), the reference time just after the timer was
    /// enabled (log[15]). The handler holds the slot reading the reference counter, exits the kernel serves itself, so the
    /// vCPU halts afterwards with many quanta of carry, and its timer must still wake it.
    /// </summary>
    private static byte[] HeldMessageGuest(bool lazy) => Guest(main: a =>
        {
            Label wait = a.CreateLabel();
            Wrmsr(a, HvMsr.Simp, Simp | 1);
            Wrmsr(a, HvMsr.Sint0 + 2, 0x40);
            Wrmsr(a, HvMsr.SControl, 1);
            Wrmsr(a, StimerConfig(0) + 1, Period);
            a.sti();
            Wrmsr(a, StimerConfig(0), 1 | 2 | (lazy ? 4u : 0) | (2u << 16)); // enable, periodic, lazy or not, SINT2
            ReadReferenceTime(a);
            a.mov(__dword_ptr[Log + 60], eax);
            a.Label(ref wait);
            a.hlt();
            a.cmp(__dword_ptr[Log], 7);
            a.jb(wait);
            Wrmsr(a, StimerConfig(0), 0);
            SpinThenExit(a);
        }, (0x40, a =>
        {
            const uint slot = Simp + 2 * 256;
            Label hold = a.CreateLabel(), free = a.CreateLabel();
            a.mov(ebx, __dword_ptr[Log]);
            a.cmp(ebx, 7);
            a.jae(free);
            a.mov(eax, __dword_ptr[slot + 24]); a.mov(__dword_ptr[ebx * 4 + (Log + 4)], eax);  // ExpirationTime
            a.mov(eax, __dword_ptr[slot + 32]); a.mov(__dword_ptr[ebx * 4 + (Log + 32)], eax); // DeliveryTime
            a.inc(__dword_ptr[Log]);
            a.cmp(ebx, 0);
            a.jne(free);
            a.Label(ref hold); // the first message: the slot stays busy for 3.5 periods after its delivery
            ReadReferenceTime(a);
            a.sub(eax, __dword_ptr[Log + 32]);
            a.cmp(eax, 3 * Period + Period / 2);
            a.jb(hold);
            a.Label(ref free);
            a.mov(__dword_ptr[slot], 0u);
            Wrmsr(a, HvMsr.Eom, 0);
            a.mov(__dword_ptr[ApicEoi], 0u);
        }));

    /// <summary>
    /// TLFS chapter 12, "Periodic Timers": a periodic timer whose expirations could not be signalled in time (here its message
    /// slot stayed busy for 3.5 periods) and that is not lazy catches up by period modulation: every expiration is signalled,
    /// in order (ExpirationTimes one period apart, none missing), those that were late less than a period apart, until it
    /// is on time again. A lazy one signals the late expiration once its slot is free and skips the periods missed
    /// meanwhile. Neither ever signals an expiration before its time.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task APeriodicTimerThatMissedExpirationsCatchesUpUnlessItIsLazy(bool lazy)
    {
        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(HeldMessageGuest(lazy));
        using (machine)
        {
            AssertExitedCleanly(exit, machine);
            uint start = log[15];
            uint[] expiration = log[1..8], delivery = log[8..15];
            uint[] gaps = [.. expiration.Zip(expiration.Skip(1), (x, y) => y - x)];
            Assert.Multiple(() =>
            {
                Assert.That(log[0], Is.EqualTo(7u));
                Assert.That(start + Period - expiration[0], Is.InRange(0u, 20u), "the first period begins when the timer is enabled");
                Assert.That(expiration.Select(e => (e - expiration[0]) % Period), Has.All.EqualTo(0u), "every expiration is on the timer's period grid");
                Assert.That(delivery.Zip(expiration, (d, e) => d >= e), Has.All.True, "never signalled before its expiration");
                Assert.That(delivery[1] - delivery[0], Is.GreaterThanOrEqualTo(3 * Period + Period / 2), "the second waited for the slot");
                if (lazy)
                {
                    Assert.That(gaps[1], Is.GreaterThan(Period), "a lazy timer skips the periods it missed");
                    Assert.That(gaps.Skip(2), Has.All.EqualTo(Period), "and then signals every period");
                    Assert.That(delivery[2], Is.EqualTo(expiration[2]), "on time again at once");
                }
                else
                {
                    Assert.That(gaps, Has.All.EqualTo(Period), "no expiration is skipped");
                    Assert.That(delivery[2] - delivery[1], Is.LessThan(Period), "the late ones come less than a period apart");
                    Assert.That(delivery[6], Is.EqualTo(expiration[6]), "caught up: the last one on time");
                }
            });
        }
    }

    private const uint BusySlot = Simp + 3 * 256;

    private static byte[] BusySlotGuest() => Guest(main: a =>
        {
            Label poll = a.CreateLabel(), gaveUp = a.CreateLabel(), wait = a.CreateLabel(), done = a.CreateLabel();
            Wrmsr(a, HvMsr.Simp, Simp | 1);
            Wrmsr(a, HvMsr.Sint0 + 3, 0x42 | (1u << 17));  // auto-EOI
            Wrmsr(a, HvMsr.SControl, 1);
            a.mov(__dword_ptr[BusySlot], 0x1234u);             // the slot holds a message the guest has not read
            a.sti();
            ReadReferenceTime(a);
            a.add(eax, 500);
            a.mov(ecx, StimerConfig(2) + 1); a.xor(edx, edx); a.wrmsr();
            Wrmsr(a, StimerConfig(2), 1 | (3u << 16));
            a.mov(esi, 10_000_000);
            a.Label(ref poll);
            a.test(__byte_ptr[BusySlot + 5], 1);               // MessagePending
            a.jnz(gaveUp);
            a.dec(esi);
            a.jnz(poll);
            a.Label(ref gaveUp);
            a.movzx(eax, __byte_ptr[BusySlot + 5]); a.mov(__dword_ptr[Log], eax);
            a.mov(eax, __dword_ptr[Log + 4]); a.mov(__dword_ptr[Log + 8], eax); // interrupts taken before the EOM
            a.mov(__dword_ptr[BusySlot], 0u);
            Wrmsr(a, HvMsr.Eom, 0);
            a.Label(ref wait);
            a.cmp(__dword_ptr[Log + 4], 0);
            a.jne(done);
            a.hlt();
            a.jmp(wait);
            a.Label(ref done);
            a.xor(eax, eax); a.@out(0xF4, eax);
        }, (0x42, a =>
        {
            a.inc(__dword_ptr[Log + 4]);
            a.mov(eax, __dword_ptr[BusySlot]); a.mov(__dword_ptr[Log + 12], eax);
            a.mov(eax, __dword_ptr[BusySlot + 16]); a.mov(__dword_ptr[Log + 16], eax);
        }));

    /// <summary>
    /// TLFS 11.10.3 and 12.3: a timer message that finds its slot busy waits, sets the slot's MessagePending flag and
    /// raises nothing; once the guest frees the slot and writes EOM it arrives.
    /// </summary>
    [Test]
    public async Task ATimerMessageWaitsForABusySlotUntilEom()
    {
        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(BusySlotGuest());
        using (machine)
        {
            AssertExitedCleanly(exit, machine);
            Assert.Multiple(() =>
            {
                Assert.That(log[0] & 1, Is.EqualTo(1u), "MessagePending set on the busy slot");
                Assert.That(log[2], Is.EqualTo(0u), "no interrupt while the slot was busy");
                Assert.That(log[1], Is.EqualTo(1u), "one interrupt after EOM");
                Assert.That(log[3], Is.EqualTo(TimerExpired), "the timer's message in the slot");
                Assert.That(log[4], Is.EqualTo(2u), "from timer 2");
            });
        }
    }

    /// <summary>
    /// TLFS 11.10.3-11.10.4 through QEMU's hyperv-testdev (port 0x3000): a message connection and an event connection the
    /// root connects to this vCPU's SINT3. HvPostMessage on the first lands in SINT3's slot, HvSignalEvent on the second
    /// sets event flag 0x20 (QEMU's device uses the connection ID as the flag) and raises SINT3; signalling a flag already
    /// set succeeds without an interrupt; an unknown connection gets HV_STATUS_INVALID_CONNECTION_ID.
    /// </summary>
    [Test]
    public async Task ConnectionsTheRootConnectsDeliverMessagesAndEventsToTheirVcpu()
    {
        const uint Slot = Simp + 3 * 256, Flags = Siefp + 3 * 256;
        static void Hypercall(Assembler a, uint control, uint ecxValue, uint logOffset)
        {
            a.mov(eax, control); a.xor(edx, edx); a.mov(ecx, ecxValue); a.xor(ebx, ebx); a.xor(edi, edi); a.xor(esi, esi);
            a.mov(ebp, HypercallPage); a.call(ebp);
            a.mov(__dword_ptr[Log + logOffset], eax);
        }

        static void WaitFor(Assembler a, uint count)
        {
            Label wait = a.CreateLabel(), done = a.CreateLabel();
            a.Label(ref wait);
            a.cmp(__dword_ptr[Log + 20], count);
            a.jae(done);
            a.hlt();
            a.jmp(wait);
            a.Label(ref done);
        }

        byte[] image = Guest(main: a =>
        {
            Wrmsr(a, HvMsr.GuestOsId, 1);
            Wrmsr(a, HvMsr.Hypercall, HypercallPage | 1);
            Wrmsr(a, HvMsr.Simp, Simp | 1);
            Wrmsr(a, HvMsr.Siefp, Siefp | 1);
            Wrmsr(a, HvMsr.Sint0 + 3, 0x42 | (1u << 17));
            Wrmsr(a, HvMsr.SControl, 1);
            a.mov(dx, 0x3000);
            a.mov(eax, (0x10u << 24) | (4u << 16) | 3); a.@out(dx, eax); // message connection 0x10 -> vCPU 0, SINT3
            a.mov(eax, (0x20u << 24) | (6u << 16) | 3); a.@out(dx, eax); // event connection 0x20 -> vCPU 0, SINT3, flag 0x20
            a.sti();
            a.mov(__dword_ptr[Input], 0x10u); a.mov(__dword_ptr[Input + 4], 0u);
            a.mov(__dword_ptr[Input + 8], 0x1234u); a.mov(__dword_ptr[Input + 12], 8u);
            a.mov(__dword_ptr[Input + 16], 0xCAFEu); a.mov(__dword_ptr[Input + 20], 0u);
            Hypercall(a, HvCallCode.PostMessage, Input, 0);
            WaitFor(a, 1);
            Hypercall(a, HvCallCode.SignalEvent | (1u << 16), 0x20, 4);
            WaitFor(a, 2);
            Hypercall(a, HvCallCode.SignalEvent | (1u << 16), 0x20, 8);
            Hypercall(a, HvCallCode.SignalEvent | (1u << 16), 0x21, 12);
            SpinThenExit(a);
        }, (0x42, a =>
        {
            Label noMessage = a.CreateLabel();
            a.inc(__dword_ptr[Log + 20]);
            a.mov(eax, __dword_ptr[Slot]);
            a.test(eax, eax);
            a.jz(noMessage);
            a.mov(__dword_ptr[Log + 24], eax);
            a.mov(eax, __dword_ptr[Slot + 16]); a.mov(__dword_ptr[Log + 28], eax);
            a.mov(__dword_ptr[Slot], 0u);
            a.Label(ref noMessage);
            a.mov(eax, __dword_ptr[Flags + 4]); a.mov(__dword_ptr[Log + 32], eax);
        }));

        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(image, testDevice: true);
        using (machine)
        {
            AssertExitedCleanly(exit, machine);
            Assert.Multiple(() =>
            {
                Assert.That(log[0], Is.EqualTo((uint)HvStatus.Success), "HvPostMessage");
                Assert.That(log[6], Is.EqualTo(0x1234u), "the message's type in SINT3's slot");
                Assert.That(log[7], Is.EqualTo(0xCAFEu), "its payload");
                Assert.That(log[1], Is.EqualTo((uint)HvStatus.Success), "HvSignalEvent");
                Assert.That(log[8], Is.EqualTo(1u), "flag 0x20: bit 0 of the slot's second dword");
                Assert.That(log[2], Is.EqualTo((uint)HvStatus.Success), "signalling a flag already set");
                Assert.That(log[5], Is.EqualTo(2u), "two interrupts: the flag already set raised none");
                Assert.That(log[3], Is.EqualTo((uint)HvStatus.InvalidConnectionId), "an unknown connection");
            });
        }
    }
    /// <summary>
    /// A SINT route (hyperv-testdev command 3, KVM's irqfd to a SINT) raises the SINT's vector with no message; once the
    /// guest masks the SINT (TLFS 11.8.4, bit 16) the same request raises nothing.
    /// </summary>
    [Test]
    public async Task ASintRouteRaisesTheSintUntilTheGuestMasksIt()
    {
        byte[] image = Guest(main: a =>
        {
            Wrmsr(a, HvMsr.Simp, Simp | 1);
            Wrmsr(a, HvMsr.Sint0 + 5, 0x43 | (1u << 17));
            Wrmsr(a, HvMsr.SControl, 1);
            a.sti();
            a.mov(dx, 0x3000);
            a.mov(eax, (3u << 16) | 5); a.@out(dx, eax);   // raise SINT5 of vCPU 0
            a.nop();
            a.mov(eax, __dword_ptr[Log]); a.mov(__dword_ptr[Log + 4], eax);
            Wrmsr(a, HvMsr.Sint0 + 5, 0x43 | (1u << 16) | (1u << 17));
            a.mov(dx, 0x3000);
            a.mov(eax, (3u << 16) | 5); a.@out(dx, eax);
            SpinThenExit(a);
        }, (0x43, a => a.inc(__dword_ptr[Log])));

        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(image, testDevice: true);
        using (machine)
        {
            AssertExitedCleanly(exit, machine);
            Assert.That(log[1], Is.EqualTo(1u), "the unmasked SINT's interrupt, taken right after the port write");
            Assert.That(log[0], Is.EqualTo(1u), "none once masked");
        }
    }

    private sealed record Outcome(PartitionExit Exit, byte[] Memory, long Instructions);

    private static Outcome Finish(TestMachine machine, VirtualMachine vm)
    {
        machine.RunAsync().GetAwaiter().GetResult();
        byte[] memory = new byte[64];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Log, memory);
        return new Outcome(vm.Exited.Result, memory, vm.Statistics.InstructionsRetired);
    }

    private static VmConfiguration Config(byte[] image) => new() { Name = "stimer", Image = image, MemoryBytes = 4u << 20, InstructionLimit = 50_000_000 };

    /// <summary>
    /// The timers travel in snapshots (chunk "synic.vp0", version 3): a guest saved while a periodic direct-mode timer
    /// runs, or while a one-shot timer is armed behind a busy slot, goes on after the restore exactly as without the stop.
    /// </summary>
    [TestCase("periodic direct", 40)]
    [TestCase("periodic direct", 75)]
    [TestCase("busy slot", 30_000)]
    public void AGuestRestoredWhileItsSyntheticTimerRunsGoesOnAsIfNeverStopped(string guest, long saveAt)
    {
        byte[] image = guest == "busy slot" ? BusySlotGuest() : PeriodicDirectGuest();
        Outcome reference;
        using (var machine = new TestMachine())
        {
            reference = Finish(machine, machine.Create(Config(image)));
        }

        byte[] file;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create(Config(image));
            machine.System.Root.PauseAtInstruction(vm, saveAt);
            machine.RunAsync().GetAwaiter().GetResult();
            Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));
            VmSnapshot snapshot = machine.System.Root.CaptureSnapshot(vm);
            Assert.That(snapshot.Enlightened.VirtualProcessors[0].Synic.Timers, Is.Not.Null, "a timer is in use at the save");
            file = SnapshotFormat.Serialize(snapshot);
        }

        VmSnapshot restored = SnapshotFormat.TryDeserialize(file, out string error)!;
        Assert.That(restored, Is.Not.Null, error);
        Outcome after;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(restored, out VmCreationError? creationError)!;
            Assert.That(vm, Is.Not.Null, creationError?.Message);
            after = Finish(machine, vm);
        }

        Assert.That(reference.Exit.Reason, Is.EqualTo(StopReason.GuestExit), reference.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(after.Exit, Is.EqualTo(reference.Exit));
            Assert.That(after.Memory, Is.EqualTo(reference.Memory), "the log: interrupts, reference times, messages");
            Assert.That(after.Instructions, Is.EqualTo(reference.Instructions));
        });
    }
}
