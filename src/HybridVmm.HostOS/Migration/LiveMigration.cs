using System.Diagnostics;
using System.Net.Sockets;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using static HybridVmm.HostOS.Migration.MigrationProtocol;

namespace HybridVmm.HostOS.Migration;

/// <summary>Pre-copy tuning. Virtual time models the link: each 4 KiB page takes <see cref="TicksPerPage"/> ticks on the wire.</summary>
public sealed record MigrationOptions
{
    /// <summary>Stop pre-copy once a round leaves at most this many dirty pages.</summary>
    public int ConvergedPages { get; init; } = 64;

    public int MaxRounds { get; init; } = 8;

    /// <summary>About 1 GiB/s: a page every 4 us of virtual time.</summary>
    public long TicksPerPage { get; init; } = 4_096;

    /// <summary>The guest runs at least this long between two rounds.</summary>
    public long MinimumWindowTicks { get; init; } = 50_000;

    /// <summary>
    /// How long the source waits for the target to take a frame or to answer the final state (wall-clock time, issue 14
    /// defect 7): the guest is paused meanwhile, so a stalled target must not hold it forever. Past it the migration
    /// fails and the guest resumes on the source.
    /// </summary>
    public TimeSpan PeerTimeout { get; init; } = DefaultPeerTimeout;

    public static readonly TimeSpan DefaultPeerTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Told after each frame of pages and the final state has gone to the target (a status line); it must not touch the VM.</summary>
    public Action<MigrationProgress>? Progress { get; init; }
}

/// <summary>Where a migration's transfer is: the phase, the pre-copy round, and the pages and bytes moved so far.</summary>
public sealed record MigrationProgress(MigrationPhase Phase, int Round, long Pages, long Bytes);

public enum MigrationPhase
{
    /// <summary>A pre-copy round has gone (the source), or pages are arriving (the target).</summary>
    PreCopy,

    /// <summary>The final state, with the last dirty pages, has gone (the source) or arrived (the target).</summary>
    Final,
}

/// <summary>What a migration did: pre-copy rounds, pages per round, the final stop-and-copy and the downtime.</summary>
public sealed record MigrationReport(
    bool Succeeded,
    string? Failure,
    IReadOnlyList<int> PagesPerRound,
    int FinalPages,
    long DowntimeTicks,
    TimeSpan DowntimeWallTime,
    long PausedAtInstruction)
{
    /// <summary>The peers did not authenticate each other (<see cref="MigrationHandshake"/>): nothing was sent.</summary>
    public bool Refused { get; init; }
}

/// <summary>
/// Live migration of one VM to another hypervisor over a stream (TCP on loopback between two processes, or
/// in memory between two hosts of one cluster). Pre-copy rounds track dirty pages by write-protecting RAM
/// through the second-level translation; when a round leaves few enough dirty pages, or stops shrinking,
/// the VM is paused and the rest, with vCPU and device state, goes in one final snapshot. A failure at any
/// point leaves the VM on the source, where it resumes.
/// </summary>
public static class LiveMigration
{
    /// <summary>Migrates a paused VM. On success the source VM is stopped; on failure it is left paused, untracked, ready to resume.</summary>
    public static Task<MigrationReport> SendAsync(HybridSystem system, VirtualMachine vm, Stream target, MigrationOptions options, CancellationToken cancellationToken = default) =>
        SendAsync(MigrationHost.Driven(system), vm, target, options, cancellationToken);

