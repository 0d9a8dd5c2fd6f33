using System.Buffers.Binary;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Enlightened;

/// <summary>The TLFS hypercall interface: MSRs, the hypercall page, the control word and status codes.</summary>
public class HypercallTests
{
    internal const uint HypercallPage = 0x10000;
    private const uint Input = 0x11000;
    private const uint Results = 0x12000;

    /// <summary>Sets up a stack, writes a guest OS ID and enables the hypercall page at <see cref="HypercallPage"/>.</summary>
    internal static void EnableHypercalls(Assembler a)
    {
        a.mov(esp, 0x80000);
        a.mov(ecx, HvMsr.GuestOsId); a.mov(eax, 0x1234); a.xor(edx, edx); a.wrmsr();
        a.mov(ecx, HvMsr.Hypercall); a.mov(eax, HypercallPage | 1); a.xor(edx, edx); a.wrmsr();
    }

    /// <summary>Calls the hypercall page with EDX:EAX = control, EBX:ECX = input, EDI:ESI = output; stores EDX:EAX in slot.</summary>
    private static void Call(Assembler a, ulong control, ulong input, int slot, ulong output = 0)
    {
        a.mov(eax, (uint)control); a.mov(edx, (uint)(control >> 32));
        a.mov(ecx, (uint)input); a.mov(ebx, (uint)(input >> 32));
        a.mov(esi, (uint)output); a.mov(edi, (uint)(output >> 32));
        a.mov(ebp, HypercallPage); a.call(ebp);
        a.mov(__dword_ptr[Results + (uint)slot * 8], eax);
        a.mov(__dword_ptr[Results + (uint)slot * 8 + 4], edx);
    }

    private static void Exit(Assembler a) { a.mov(eax, 0); a.@out(0xF4, eax); }

