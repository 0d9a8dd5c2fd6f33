using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// The device save/restore contract, apart from the I/O interface: a device with state implements
/// <see cref="ISaveRestore{TState}"/> with a typed state record and one codec; a stateless device implements nothing.
/// </summary>
public class DeviceSavedStateTests
{
    [Test]
    public void AUartsTypedStateTravelsAsAChunkToAnotherUart()
    {
        var sent = new List<byte>();
        var uart = new Uart16550(Uart16550.Com1Base, sent.Add);
        uart.Write(0x3FB, 1, 0x80);         // DLAB
        uart.Write(0x3F8, 1, 0x01);         // divisor 1: 115200 baud
        uart.Write(0x3FB, 1, 0x03);         // 8N1
        uart.Write(0x3FA, 1, 0x01);         // FIFOs on: the receiver holds both bytes
        uart.Write(0x3FC, 1, 0x10);         // loopback
        uart.Write(0x3F8, 1, 'x');
        uart.Write(0x3F8, 1, 'y');

        SavedStateChunk chunk = ((IPersistentState)uart).SaveChunk("device.com1")!;
        var copy = new Uart16550(Uart16550.Com1Base, sent.Add);

        Assert.That(chunk.Version, Is.EqualTo(Uart16550StateCodec.Instance.Version));
        Assert.That(((IPersistentState)copy).RestoreChunk(chunk), Is.True);
        Uart16550State saved = uart.Save(), restored = copy.Save();
        Assert.That(restored with { Received = saved.Received }, Is.EqualTo(saved), "the registers");
        Assert.That(restored.Received, Is.EqualTo("xy"u8.ToArray()));
        Assert.That(copy.Divisor, Is.EqualTo(1));
        Assert.That(copy.Read(0x3F8, 1).Value, Is.EqualTo((uint)'x'));
        Assert.That(copy.Read(0x3F8, 1).Value, Is.EqualTo((uint)'y'));
    }

    [Test]
    public void TheProvisioningIdentityRoundTripsThroughItsCodec()
    {
        var device = new ProvisioningDevice(NoControl.Instance) { Identity = 42 };
        SavedStateChunk chunk = ((IPersistentState)device).SaveChunk("device.provisioning")!;
        var copy = new ProvisioningDevice(NoControl.Instance);

        Assert.That(chunk.Payload, Is.EqualTo(BitConverter.GetBytes(42u)), "the layout format version 2 had");
        Assert.That(((IPersistentState)copy).RestoreChunk(chunk), Is.True);
        Assert.That(copy.Identity, Is.EqualTo(42));
    }

    [Test]
    public void TheDebugExitDeviceHasNoSavedState()
    {
        Assert.That(new DebugExitDevice(NoControl.Instance), Is.Not.InstanceOf<IPersistentState>());
    }

    [Test]
    public void AFlakyWrapperSavesAndRestoresItsDevicesStateAndNothingForAStatelessOne()
    {
        var uart = new Uart16550(Uart16550.Com1Base, _ => { });
        uart.Write(0x3FF, 1, 0x5A); // scratch register
        IPersistentState flaky = new FlakyDevice(uart, failOnAccess: 1000);
        IPersistentState stateless = new FlakyDevice(new DebugExitDevice(NoControl.Instance), failOnAccess: 1000);

        SavedStateChunk chunk = flaky.SaveChunk("device.com1")!;
        var copy = new Uart16550(Uart16550.Com1Base, _ => { });
        Assert.That(new FlakyDevice(copy, 1000).RestoreChunk(chunk), Is.True);
        Assert.That(copy.Read(0x3FF, 1).Value, Is.EqualTo(0x5Au));
        Assert.That(flaky.VersionRefusal(chunk with { Version = 4 }), Does.Contain("version 4"));

        Assert.That(stateless.SaveChunk("device.debug-exit"), Is.Null);
        Assert.That(stateless.RestoreChunk(new SavedStateChunk("device.debug-exit", 1, Array.Empty<byte>())), Is.True);
        Assert.That(stateless.RestoreChunk(new SavedStateChunk("device.debug-exit", 1, new byte[1])), Is.False);
    }

    [Test]
    public void AUartRefusesAChunkTooShortForItsRegisters()
    {
        var uart = new Uart16550(Uart16550.Com1Base, _ => { });
        uart.Write(0x3FF, 1, 0x5A);

        Assert.That(((IPersistentState)uart).RestoreChunk(new SavedStateChunk("device.com1", 1, new byte[6])), Is.False);
        Assert.That(uart.Read(0x3FF, 1).Value, Is.EqualTo(0x5Au), "a refused state leaves the device as it was");
    }

    /// <summary>Saved state never asks to change the VM's run state.</summary>
    private sealed class NoControl : IVmControl
    {
        public static readonly NoControl Instance = new();

        public void SignalGuestExit(uint value) => throw new AssertionException("no run-state request expected");

        public void RequestPause() => throw new AssertionException("no run-state request expected");

        public void RequestPowerOff() => throw new AssertionException("no run-state request expected");

        public void RequestReset() => throw new AssertionException("no run-state request expected");
    }
}
