using System.Buffers.Binary;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.VmBus;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Robustness;

/// <summary>
/// Issue 14, item 4, the guest-facing parsers: a misbehaving guest drives the hypercall inputs, the VMBus channel
/// messages and the ring buffers of its synthetic devices (console, disk, network) with seeded random input, and
/// may only hurt itself. The guest runs a table of cases, each a hypercall (control word and input registers) after
/// a copy of random bytes into its input page or into the pages it grants as rings; the cases are biased toward
/// what parses (VMBus messages with small relids and GPADL ids, GPADLs of 4 to 16 ring pages, ring control pages
/// with aligned indices and packet descriptors), so opens succeed and the devices read the rings. Allowed outcomes:
/// the guest runs its table and exits, or it faults, halts or reaches its limit (by its own doing: a device may
/// write where a random GPADL granted it). A worker failure or an internal error of the VMBus server is a finding.
/// Same knobs as <see cref="ParserFuzzTests"/>: HYBRIDVMM_ROBUSTNESS_CASES cases (in guests of 150) and
/// HYBRIDVMM_ROBUSTNESS_SEED.
/// </summary>
public class GuestInterfaceFuzzTests
{
    private const uint HypercallPage = Enlightened.HypercallTests.HypercallPage;
    private const uint InputPage = 0x11000;
    private const uint CaseVariable = 0x60000;
    private const uint RingArea = 0x20000;
    private const int RingPages = 32;
    private const int CodeBytes = 0x1000;
    private const int CasesPerGuest = 150;
    private const uint MemoryBytes = 4u << 20;