    /// <summary>
    /// Migrates a paused VM of <paramref name="host"/>. On success the source VM is stopped; on failure it is left
    /// paused, untracked, ready to resume. Every step that touches the VM runs at one of the host's barriers.
    /// </summary>
    public static async Task<MigrationReport> SendAsync(MigrationHost host, VirtualMachine vm, Stream target, MigrationOptions options, CancellationToken cancellationToken = default)
    {
        HybridSystem system = host.System;
        var rounds = new List<int>();
        try
        {
            await SendBeforeDeadline(target, FrameType.Hello, Hello(vm.Configuration), options.PeerTimeout, cancellationToken);
            List<SavedPage> pages = await host.AtBarrierAsync(() =>
            {
                system.Root.StartDirtyTracking(vm);
                return system.Root.ReadNonZeroPages(vm);
            }, cancellationToken);
            List<uint> dirty;
            long pagesSent = 0, bytesSent = 0;
            while (true)
            {
                byte[] frame = Pages(pages);
                await SendBeforeDeadline(target, FrameType.Pages, frame, options.PeerTimeout, cancellationToken);
                await ThrowIfRefused(target, options.PeerTimeout, cancellationToken);
                rounds.Add(pages.Count);
                (pagesSent, bytesSent) = (pagesSent + pages.Count, bytesSent + frame.Length);
                options.Progress?.Invoke(new MigrationProgress(MigrationPhase.PreCopy, rounds.Count, pagesSent, bytesSent));
                int round = rounds.Count, sent = pages.Count;
                await host.AtBarrierAsync(() => Record(system, vm, $"migration pre-copy round {round}: {sent} pages sent"), cancellationToken);

                // The guest keeps running while the round is on the wire.
                await host.RunForAsync(vm, Math.Max(options.MinimumWindowTicks, pages.Count * options.TicksPerPage), cancellationToken);
                if (vm.State == PartitionState.Stopped)
                {
                    return new MigrationReport(false, "the guest finished on the source before pre-copy converged", rounds, 0, 0, TimeSpan.Zero, 0);
                }

                dirty = await host.AtBarrierAsync(() => system.Root.CollectDirtyPages(vm), cancellationToken);
                bool converged = dirty.Count <= options.ConvergedPages;
                bool stalled = dirty.Count * 10 >= pages.Count * 9;
                if (converged || stalled || rounds.Count >= options.MaxRounds)
                {
                    break;
                }

                List<uint> again = dirty;
                pages = await host.AtBarrierAsync(() => system.Root.ReadPages(vm, again), cancellationToken);
            }

            // Stop-and-copy: the VM stays paused from here until the target resumes it. The final state is the
            // snapshot container: every component's chunk, as a snapshot file holds it, with the last dirty pages.
            var downtime = Stopwatch.StartNew();
            List<uint> last = dirty;
            VmSnapshot final = await host.AtBarrierAsync(() => host.Finishing(vm, system.Root.CaptureSnapshot(vm, last)), cancellationToken);
            byte[] state = SnapshotFormat.Serialize(final);
            await SendBeforeDeadline(target, FrameType.Final, state, options.PeerTimeout, cancellationToken);
            options.Progress?.Invoke(new MigrationProgress(MigrationPhase.Final, rounds.Count, pagesSent + last.Count, bytesSent + state.Length));
            (FrameType type, byte[] answer) = await BeforeDeadline(t => ReadFrameAsync(target, t), options.PeerTimeout, cancellationToken);
            downtime.Stop();
            if (type != FrameType.Resumed)
            {
                throw new IOException(type == FrameType.Failed ? $"the target refused the VM: {PeerText(answer)}" : $"unexpected {type} frame");
            }

            // From here the target runs the VM and this copy stops. Until the Commit is out, a failure leaves it here.
            await SendBeforeDeadline(target, FrameType.Commit, Array.Empty<byte>(), options.PeerTimeout, cancellationToken);

            long downtimeTicks = (state.Length + 4095) / 4096 * options.TicksPerPage;
            long at = vm.Statistics.InstructionsRetired;
            await host.AtBarrierAsync(() =>
            {
                Record(system, vm, $"migrated: {last.Count} pages and device state in the final copy, resumed on the target");
                system.Root.StopDirtyTracking(vm);
                system.Root.Stop(vm);
                host.Departed(vm);
                return true;
            }, CancellationToken.None);
            return new MigrationReport(true, null, rounds, dirty.Count, downtimeTicks, downtime.Elapsed, at);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or EndOfStreamException or InvalidDataException or TimeoutException)
        {
            // Not the caller's token: the VM must be left untracked whatever ended the migration.
            await host.AtBarrierAsync(() =>
            {
                if (vm.State != PartitionState.Stopped)
                {
                    system.Root.StopDirtyTracking(vm);
                }

                return Record(system, vm, "migration failed; the VM stays on the source");
            }, CancellationToken.None);
            return new MigrationReport(false, e.Message, rounds, 0, 0, TimeSpan.Zero, 0);
        }
    }

