using System.Buffers.Binary;
using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// The synthetic console: batched output and input over one channel. Guest to host: WRITE { u32 Op = 1;
/// u32 Length; bytes }, one packet for a whole batch of output. Host to guest: INPUT { u32 Op = 2; u32 Length;
/// bytes }, sent as soon as the channel opens and whenever the guest signals, while queued input remains and the
/// ring has room. A packet that asks for a completion gets one with { u32 Status } (0 = done, 1 = bad request).
/// </summary>
public sealed class SynthConsoleDevice(Action<long, byte> output, Devices.IDeviceClock clock) : IVmBusDevice, ISaveRestore<SynthConsoleState>
{
    public static readonly Guid Interface = new("9d5a6c2e-0b1f-4c3e-8a77-636f6e736f6c");

    public const uint OpWrite = 1;
    public const uint OpInput = 2;
    public const int MaxInputChunk = 1024;

    private readonly Queue<byte> _input = new();

    public string Name => "synthcon";

    public Guid InterfaceId => Interface;

    public long BytesWritten { get; private set; }

    public long Batches { get; private set; }

    /// <summary>Queues host input for the guest (delivered at the next open or guest signal, deterministically).</summary>
    public void QueueInput(ReadOnlySpan<byte> bytes)
    {
        lock (_input)
        {
            foreach (byte b in bytes) _input.Enqueue(b);
        }
    }

    public void Opened(VmBusChannel channel) => SendInput(channel);

    public StateCodec<SynthConsoleState> StateCodec => SynthConsoleStateCodec.Instance;

    /// <summary>Counters and the input not yet sent to the guest.</summary>
    public SynthConsoleState Save()
    {
        lock (_input)
        {
            return new SynthConsoleState(BytesWritten, Batches, _input.ToArray());
        }
    }

    public bool Restore(SynthConsoleState state)
    {
        lock (_input)
        {
            BytesWritten = state.BytesWritten;
            Batches = state.Batches;
            _input.Clear();
            foreach (byte b in state.Input) _input.Enqueue(b);
        }

        return true;
    }

    public void Serve(VmBusChannel channel)
    {
        while (channel.Outbound!.TryRead(out PacketDescriptor d, out byte[] payload, out bool malformed))
        {
            channel.Packets++;
            uint status = 1;
            if (payload.Length >= 8 && BinaryPrimitives.ReadUInt32LittleEndian(payload) == OpWrite)
            {
                uint length = BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(4));
                if (length <= payload.Length - 8)
                {
                    long time = clock.Now;
                    for (int i = 0; i < length; i++) output(time, payload[8 + i]);
                    BytesWritten += length;
                    Batches++;
                    status = 0;
                    channel.Trace($"write {length} bytes");
                }
            }

            if (status != 0) channel.Trace($"bad request ({payload.Length} bytes)");
            if ((d.Flags & PacketDescriptor.CompletionRequested) != 0)
            {
                byte[] completion = new byte[4];
                BinaryPrimitives.WriteUInt32LittleEndian(completion, status);
                channel.Send(PacketDescriptor.Completion, 0, d.TransactionId, completion);
            }
        }

        if (channel.Outbound.TryRead(out _, out _, out bool bad) || bad)
        {
            channel.Trace("malformed ring: ignored until the guest repairs it");
        }

        SendInput(channel);
    }

    private void SendInput(VmBusChannel channel)
    {
        lock (_input)
        {
            while (_input.Count > 0)
            {
                int n = Math.Min(_input.Count, MaxInputChunk);
                if (!channel.Inbound!.HasRoomFor(8 + n)) break;
                byte[] packet = new byte[8 + n];
                BinaryPrimitives.WriteUInt32LittleEndian(packet, OpInput);
                BinaryPrimitives.WriteUInt32LittleEndian(packet.AsSpan(4), (uint)n);
                for (int i = 0; i < n; i++) packet[8 + i] = _input.Dequeue();
                channel.Send(PacketDescriptor.DataInband, 0, 0, packet);
                channel.Trace($"input {n} bytes");
            }
        }
    }
}
