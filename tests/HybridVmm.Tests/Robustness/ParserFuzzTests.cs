using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Loader;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Robustness;

/// <summary>
/// Issue 14, item 4: a seeded in-process mutation fuzzer over the parsers of host input (docs/robustness.md). Each
/// target starts from real, valid input and mutates it (random bytes, extreme values written over the fields that
/// hold lengths and counts, truncation, spliced or inserted blocks), resealing checksums as anyone can. The only
/// allowed outcomes are a correct load or a refusal with one non-empty line; an exception escaping is a finding.
/// The suite runs a fixed seed and budget; a soak sets HYBRIDVMM_ROBUSTNESS_CASES (cases per target) and
/// HYBRIDVMM_ROBUSTNESS_SEED, and a failure names the seed and case to replay.
/// </summary>
public class ParserFuzzTests
{
    private static int Cases => int.TryParse(Environment.GetEnvironmentVariable("HYBRIDVMM_ROBUSTNESS_CASES"), out int n) && n > 0 ? n : 1500;

    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("HYBRIDVMM_ROBUSTNESS_SEED"), out int s) ? s : 20261205;

    private static string VersionTwoFile => Path.Combine(Repository.Root, "tests", "HybridVmm.Tests", "Encapsulation", "Fixtures", "enlcon-v2.snap");

    [Test]
    public void SnapshotsOfFormatThreeAreReadOrRefusedNeverThrow()
    {
        byte[] original = SavedEnlightened();
        // Where the lengths and counts are: the start of every chunk's payload, and the table.
        SavedStateContainerReader reader = SavedStateContainerReader.TryOpen(new MemoryStream(original), out _)!;
        var focus = reader.Chunks.Select(c => ((int)c.Offset, (int)Math.Min(c.Length, 64))).ToList();
        int table = (int)BinaryPrimitives.ReadInt64LittleEndian(original.AsSpan(original.Length - 48));
        focus.Add((table, original.Length - 48 - table));

        Fuzz("snapshot v3", original, focus, file => file.Length >= 48 ? ResealV3(file) : file, file =>
        {
            VmSnapshot? snapshot = SnapshotFormat.TryDeserialize(file, out string error);
            return (snapshot is not null, error, snapshot);
        }, restoreEvery: 8);
    }

    [Test]
    public void SnapshotsOfFormatTwoAreReadOrRefusedNeverThrow()
    {
        byte[] original = File.ReadAllBytes(VersionTwoFile);
        Fuzz("snapshot v2", original, [(0, 56), (56, Math.Min(2048, original.Length - 56))], file => file.Length >= 56 ? ResealV2(file) : file, file =>
        {
            VmSnapshot? snapshot = SnapshotFormat.TryDeserialize(file, out string error);
            return (snapshot is not null, error, snapshot);
        }, restoreEvery: 8);
    }

    [Test]
    public void MultibootAndElfImagesLoadOrAreRefusedNeverThrow()
    {
        foreach (string guest in new[] { "hello", "asmhello" })
        {
            byte[] original = Repository.ReadGuest(guest);
            // The ELF header and program headers, and the Multiboot header wherever it is in the first 8 KiB.
            int multiboot = FindMultibootHeader(original);
            Fuzz($"multiboot {guest}", original, [(0, 52), (BinaryPrimitives.ReadInt32LittleEndian(original.AsSpan(0x1C)), 32 * 4), (multiboot, 48)], f => f, file =>
            {
                var config = new VmConfiguration { Name = "fuzz", Image = file, MemoryBytes = 4u << 20 };
                bool loaded = RootPartition.Prepare(config, out VmCreationError? error) is not null;
                return (loaded, error?.Message ?? "", null);
            });
        }
    }

    [Test]
    public void LinuxBzImagesLoadOrAreRefusedNeverThrow()
    {
        byte[] original = LinuxBootTests.BzImageWith([0xF4, 0x90, 0x90, 0x90]);
        Fuzz("bzImage", original, [(0x1F0, 0x80)], f => f, file =>
        {
            var config = new VmConfiguration { Name = "fuzz", Image = file, MemoryBytes = 64u << 20, CommandLine = "console=ttyS0" };
            bool loaded = RootPartition.Prepare(config, out VmCreationError? error) is not null;
            return (loaded, error?.Message ?? "", null);
        });
    }

    /// <summary>The fast boot's parsers: the setup header's payload fields, the XZ stream and the vmlinux inside it.</summary>
    [Test]
    public void LinuxPayloadsOfTheFastBootLoadOrAreRefusedNeverThrow()
    {
        byte[] payload = LinuxFastBootTests.TinyPayload;
        byte[] original = LinuxFastBootTests.BzImageWithPayload(payload);
        int payloadAt = original.Length - payload.Length;
        Fuzz("bzImage payload", original, [(0x1F0, 0x80), (payloadAt, payload.Length)], f => f, file =>
        {
            var config = new VmConfiguration { Name = "fuzz", Image = file, MemoryBytes = 64u << 20, CommandLine = "console=ttyS0", LinuxBoot = LinuxBootPath.Fast };
            bool loaded = RootPartition.Prepare(config, out VmCreationError? error) is not null;
            return (loaded, error?.Message ?? "", null);
        });
    }

    [Test]
    public void VmlinuxImagesLoadOrAreRefusedNeverThrow()
    {
        byte[] original = LinuxFastBootTests.TinyVmlinux();
        // The ELF header, the two program headers and the "Linux" note.
        Fuzz("vmlinux", original, [(0, 52), (52, 64), (0x100, 24)], f => f, file =>
        {
            var config = new VmConfiguration { Name = "fuzz", Image = file, MemoryBytes = 64u << 20, CommandLine = "console=ttyS0" };
            bool loaded = RootPartition.Prepare(config, out VmCreationError? error) is not null;
            return (loaded, error?.Message ?? "", null);
        });
    }

    /// <summary>Bytes over a real loopback connection to the receiver of a live migration: a refusal with a reason, or a VM.</summary>
    [Test]
    public async Task MigrationStreamsAreReceivedOrRefusedNeverThrow()
    {
        byte[] final = SnapshotFormat.Serialize(SnapshotFormat.TryDeserialize(SavedEnlightened(), out _)!);
        byte[] pages = new byte[4 + 2 * (4 + 4096)];
        BinaryPrimitives.WriteInt32LittleEndian(pages, 2);
        BinaryPrimitives.WriteUInt32LittleEndian(pages.AsSpan(4), 3);
        BinaryPrimitives.WriteUInt32LittleEndian(pages.AsSpan(4 + 4100), 7);
        byte[] hello = MigrationProtocol.Hello(new VmConfiguration { Name = "enlcon", Image = [], MemoryBytes = 4u << 20 });
        byte[] original = [.. Crafted.Frame(MigrationProtocol.FrameType.Hello, hello), .. Crafted.Frame(MigrationProtocol.FrameType.Pages, pages),
            .. Crafted.Frame(MigrationProtocol.FrameType.Final, final)];
        int finalAt = original.Length - final.Length;
        int table = finalAt + (int)BinaryPrimitives.ReadInt64LittleEndian(final.AsSpan(final.Length - 48));
        var focus = new List<(int, int)> { (0, 5 + hello.Length + 5 + 4 + 4), (finalAt - 5, 5 + 64), (table, original.Length - 48 - table) };
        int cases = Math.Max(50, Cases / 10); // each case is a connection
        var random = new Random(Seed);
        int refused = 0, received = 0;
        for (int i = 0; i < cases; i++)
        {
            byte[] stream = Mutate(original, focus, random);
            if (stream.Length > finalAt + 48)
            {
                ResealV3Span(stream.AsSpan(finalAt));
            }

            // The source's Commit follows the target's Resumed: without it the target discards the VM it restored.
            (VmSnapshot? _, string? error, Exception? thrown) = await Crafted.ReceiveCrafted([.. stream, .. Crafted.Frame(MigrationProtocol.FrameType.Commit, [])], acceptVm: true);
            Assert.That(thrown, Is.Null, $"migration case {i} (seed {Seed}) threw: {thrown}");
            if (error is null)
            {
                received++;
            }
            else
            {
                Assert.That(error, Is.Not.Empty.And.Not.Contains("\n"), $"migration case {i} (seed {Seed})");
                refused++;
            }
        }

        TestContext.Out.WriteLine($"migration: {cases} streams over loopback, {refused} refused, {received} received");
        Assert.That(refused, Is.GreaterThan(0));
    }

    /// <summary>
    /// What a connection sends a receiver's handshake, over a real loopback connection: mutations of a Response with a
    /// made-up MAC. Nothing throws, and nothing authenticates without the token (a forged response is refused).
    /// </summary>
    [Test]
    public async Task HandshakeResponsesAreRefusedNeverThrowAndNeverAuthenticateWithoutTheToken()
    {
        byte[] key = MigrationHandshake.Key("the-receivers-token-0123456789");
        byte[] original = Crafted.Frame(MigrationProtocol.FrameType.Response, RandomNumberGenerator.GetBytes(2 * MigrationHandshake.NonceBytes));
        var focus = new List<(int, int)> { (0, original.Length) };
        int cases = Math.Max(50, Cases / 10);
        var random = new Random(Seed ^ 0x48616E64);
        var outcomes = new Dictionary<HandshakeOutcome, int>();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        for (int i = 0; i < cases; i++)
        {
            byte[] bytes = Mutate(original, focus, random);
            Task<TcpClient> accepting = listener.AcceptTcpClientAsync();
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            using TcpClient accepted = await accepting;
            try
            {
                await client.GetStream().WriteAsync(bytes);
                client.Client.Shutdown(SocketShutdown.Send);
            }
            catch (IOException)
            {
            }

            HandshakeResult result = null!;
            Assert.DoesNotThrowAsync(async () => result = await MigrationHandshake.AcceptAsync(accepted.GetStream(), key, TimeSpan.FromSeconds(10), CancellationToken.None),
                $"handshake case {i} (seed {Seed})");
            Assert.That(result.Outcome, Is.Not.EqualTo(HandshakeOutcome.Authenticated), $"handshake case {i} (seed {Seed}) authenticated without the token");
            Assert.That(result.Reason, Is.Not.Empty.And.Not.Contains("\n"), $"handshake case {i} (seed {Seed})");
            outcomes[result.Outcome] = outcomes.GetValueOrDefault(result.Outcome) + 1;
        }

        TestContext.Out.WriteLine($"handshake: {cases} connections, {string.Join(", ", outcomes.Select(o => $"{o.Value} {o.Key}"))}");
    }

    private static void Fuzz(string target, byte[] original, IReadOnlyList<(int Offset, int Length)> focus, Func<byte[], byte[]> reseal,
        Func<byte[], (bool Loaded, string Error, VmSnapshot? Snapshot)> parse, int restoreEvery = 0)
    {
        var random = new Random(Seed ^ target.GetHashCode(StringComparison.Ordinal));
        int refused = 0, loaded = 0, restored = 0;
        for (int i = 0; i < Cases; i++)
        {
            byte[] file = reseal(Mutate(original, focus, random));
            (bool Loaded, string Error, VmSnapshot? Snapshot) outcome = default;
            Assert.DoesNotThrow(() => outcome = parse(file), $"{target} case {i} (HYBRIDVMM_ROBUSTNESS_SEED={Seed}) threw");
            if (!outcome.Loaded)
            {
                Assert.That(outcome.Error, Is.Not.Empty.And.Not.Contains("\n"), $"{target} case {i} (seed {Seed})");
                refused++;
                continue;
            }

            loaded++;
            if (outcome.Snapshot is { } snapshot && restoreEvery > 0 && loaded % restoreEvery == 0)
            {
                // A snapshot that reads must also restore, or be refused by the root with a reason.
                using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 16L << 20 }, new CapturingConsole(), new TraceRecorder(null));
                VmCreationError? error = null;
                Assert.DoesNotThrow(() => system.Root.RestoreVm(snapshot, out error), $"{target} case {i} (seed {Seed}): restoring threw");
                Assert.That(error?.Message ?? "restored", Is.Not.Empty);
                restored++;
            }
        }

        TestContext.Out.WriteLine($"{target}: {Cases} cases, {refused} refused, {loaded} loaded ({restored} of them restored as well)");
        Assert.That(refused, Is.GreaterThan(0), "the mutations reach the checks");
    }

    /// <summary>One mutation: random bytes, an extreme value over a length or count, truncation, a spliced or inserted block.</summary>
    internal static byte[] Mutate(byte[] original, IReadOnlyList<(int Offset, int Length)> focus, Random random)
    {
        byte[] file = (byte[])original.Clone();
        int At() => random.Next(4) == 0 || focus.Count == 0
            ? random.Next(file.Length)
            : focus[random.Next(focus.Count)] is var (offset, length) ? Math.Clamp(offset + random.Next(Math.Max(1, length)), 0, file.Length - 1) : 0;
        for (int m = 1 + random.Next(3); m > 0; m--)
        {
            switch (random.Next(6))
            {
                case 0:
                    for (int k = random.Next(1, 8); k > 0; k--)
                    {
                        file[At()] = (byte)random.Next(256);
                    }

                    break;
                case 1:
                case 2:
                    uint[] extremes = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFE, (uint)file.Length, (uint)file.Length + 1, 4096];
                    int at = At() & ~(random.Next(2) * 3);
                    if (at + 4 <= file.Length)
                    {
                        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at), extremes[random.Next(extremes.Length)]);
                    }

                    break;
                case 3:
                    file[At()] ^= (byte)(1 << random.Next(8));
                    break;
                case 4:
                    int from = random.Next(file.Length), to = At(), count = random.Next(1, 64);
                    count = Math.Min(count, Math.Min(file.Length - from, file.Length - to));
                    Array.Copy(file, from, file, to, count);
                    break;
                default:
                    int where = At();
                    byte[] inserted = new byte[random.Next(1, 16)];
                    random.NextBytes(inserted);
                    file = [.. file.AsSpan(0, where), .. inserted, .. file.AsSpan(where)];
                    break;
            }
        }

        return random.Next(10) == 0 ? file[..random.Next(file.Length)] : file;
    }

    private static int FindMultibootHeader(byte[] image)
    {
        for (int at = 0; at + 4 <= Math.Min(image.Length, 8192); at += 4)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(at)) == 0x1BADB002)
            {
                return at;
            }
        }

        return 0;
    }

    private static byte[] ResealV3(byte[] file)
    {
        ResealV3Span(file);
        return file;
    }

    private static void ResealV3Span(Span<byte> file) => SHA256.HashData(file[..^32]).CopyTo(file[^32..]);

    private static byte[] ResealV2(byte[] file)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(16), (ulong)(file.Length - 56));
        SHA256.HashData(file.AsSpan(56)).CopyTo(file, 24);
        return file;
    }

    /// <summary>A guest with a synthetic console (VMBus channel, SynIC, GPADLs), saved mid-output: every codec has state to mutate.</summary>
    private static byte[] SavedEnlightened()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration
        {
            Name = "enlcon", Image = Repository.ReadGuest("enlcon"), MemoryBytes = 4u << 20, CommandLine = "synth", SyntheticDevices = ["synthcon"],
        });
        machine.System.Root.PauseAtInstruction(vm, 250_000);
        machine.RunAsync().GetAwaiter().GetResult();
        return SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm));
    }

    private static class Crafted
    {
        public static byte[] Frame(MigrationProtocol.FrameType type, byte[] payload) => Encapsulation.CraftedInputTests.Frame(type, payload);

        public static Task<(VmSnapshot? Unused, string? Error, Exception? Thrown)> ReceiveCrafted(byte[] bytes, bool acceptVm) =>
            Encapsulation.CraftedInputTests.ReceiveCrafted(bytes, acceptVm);
    }
}