    /// <summary>
    /// Connects to a migration target (<c>receive</c>, or a serve with <c>--migration-listen</c>) at
    /// <paramref name="target"/>, proves the token both hold (<see cref="MigrationHandshake"/>; nothing of the guest is
    /// sent before that), then migrates the paused VM. A target that cannot be reached or refuses is a failed report
    /// (<see cref="MigrationReport.Refused"/> when authentication failed), and the VM stays on the source.
    /// </summary>
    public static async Task<MigrationReport> ToAsync(MigrationHost host, VirtualMachine vm, System.Net.IPEndPoint target, byte[]? key, MigrationOptions options,
        CancellationToken cancellationToken = default)
    {
        static MigrationReport Failed(string reason) => new(false, reason, Array.Empty<int>(), 0, 0, TimeSpan.Zero, 0);
        using var client = new TcpClient();
        try
        {
            await BeforeDeadline(t => client.ConnectAsync(target, t).AsTask(), options.PeerTimeout, cancellationToken);
        }
        catch (Exception e) when (e is SocketException or TimeoutException)
        {
            return Failed($"cannot reach {target}: {e.Message}");
        }

        await using NetworkStream stream = client.GetStream();
        try
        {
            HandshakeResult handshake = await BeforeDeadline(t => MigrationHandshake.ConnectAsync(stream, key, t), options.PeerTimeout, cancellationToken);
            if (handshake.Outcome != HandshakeOutcome.Authenticated)
            {
                return Failed(handshake.Reason!) with { Refused = true };
            }
        }
        catch (Exception e) when (e is IOException or SocketException or InvalidDataException or ObjectDisposedException or TimeoutException)
        {
            return Failed($"the migration handshake with {target} failed: {e.Message}");
        }

        return await SendAsync(host, vm, stream, options, cancellationToken);
    }

    private static bool Record(HybridSystem system, VirtualMachine vm, string text)
    {
        system.Trace.Record(system.Kernel.Clock.Ticks, vm.Partition.Id, -1, TraceKind.Lifecycle, text);
        return true;
    }