    private static int Cases => int.TryParse(Environment.GetEnvironmentVariable("HYBRIDVMM_ROBUSTNESS_CASES"), out int n) && n > 0 ? n : 1500;

    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("HYBRIDVMM_ROBUSTNESS_SEED"), out int s) ? s : 20261205;

    private string _disk = "";

    [SetUp]
    public void CreateDisk() => File.WriteAllBytes(_disk = Path.Combine(Path.GetTempPath(), $"hybridvmm-fuzzdisk-{Guid.NewGuid():N}.img"), new byte[64 * 512]);

    [TearDown]
    public void DeleteDisk() => File.Delete(_disk);

    [Test]
    public async Task HypercallsChannelMessagesAndRingsFromAMisbehavingGuestNeverHurtTheHost()
    {
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        int opened = 0, served = 0, guests = (Cases + CasesPerGuest - 1) / CasesPerGuest;
        for (int guest = 0; guest < guests; guest++)
        {
            int seed = unchecked(Seed * 31 + guest); // not HashCode.Combine: its seed changes with each process
            byte[] image = Guest(Table(new Random(seed), Math.Min(CasesPerGuest, Cases - guest * CasesPerGuest)));
            using var machine = new TestMachine();
            VirtualMachine vm = machine.Create(new VmConfiguration
            {
                Name = "fuzz", Image = image, MemoryBytes = MemoryBytes, InstructionLimit = 50_000_000,
                SyntheticDevices = ["synthcon", "synthblk", "synthnet"], DiskImage = _disk,
            });
            Exception? thrown = null;
            try
            {
                await machine.RunAsync();
            }
            catch (Exception e)
            {
                thrown = e;
            }

            PartitionExit exit = await vm.Exited;
            string[] internalErrors = machine.TraceLines.Where(l => l.Contains("internal error", StringComparison.Ordinal)).ToArray();
            Assert.That(thrown, Is.Null, $"seed {Seed}, guest {guest}: {thrown}");
            Assert.That(exit.Reason, Is.AnyOf(StopReason.GuestExit, StopReason.GuestFault, StopReason.Halted, StopReason.InstructionLimit),
                $"seed {Seed}, guest {guest}: {exit.Reason} {exit.Diagnostic}");
            Assert.That(internalErrors, Is.Empty, $"seed {Seed}, guest {guest}");
            string outcome = exit.Reason.ToString();
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            opened += machine.TraceLines.Count(l => l.Contains("-> opened", StringComparison.Ordinal));
            served += machine.TraceLines.Count(l => l.Contains("HvCallSignalEvent", StringComparison.Ordinal) && l.Contains("HV_STATUS_SUCCESS", StringComparison.Ordinal));
        }

        TestContext.Out.WriteLine($"seed {Seed}: {Cases} cases in {guests} guests: {string.Join(", ", outcomes.Select(o => $"{o.Key} {o.Value}"))}; {opened} channels opened, {served} signals taken");
        Assert.That(opened, Is.GreaterThan(0), "the fuzzer must open channels, or the rings are never read");
        Assert.That(served, Is.GreaterThan(0), "the fuzzer must signal open channels, or the devices never parse a ring");
    }

    /// <summary>
    /// The guest: enables hypercalls, then for each case copies its bytes where it says and calls the hypercall page
    /// with its registers, then spins as long as the case says (so that the root, which serves requests at the
    /// scheduler's barrier, has answered before the next case: an open before its signals); exits 0 after the last.
    /// A case is { u32 control low, high; u32 input ECX, EBX; u32 copy destination; u32 dword count; u32 spin; the dwords }.
    /// </summary>
    private static byte[] Guest(byte[] table)
    {
        uint tableAddress = FlatKernel.Entry + CodeBytes;
        uint end = tableAddress + (uint)table.Length;
        byte[] code = Testing.GuestCode.Assemble(a =>
        {
            var next = a.CreateLabel();
            var done = a.CreateLabel();
            var spin = a.CreateLabel();
            Enlightened.HypercallTests.EnableHypercalls(a);
            a.mov(__dword_ptr[CaseVariable], tableAddress);
            a.Label(ref next);
            a.mov(ebp, __dword_ptr[CaseVariable]);
            a.cmp(ebp, end);
            a.jae(done);
            a.mov(edi, __dword_ptr[ebp + 16]);
            a.mov(ecx, __dword_ptr[ebp + 24]);
            a.mov(__dword_ptr[CaseVariable + 4], ecx);
            a.mov(ecx, __dword_ptr[ebp + 20]);
            a.lea(esi, __dword_ptr[ebp + 28]);
            a.cld();
            a.rep.movsd();
            a.mov(__dword_ptr[CaseVariable], esi);
            a.mov(eax, __dword_ptr[ebp]);
            a.mov(edx, __dword_ptr[ebp + 4]);
            a.mov(ecx, __dword_ptr[ebp + 8]);
            a.mov(ebx, __dword_ptr[ebp + 12]);
            a.xor(esi, esi);
            a.xor(edi, edi);
            a.mov(ebp, HypercallPage);
            a.call(ebp);
            a.mov(ecx, __dword_ptr[CaseVariable + 4]);
            a.jecxz(next);
            a.Label(ref spin);
            a.loop(spin);
            a.jmp(next);
            a.Label(ref done);
            a.xor(eax, eax);
            a.@out(0xF4, eax);
            a.hlt();
        }, FlatKernel.Entry);
        Assert.That(code, Has.Length.LessThan(CodeBytes));
        byte[] image = new byte[CodeBytes + table.Length];
        code.CopyTo(image, 0);
        table.CopyTo(image, CodeBytes);
        return FlatKernel.Wrap(image);
    }

    private static byte[] Table(Random random, int cases)
    {
        using var table = new MemoryStream();
        Span<byte> header = stackalloc byte[28];
        foreach ((ulong control, ulong input, uint destination, byte[] bytes, uint spin) in Script(random).Take(cases))
        {
            BinaryPrimitives.WriteUInt64LittleEndian(header, control);
            BinaryPrimitives.WriteUInt64LittleEndian(header[8..], input);
            BinaryPrimitives.WriteUInt32LittleEndian(header[16..], destination);
            BinaryPrimitives.WriteUInt32LittleEndian(header[20..], (uint)bytes.Length / 4);
            BinaryPrimitives.WriteUInt32LittleEndian(header[24..], spin);
            table.Write(header);
            table.Write(bytes);
        }

        return table.ToArray();
    }

    private const ulong Fast = 1UL << 16;

    /// <summary>LOOP iterations that outlast the scheduler's quantum (100,000 instructions in <see cref="TestMachine"/>).</summary>
    private const uint QuantumSpin = 150_000;

    private static ulong Rep(int count, int start = 0) => ((ulong)(uint)count << 32) | ((ulong)(uint)start << 48);

    /// <summary>
    /// Cases without end: mostly single random cases; one time in four a coherent script (a GPADL over ring pages, an
    /// open of a channel on it, then packets in its outbound ring, each followed by a signal), so that the devices
    /// parse rings, with a mutation here and there.
    /// </summary>
    private static IEnumerable<(ulong Control, ulong Input, uint Destination, byte[] Bytes, uint Spin)> Script(Random random)
    {
        while (true)
        {
            if (random.Next(4) != 0)
            {
                (ulong control, ulong input, uint destination, byte[] bytes) = Case(random);
                yield return (control, input, destination, bytes, 0);
                continue;
            }

            uint id = (uint)random.Next(1, 1000);
            int pages = 4 + random.Next(13);
            int first = random.Next(RingPages - pages);
            int inbound = 2 + random.Next(pages - 3);
            uint relid = (uint)random.Next(1, 4);
            byte[] gpadl = new byte[8 + 8 * pages];
            BinaryPrimitives.WriteUInt32LittleEndian(gpadl, id);
            BinaryPrimitives.WriteUInt32LittleEndian(gpadl.AsSpan(4), (uint)pages);
            for (int i = 0; i < pages; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(gpadl.AsSpan(8 + 8 * i), RingArea / 4096 + (ulong)(first + i));
            }

            yield return (HvCallCode.CreateGpadl | Rep(pages), InputPage, InputPage, gpadl, 0);
            byte[] open = ChannelMessage(random);
            BinaryPrimitives.WriteUInt32LittleEndian(open, 1);
            BinaryPrimitives.WriteUInt32LittleEndian(open.AsSpan(4), 0);
            BinaryPrimitives.WriteUInt32LittleEndian(open.AsSpan(8), VmBusProtocol.HvMessageType);
            BinaryPrimitives.WriteUInt32LittleEndian(open.AsSpan(12), VmBusProtocol.OpenSize);
            BinaryPrimitives.WriteUInt32LittleEndian(open.AsSpan(16), VmBusProtocol.OpenChannel);
            BinaryPrimitives.WriteUInt32LittleEndian(open.AsSpan(24), relid);
            BinaryPrimitives.WriteUInt32LittleEndian(open.AsSpan(32), id);
            BinaryPrimitives.WriteUInt32LittleEndian(open.AsSpan(36), (uint)inbound);
            yield return (HvCallCode.PostMessage, InputPage, InputPage, open, QuantumSpin);
            for (int packets = random.Next(1, 12); packets > 0; packets--)
            {
                // The outbound ring: its control page first, then (inbound - 1) data pages.
                uint control = RingArea + (uint)first * 4096;
                byte[] ring = OutboundRing(random, (inbound - 1) * 4096);
                yield return (HvCallCode.SignalEvent | Fast, VmBusProtocol.ChannelConnectionBase + relid, control, ring, QuantumSpin);
            }
        }
    }

    /// <summary>
    /// An outbound ring's control page (write and read index) and the start of its data, one page further: a few
    /// data-in-band packets with random payloads (requests to whichever device the channel has), now and then one
    /// field of a descriptor or an index made wild. The indices start at 0, so the packets are where the device reads.
    /// </summary>
    private static byte[] OutboundRing(Random random, int dataBytes)
    {
        var data = new List<byte>();
        for (int n = random.Next(1, 4); n > 0; n--)
        {
            int payload = 8 * random.Next(0, 12);
            byte[] packet = Bytes(random, 16 + payload);
            BinaryPrimitives.WriteUInt16LittleEndian(packet, PacketDescriptor.DataInband);
            BinaryPrimitives.WriteUInt16LittleEndian(packet.AsSpan(2), 2);
            BinaryPrimitives.WriteUInt16LittleEndian(packet.AsSpan(4), (ushort)(packet.Length / 8));
            BinaryPrimitives.WriteUInt16LittleEndian(packet.AsSpan(6), (ushort)random.Next(2));
            if (random.Next(4) == 0)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(packet.AsSpan(2 * random.Next(4)), (ushort)random.Next(0x10000));
            }

            if (random.Next(2) == 0 && payload >= 8)
            {
                // Small values where the device's request type and lengths are likely to be.
                BinaryPrimitives.WriteUInt32LittleEndian(packet.AsSpan(16), (uint)random.Next(8));
                BinaryPrimitives.WriteUInt32LittleEndian(packet.AsSpan(20), (uint)random.Next(4) * 512);
            }

            data.AddRange(packet);
        }

        byte[] ring = new byte[4096 + data.Count];
        uint write = (uint)Math.Min(data.Count, dataBytes - 8);
        BinaryPrimitives.WriteUInt32LittleEndian(ring, random.Next(10) == 0 ? (uint)random.Next() : write);
        BinaryPrimitives.WriteUInt32LittleEndian(ring.AsSpan(4), random.Next(10) == 0 ? (uint)random.Next(dataBytes / 8) * 8 : 0);
        data.CopyTo(ring, 4096);
        return ring;
    }

    /// <summary>One case: the control word, the input register pair (a GPA, or a fast call's input), and the bytes to copy first.</summary>
    private static (ulong Control, ulong Input, uint Destination, byte[] Bytes) Case(Random random)
    {
        int kind = random.Next(100);
        uint offset = random.Next(8) == 0 ? (uint)random.Next(4096) : (uint)random.Next(64) * 8;
        return kind switch
        {
            < 25 => (HvCallCode.PostMessage | Odd(random), InputPage + offset, InputPage + offset, ChannelMessage(random)),
            < 45 => CreateGpadl(random, offset),
            < 50 => (HvCallCode.DeleteGpadl | Fast, (ulong)SmallId(random), InputPage, []),
            < 85 => RingThenSignal(random),
            _ => (Wild(random), ((ulong)(uint)random.Next() << 32) * (ulong)random.Next(2) | (uint)random.Next(), InputPage, Bytes(random, random.Next(64) * 4)),
        };
    }

    /// <summary>Mostly nothing; now and then a reserved bit, a fast or a rep form that the call does not take.</summary>
    private static ulong Odd(Random random) => random.Next(10) != 0 ? 0 : 1UL << random.Next(64);

    private static uint SmallId(Random random) => random.Next(8) == 0 ? (uint)random.Next() : (uint)random.Next(1, 5);

    private static ulong Wild(Random random)
    {
        ushort[] codes = [HvCallCode.PostMessage, HvCallCode.SignalEvent, HvCallCode.CreateGpadl, HvCallCode.DeleteGpadl, HvCallCode.CreatePartition,
            HvCallCode.MapGpaPages, (ushort)random.Next(0x10000)];
        ulong control = codes[random.Next(codes.Length)];
        return control | (random.Next(2) == 0 ? (ulong)random.NextInt64() & ~0xFFFFUL : 0);
    }

    /// <summary>A HvPostMessage input block: { connection, reserved, type, size, payload }, the payload a VMBus message.</summary>
    private static byte[] ChannelMessage(Random random)
    {
        byte[] block = Bytes(random, 16 + 240);
        Span<byte> b = block;
        int size = random.Next(4) == 0 ? random.Next(300) : 24;
        BinaryPrimitives.WriteUInt32LittleEndian(b, random.Next(10) == 0 ? (uint)random.Next() : 1);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], random.Next(10) == 0 ? (uint)random.Next() : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], random.Next(10) == 0 ? (uint)random.Next() : VmBusProtocol.HvMessageType);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], (uint)size);
        uint[] types = [VmBusProtocol.RequestOffers, VmBusProtocol.OpenChannel, VmBusProtocol.OpenChannel, VmBusProtocol.CloseChannel, (uint)random.Next(16), (uint)random.Next()];
        BinaryPrimitives.WriteUInt32LittleEndian(b[16..], types[random.Next(types.Length)]);
        BinaryPrimitives.WriteUInt32LittleEndian(b[24..], SmallId(random));                                      // relid
        BinaryPrimitives.WriteUInt32LittleEndian(b[32..], SmallId(random));                                      // GPADL
        BinaryPrimitives.WriteUInt32LittleEndian(b[36..], random.Next(8) == 0 ? (uint)random.Next() : (uint)random.Next(18)); // inbound page
        return block;
    }

    /// <summary>HvCallCreateGpadl: { id, page count } and a page number per rep, mostly 4 to 16 pages of the ring area.</summary>
    private static (ulong, ulong, uint, byte[]) CreateGpadl(Random random, uint offset)
    {
        int count = random.Next(10) == 0 ? random.Next(600) : 4 + random.Next(13);
        int declared = random.Next(10) == 0 ? random.Next(20) : count;
        offset &= ~7u;
        int room = (int)(4096 - offset) / 8 - 1;
        byte[] block = new byte[8 + 8 * Math.Clamp(count, 0, Math.Max(room, 0))];
        BinaryPrimitives.WriteUInt32LittleEndian(block, SmallId(random));
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(4), (uint)declared);
        int first = random.Next(RingPages);
        for (int i = 8; i + 8 <= block.Length; i += 8)
        {
            ulong page = random.Next(16) == 0 ? (random.Next(4) == 0 ? (ulong)random.NextInt64() : (ulong)random.Next(1024)) : RingArea / 4096 + (ulong)((first + i / 8) % RingPages);
            BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(i), page);
        }

        int start = random.Next(10) == 0 ? random.Next(count + 1) : 0;
        return (HvCallCode.CreateGpadl | Rep(count, start) | Odd(random), InputPage + offset, InputPage + offset, block);
    }

    /// <summary>
    /// Random bytes over one ring-area page, made to look like a ring's control page or its packets now and then
    /// (aligned indices, descriptors of data-in-band packets with completions requested), then HvSignalEvent
    /// (fast) on a channel's connection.
    /// </summary>
    private static (ulong, ulong, uint, byte[]) RingThenSignal(Random random)
    {
        uint page = (uint)random.Next(RingPages);
        byte[] bytes;
        if (random.Next(2) == 0)
        {
            bytes = new byte[16];
            uint span = (uint)random.Next(1, 8) * 4096;
            BinaryPrimitives.WriteUInt32LittleEndian(bytes, random.Next(8) == 0 ? (uint)random.Next() : (uint)random.Next((int)span / 8) * 8);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), random.Next(4) == 0 ? (uint)random.Next((int)span / 8) * 8 : 0);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), (uint)random.Next(2));
        }
        else
        {
            bytes = Bytes(random, 8 * random.Next(2, 64));
            for (int at = 0; at + 16 <= bytes.Length; at += 8 * random.Next(2, 16))
            {
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at), random.Next(4) == 0 ? (ushort)random.Next(0x10000) : PacketDescriptor.DataInband);
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at + 2), random.Next(8) == 0 ? (ushort)random.Next(0x10000) : (ushort)2);
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at + 4), (ushort)random.Next(2, random.Next(4) == 0 ? 0x10000 : 40));
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at + 6), PacketDescriptor.CompletionRequested);
            }
        }

        uint destination = RingArea + page * 4096 + (random.Next(2) == 0 ? 0 : (uint)random.Next(4096 - bytes.Length) & ~3u);
        uint connection = random.Next(10) == 0 ? (uint)random.Next() : VmBusProtocol.ChannelConnectionBase + (uint)random.Next(1, 4);
        return (HvCallCode.SignalEvent | Fast, connection, destination, bytes);
    }

    private static byte[] Bytes(Random random, int length)
    {
        byte[] bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }
}
