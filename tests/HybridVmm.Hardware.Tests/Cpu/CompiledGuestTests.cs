using HybridVmm.Hardware.Cpu;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Runs real gcc -m32 -O2 -march=i686 output (Guests/integer-workload.c, prebuilt to a flat binary) and
/// checks its results against values computed here and, when libunicorn is installed, against Unicorn.
/// </summary>
public class CompiledGuestTests
{
    private const uint LoadAddress = 0x10000;
    private const uint Entry = 0x102b0;
    private const uint HltAddress = 0x10549;
    private const uint Results = 0x12020;
    private const int ResultCount = 25;

    private static byte[] Image()
    {
        using Stream stream = typeof(CompiledGuestTests).Assembly.GetManifestResourceStream("integer-workload.bin")!;
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    private static uint[] RunOnCore(out TestMachine m)
    {
        m = new TestMachine();
        m.WriteBytes(LoadAddress, Image());
        m.Cpu.Eip = Entry;
        m.RunToHalt(50_000_000);
        Assert.That(m.Cpu.Eip, Is.EqualTo(HltAddress + 1));
        var results = new uint[ResultCount];
        for (int i = 0; i < ResultCount; i++) results[i] = m.Read32(Results + (uint)(4 * i));
        return results;
    }

    [Test]
    public void GccCompiledWorkloadProducesExpectedResults()
    {
        uint[] r = RunOnCore(out _);

        var table = new byte[1024];
        for (uint i = 0; i < 256; i++) BitConverter.GetBytes(i * 2654435761u).CopyTo(table, (int)(4 * i));
        uint crc = 0xffffffff;
        foreach (byte b in table.AsSpan(0, 1017))
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (uint)-(int)(crc & 1));
        }
        int[] sorted = [5, -3, 99, unchecked((int)(0x11223344u ^ 0x80010001u)), int.MinValue, int.MaxValue, 7, 7, -1, 42, 13, -13];
        Array.Sort(sorted);

        Assert.Multiple(() =>
        {
            Assert.That(r[0], Is.EqualTo(~crc), "crc32");
            Assert.That(r.Skip(1).Take(12).Select(v => (int)v), Is.EqualTo(sorted), "insertion sort");
            Assert.That(r[21], Is.EqualTo(0x44332211), "bswap");
            Assert.That(r[24], Is.EqualTo(16), "popcount (libgcc)");
        });
    }

    [Test]
    public void GccCompiledWorkloadMatchesUnicorn()
    {
        using Unicorn? unicorn = Unicorn.TryCreate();
        if (unicorn is null) Assert.Ignore("libunicorn.so.2 not available");
        uint[] core = RunOnCore(out TestMachine m);

        unicorn.Write(LoadAddress, Image());
        unicorn.SetReg(Unicorn.RegEsp, TestMachine.StackTop);
        unicorn.SetReg(Unicorn.RegEflags, 2);
        Assert.That(unicorn.Run(Entry, HltAddress, 0), Is.True);
        byte[] bytes = unicorn.Read(Results, 4 * ResultCount);
        uint[] reference = Enumerable.Range(0, ResultCount).Select(i => BitConverter.ToUInt32(bytes, 4 * i)).ToArray();
        Assert.That(core, Is.EqualTo(reference));
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(unicorn.GetReg(Unicorn.RegEsp)));
        TestContext.Out.WriteLine($"{m.Cpu.InstructionsRetired:N0} instructions retired");
    }
}