    private static async Task<(ulong[] Results, PartitionExit Exit, TestMachine Machine)> Run(byte[] image, int slots, HvPartitionPrivileges? privileges = null)
    {
        var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration { Name = "hc", Image = image, MemoryBytes = 4u << 20, Privileges = privileges });
        await machine.RunAsync();
        byte[] raw = new byte[slots * 8];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Results, raw);
        ulong[] results = new ulong[slots];
        for (int i = 0; i < slots; i++) results[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * 8));
        return (results, await vm.Exited, machine);
    }

    private static void WritePostMessage(Assembler a, uint at, uint connection, uint type, uint size, uint reserved = 0)
    {
        a.mov(__dword_ptr[at], connection);
        a.mov(__dword_ptr[at + 4], reserved);
        a.mov(__dword_ptr[at + 8], type);
        a.mov(__dword_ptr[at + 12], size);
        a.mov(__dword_ptr[at + 16], 3u); // VMBus RequestOffers
    }

    [Test]
    public async Task BadHypercallsReturnTlfsStatusCodesAndNeverFaultTheGuest()
    {
        const ulong Fast = 1UL << 16;
        byte[] image = FlatKernel.Build(a =>
        {
            EnableHypercalls(a);
            WritePostMessage(a, Input, connection: 1, type: 1, size: 8);
            WritePostMessage(a, Input + 0x400, connection: 7, type: 1, size: 8);
            WritePostMessage(a, Input + 0x800, connection: 1, type: 1, size: 241);
            WritePostMessage(a, Input + 0xC00, connection: 1, type: 0x80000001, size: 8);
            Call(a, 0x0999, Input, 0);                            // unknown call code
            Call(a, HvCallCode.PostMessage | (1UL << 27), Input, 1); // reserved bit
            Call(a, HvCallCode.PostMessage, Input + 4, 2);        // misaligned input
            Call(a, HvCallCode.PostMessage, 0x7FF000, 3);         // beyond RAM (4 MiB)
            Call(a, HvCallCode.PostMessage, Input + 0x400, 4);    // unknown connection
            Call(a, HvCallCode.PostMessage, Input + 0x800, 5);    // payload too large
            Call(a, HvCallCode.PostMessage, Input + 0xC00, 6);    // hypervisor message type
            Call(a, HvCallCode.SignalEvent | Fast, 0x1001, 7);    // no such event connection
            Call(a, HvCallCode.CreatePartition, Input, 8);        // root only
            Call(a, HvCallCode.PostMessage | Fast, 1, 9);         // PostMessage has no fast form
            Call(a, HvCallCode.PostMessage, Input, 10);           // valid
            Call(a, HvCallCode.PostMessage | (3UL << 32), Input, 11); // rep count on a simple call
            Call(a, HvCallCode.PostMessage, Input + 0xFF8, 12);   // crosses a page
            Exit(a);
        });
        (ulong[] r, PartitionExit exit, TestMachine machine) = await Run(image, 13);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            Assert.That(r.Select(v => (HvStatus)(ushort)v), Is.EqualTo(new[]
            {
                HvStatus.InvalidHypercallCode, HvStatus.InvalidHypercallInput, HvStatus.InvalidAlignment,
                HvStatus.InvalidParameter, HvStatus.InvalidConnectionId, HvStatus.InvalidParameter,
                HvStatus.InvalidParameter, HvStatus.InvalidConnectionId, HvStatus.AccessDenied,
                HvStatus.InvalidHypercallInput, HvStatus.Success, HvStatus.InvalidHypercallInput, HvStatus.InvalidAlignment,
            }));
            Assert.That(machine.TraceLines, Has.Some.Contains("Hypercall HvCallPostMessage connection=1 type=1 size=8 -> HV_STATUS_SUCCESS"));
        }
    }

    [Test]
    public async Task APartitionWithoutThePostMessagesPrivilegeIsDenied()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            EnableHypercalls(a);
            WritePostMessage(a, Input, 1, 1, 8);
            Call(a, HvCallCode.PostMessage, Input, 0);
            Exit(a);
        });
        (ulong[] r, PartitionExit exit, TestMachine machine) = await Run(image, 1, HvPartitionPrivileges.Child & ~HvPartitionPrivileges.PostMessages);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That((HvStatus)(ushort)r[0], Is.EqualTo(HvStatus.AccessDenied));
        }
    }

    [Test]
    public async Task TheHypercallMsrPlacesAVmcallStubAndNeedsAGuestOsIdFirst()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(ecx, HvMsr.Hypercall); a.mov(eax, HypercallPage | 1); a.xor(edx, edx); a.wrmsr();
            a.rdmsr(); a.mov(__dword_ptr[Results], eax);          // enable ignored: no guest OS ID yet
            EnableHypercalls(a);
            a.mov(ecx, HvMsr.Hypercall); a.rdmsr(); a.mov(__dword_ptr[Results + 8], eax);
            a.mov(eax, __dword_ptr[HypercallPage]); a.mov(__dword_ptr[Results + 16], eax);
            Exit(a);
        });
        (ulong[] r, PartitionExit exit, TestMachine machine) = await Run(image, 3);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            Assert.That(r[0], Is.EqualTo((ulong)HypercallPage));
            Assert.That(r[1], Is.EqualTo((ulong)(HypercallPage | 1)));
            Assert.That(r[2], Is.EqualTo(0xC3C1010Ful), "vmcall; ret");
            Assert.That(machine.TraceLines, Has.Some.Contains("Msr       wrmsr HV_X64_MSR_HYPERCALL (0x40000001) value=0x0000000000010001"));
        }
    }

    [Test]
    public async Task VmcallWithoutAHypercallPageIsAnInvalidOpcode()
    {
        byte[] image = FlatKernel.Build(a => { a.vmcall(); Exit(a); });
        (_, PartitionExit exit, TestMachine machine) = await Run(image, 0);
        using (machine)
        {
            Assert.That(exit.Diagnostic, Does.StartWith("guest fault: #UD"));
        }
    }

    [Test]
    public async Task ARepHypercallCreatesAGpadlFromItsStartIndexAndReportsRepsCompleted()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            EnableHypercalls(a);
            a.mov(__dword_ptr[Input], 7u); a.mov(__dword_ptr[Input + 4], 3u);       // gpadl 7, 3 pages
            a.mov(__dword_ptr[Input + 8], 0x200u); a.mov(__dword_ptr[Input + 16], 0x201u); a.mov(__dword_ptr[Input + 24], 0x202u);
            Call(a, HvCallCode.CreateGpadl | (3UL << 32), Input, 0);
            Call(a, HvCallCode.CreateGpadl | (3UL << 32), Input, 1);                 // the same id again
            a.mov(__dword_ptr[Input + 0x100], 8u); a.mov(__dword_ptr[Input + 0x104], 2u);
            a.mov(__dword_ptr[Input + 0x108], 0x300u); a.mov(__dword_ptr[Input + 0x110], 0x99999u); // beyond RAM
            Call(a, HvCallCode.CreateGpadl | (2UL << 32), Input + 0x100, 2);
            Call(a, HvCallCode.CreateGpadl | (2UL << 32) | (5UL << 48), Input + 0x100, 3); // start index past count
            Exit(a);
        });
        (ulong[] r, PartitionExit exit, TestMachine machine) = await Run(image, 4);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            Assert.That(((HvStatus)(ushort)r[0], r[0] >> 32), Is.EqualTo((HvStatus.Success, 3ul)));
            Assert.That((HvStatus)(ushort)r[1], Is.EqualTo(HvStatus.ObjectInUse));
            Assert.That(((HvStatus)(ushort)r[2], r[2] >> 32), Is.EqualTo((HvStatus.InvalidParameter, 1ul)));
            Assert.That((HvStatus)(ushort)r[3], Is.EqualTo(HvStatus.InvalidHypercallInput));
        }
    }
}