    /// <summary>Runs one exchange with the peer, or throws <see cref="TimeoutException"/> when it takes longer than <paramref name="timeout"/>.</summary>
    /// <param name="late">The exception's message; by default the source's: the target did not answer within the timeout.</param>
    public static async Task<T> BeforeDeadline<T>(Func<CancellationToken, Task<T>> exchange, TimeSpan timeout, CancellationToken cancellationToken, string? late = null)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            return await exchange(deadline.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException(late ?? $"the target did not answer within {timeout.TotalSeconds:0.###} s (--migrate-timeout)");
        }
    }

    /// <summary>The most of a frame written under one deadline: a large page round on a slow but moving link is never
    /// cut off, while a target that stops reading is caught within one <c>--migrate-timeout</c>.</summary>
    public const int DeadlineChunkBytes = 256 << 10;

    /// <summary>
    /// Sends one frame, each <see cref="DeadlineChunkBytes"/> of it under its own deadline: the timeout bounds how long
    /// the target may take no data, not how long a 64 MiB round takes on the wire.
    /// </summary>
    public static async Task SendBeforeDeadline(Stream target, FrameType type, byte[] payload, TimeSpan timeout, CancellationToken cancellationToken)
    {
        byte[] header = FrameHeader(type, payload.Length);
        await BeforeDeadline(t => target.WriteAsync(header, t).AsTask(), timeout, cancellationToken);
        for (int offset = 0; offset < payload.Length; offset += DeadlineChunkBytes)
        {
            int from = offset;
            await BeforeDeadline(t => target.WriteAsync(payload.AsMemory(from, Math.Min(DeadlineChunkBytes, payload.Length - from)), t).AsTask(), timeout, cancellationToken);
        }

        await BeforeDeadline(t => target.FlushAsync(t), timeout, cancellationToken);
    }

    private static Task BeforeDeadline(Func<CancellationToken, Task> exchange, TimeSpan timeout, CancellationToken cancellationToken, string? late = null) =>
        BeforeDeadline(async t => { await exchange(t); return true; }, timeout, cancellationToken, late);

    /// <summary>
    /// The receiver's side of <see cref="SendBeforeDeadline"/>: reads one frame, its header and each
    /// <see cref="DeadlineChunkBytes"/> of its payload under its own deadline, so a source that stalls between frames or
    /// in the middle of one is given up after <paramref name="timeout"/> without data (<c>receive --peer-timeout</c>),
    /// while a large round on a slow but moving link is never cut off.
    /// </summary>
    public static async Task<(FrameType Type, byte[] Payload)> ReadFrameBeforeDeadline(Stream source, TimeSpan timeout, CancellationToken cancellationToken)
    {
        string late = $"the source sent nothing for {timeout.TotalSeconds:0.###} s (receive --peer-timeout)";
        byte[] header = new byte[5];
        await BeforeDeadline(t => source.ReadExactlyAsync(header, t).AsTask(), timeout, cancellationToken, late);
        (FrameType type, int length) = ReadFrameHeader(header);
        byte[] payload = new byte[length];
        for (int offset = 0; offset < length; offset += DeadlineChunkBytes)
        {
            int from = offset;
            await BeforeDeadline(t => source.ReadExactlyAsync(payload.AsMemory(from, Math.Min(DeadlineChunkBytes, length - from)), t).AsTask(), timeout, cancellationToken, late);
        }

        return (type, payload);
    }

    /// <summary>
    /// Migrates a paused VM between two hypervisors of this process over a TCP connection on loopback (the
    /// same wire path as between two processes). Returns the report and, on success, the VM on the target,
    /// created and not yet started.
    /// </summary>
    public static async Task<(MigrationReport Report, VirtualMachine? Moved)> OverLoopbackAsync(
        HybridSystem source, VirtualMachine vm, HybridSystem target, MigrationOptions options, CancellationToken cancellationToken = default)
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        Task<(VirtualMachine? Vm, string? Error)> receiving = Task.Run(async () =>
        {
            using TcpClient accepted = await listener.AcceptTcpClientAsync(cancellationToken);
            return await ReceiveAsync(target, accepted.GetStream(), cancellationToken);
        }, cancellationToken);

        MigrationReport report;
        using (var client = new TcpClient())
        {
            await client.ConnectAsync((System.Net.IPEndPoint)listener.LocalEndpoint, cancellationToken);
            report = await SendAsync(source, vm, client.GetStream(), options, cancellationToken);
        }

        (VirtualMachine? moved, string? error) = await receiving;
        return report.Succeeded && moved is null
            ? (report with { Succeeded = false, Failure = error }, null)
            : (report, moved);
    }

    /// <summary>
    /// Receives a VM; returns it created (not started) once the final state is in and the source has committed the
    /// hand-over, or null with a reason. A source that does not commit within <paramref name="peerTimeout"/> (30 s
    /// by default) kept its copy (it gave up waiting, or went away): the VM restored here is deleted.
    /// </summary>
    /// <param name="diskImage">This host's file behind the VM's synthblk disk (shared storage): the stream only refers to the
    /// disk by identity, which this file must match.</param>
    /// <param name="peerTimeout">How long the source may send nothing, between frames or within one, before the migration is
    /// given up (<c>receive --peer-timeout</c>, 30 s by default); also how long it has to commit the hand-over.</param>
    /// <param name="progress">Told as pages and the final state arrive (a status line).</param>
    public static Task<(VirtualMachine? Vm, string? Error)> ReceiveAsync(HybridSystem system, Stream source, CancellationToken cancellationToken = default, string? diskImage = null,
        TimeSpan? peerTimeout = null, Action<MigrationProgress>? progress = null) =>
        ReceiveAsync(MigrationHost.Driven(system), source, cancellationToken, diskImage, peerTimeout, progress);

    /// <summary>Receives a VM into <paramref name="host"/>, which admits its name and restores it at a barrier (see the other overload).</summary>
    public static async Task<(VirtualMachine? Vm, string? Error)> ReceiveAsync(MigrationHost host, Stream source, CancellationToken cancellationToken = default,
        string? diskImage = null, TimeSpan? peerTimeout = null, Action<MigrationProgress>? progress = null)
    {
        HybridSystem system = host.System;
        TimeSpan timeout = peerTimeout ?? MigrationOptions.DefaultPeerTimeout;
        try
        {
            (FrameType type, byte[] payload) = await ReadFrameBeforeDeadline(source, timeout, cancellationToken);
            if (type != FrameType.Hello)
            {
                return (null, $"expected Hello, got {type}");
            }

            if (!TryReadHello(payload, out var hello, out string helloError))
            {
                await RefuseEarlyAsync(source, helloError, timeout, cancellationToken);
                return (null, helloError);
            }

            (int version, string name, ulong memoryBytes) = hello;
            if (version != MigrationProtocol.Version)
            {
                await RefuseEarlyAsync(source, $"protocol version {version} is not {MigrationProtocol.Version}", timeout, cancellationToken);
                return (null, $"source speaks migration protocol {version}, this build {MigrationProtocol.Version}");
            }

            // Pre-copy pages are held until the final state arrives: a guest that cannot fit here is refused before
            // any is taken, so they never amount to more than this host's free memory (issue 14, defect 6).
            string? refusal = await host.AtBarrierAsync(() => host.Admit(name) ?? ((long)memoryBytes > system.Root.FreeHostMemoryBytes
                ? $"the guest's {memoryBytes >> 20} MiB of memory do not fit in the {system.Root.FreeHostMemoryBytes >> 20} MiB this host has free (receive --host-memory)"
                : null), cancellationToken);
            if (refusal is not null)
            {
                await RefuseEarlyAsync(source, refusal, timeout, cancellationToken);
                return (null, refusal);
            }

            var pages = new SortedDictionary<uint, byte[]>();
            long pagesReceived = 0, bytesReceived = 0;
            int round = 0;
            while (true)
            {
                (type, payload) = await ReadFrameBeforeDeadline(source, timeout, cancellationToken);
                bytesReceived += payload.Length;
                if (type == FrameType.Pages)
                {
                    foreach (SavedPage page in MigrationProtocol.ReadPages(payload, memoryBytes))
                    {
                        pages[page.PageNumber] = page.Bytes;
                        pagesReceived++;
                    }

                    progress?.Invoke(new MigrationProgress(MigrationPhase.PreCopy, ++round, pagesReceived, bytesReceived));

                    continue;
                }

                if (type != FrameType.Final)
                {
                    return (null, $"unexpected {type} frame from the source");
                }

                VmSnapshot? final = SnapshotFormat.TryDeserialize(payload, out string error);
                if (final is null)
                {
                    await WriteFrameAsync(source, FrameType.Failed, FailedPayload(error), cancellationToken);
                    return (null, error);
                }

                if (final.MemoryBytes != memoryBytes)
                {
                    string mismatch = $"the final state's guest has {final.MemoryBytes >> 20} MiB of memory, the Hello announced {memoryBytes >> 20} MiB";
                    await WriteFrameAsync(source, FrameType.Failed, FailedPayload(mismatch), cancellationToken);
                    return (null, mismatch);
                }

                long finalPages = 0;
                final.Memory.ForEach((number, bytes) =>
                {
                    pages[number] = bytes.ToArray();
                    finalPages++;
                });
                progress?.Invoke(new MigrationProgress(MigrationPhase.Final, round, pagesReceived + finalPages, bytesReceived));
                VmSnapshot whole = final with { Memory = SavedMemory.Of(pages.Select(p => new SavedPage(p.Key, p.Value)).ToList()) };
                string? disk = diskImage ?? (final.Disk is null ? null : host.DiskFor(final));
                (VirtualMachine? vm, string? restoreError) = await host.AtBarrierAsync<(VirtualMachine?, string?)>(() =>
                {
                    if (host.Admit(name) is { } taken)
                    {
                        return (null, taken);
                    }

                    if (system.Root.RestoreVm(whole, out VmCreationError? creationError, name, disk) is not { } restored)
                    {
                        return (null, creationError!.Message);
                    }

                    host.Arrived(restored, whole);
                    return (restored, null);
                }, cancellationToken);
                if (vm is null)
                {
                    await WriteFrameAsync(source, FrameType.Failed, FailedPayload(restoreError!), cancellationToken);
                    return (null, restoreError);
                }

                await WriteFrameAsync(source, FrameType.Resumed, Array.Empty<byte>(), cancellationToken);
                string? uncommitted;
                try
                {
                    (type, _) = await ReadFrameBeforeDeadline(source, timeout, cancellationToken);
                    uncommitted = type == FrameType.Commit ? null : $"the source sent {type} where it commits the hand-over";
                }
                catch (Exception e) when (e is IOException or SocketException or EndOfStreamException or ObjectDisposedException or InvalidDataException or TimeoutException)
                {
                    uncommitted = e is TimeoutException ? "the source did not commit the hand-over in time" : $"the source went away before it committed the hand-over: {e.Message}";
                }

                if (uncommitted is not null)
                {
                    await host.AtBarrierAsync(() =>
                    {
                        host.Withdrawn(vm);
                        system.Root.Delete(vm);
                        return true;
                    }, CancellationToken.None);
                    return (null, $"{uncommitted}; the VM stays on the source, and its copy here was discarded");
                }

                return (vm, null);
            }
        }
        catch (InvalidDataException e)
        {
            await TryRefuseAsync(source, e.Message, cancellationToken);
            return (null, e.Message);
        }
        catch (TimeoutException e)
        {
            await TryRefuseAsync(source, e.Message, cancellationToken);
            return (null, $"{e.Message}; the VM stays on the source");
        }
        catch (Exception e) when (e is IOException or SocketException or EndOfStreamException or ObjectDisposedException)
        {
            return (null, $"the source went away before the final state arrived: {e.Message}");
        }
    }

    /// <summary>
    /// Refuses a VM before its final state: tells the source why, then reads and drops what it still sends until it
    /// hangs up, for at most <paramref name="timeout"/> in all. A source streams its first round while the refusal
    /// is on its way; closing at once would reset the connection under its write, and it would see a broken pipe
    /// instead of the reason. It looks for the refusal after each frame (<see cref="ThrowIfRefused"/>).
    /// </summary>
    private static async Task RefuseEarlyAsync(Stream source, string reason, TimeSpan timeout, CancellationToken cancellationToken)
    {
        await TryRefuseAsync(source, reason, cancellationToken);
        byte[] sink = new byte[64 << 10];
        try
        {
            await BeforeDeadline(async t =>
            {
                while (await source.ReadAsync(sink, t) > 0)
                {
                }

                return true;
            }, timeout, cancellationToken);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or TimeoutException)
        {
        }
    }

    /// <summary>
    /// Source, between frames: a target that has already answered can only have refused the VM (it answers nothing
    /// else before the final state); its reason ends the migration here rather than after every round.
    /// </summary>
    private static async Task ThrowIfRefused(Stream target, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (target is NetworkStream { DataAvailable: true })
        {
            (FrameType type, byte[] answer) = await BeforeDeadline(t => ReadFrameAsync(target, t), timeout, cancellationToken);
            throw new IOException(type == FrameType.Failed ? $"the target refused the VM: {PeerText(answer)}" : $"unexpected {type} frame before the final state");
        }
    }

    /// <summary>Tells the source why its stream was refused, if it still listens.</summary>
    private static async Task TryRefuseAsync(Stream source, string reason, CancellationToken cancellationToken)
    {
        try
        {
            await WriteFrameAsync(source, FrameType.Failed, FailedPayload(reason), cancellationToken);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
        }
    }
}
