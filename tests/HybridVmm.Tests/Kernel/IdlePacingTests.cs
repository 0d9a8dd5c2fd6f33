using HybridVmm.HostOS.Vm;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Kernel;

/// <summary>
/// Pacing idle virtual time to the host's clock (an interactive console's setting) changes how fast a run goes, never
/// what it does: the pic guest, which halts until its PIT and RTC interrupts, prints the same bytes and leaves the same
/// trace with and without it.
/// </summary>
public class IdlePacingTests
{
    private static async Task<(string Output, string Trace)> RunPic(bool paced)
    {
        using var machine = new TestMachine();
        machine.System.Kernel.Scheduler.PaceIdleTimeToHost = paced;
        VirtualMachine vm = machine.Create("pic", File.ReadAllBytes(Repository.GuestElf("pic")), 64u << 20);
        await machine.RunAsync();
        return (machine.Output(vm), string.Join('\n', machine.TraceLines));
    }

    [Test]
    public async Task APacedRunOfAGuestThatHaltsForItsTimersIsTheSameRun()
    {
        (string output, string trace) = await RunPic(paced: false);
        (string pacedOutput, string pacedTrace) = await RunPic(paced: true);
        Assert.That(trace, Does.Contain("device timer at"), "the guest idles until device timers");
        Assert.That(pacedOutput, Is.EqualTo(output));
        Assert.That(pacedTrace, Is.EqualTo(trace));
    }
}
