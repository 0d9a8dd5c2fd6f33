using ApprovalTests;
using HybridVmm.Cli.Commands;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Scenarios;

/// <summary>Snapshot tests: a diff of an approved file in review shows what changed in behaviour.</summary>
public class TraceSnapshotTests
{
    [Test]
    public async Task HelloGuestTrace()
    {
        string trace = await TraceOf("hello");
        Approvals.Verify(trace);
    }

    [Test]
    public async Task FaultGuestTrace()
    {
        string trace = await TraceOf("fault");
        Approvals.Verify(trace);
    }

    [Test]
    public async Task TheSameGuestGivesTheSameTraceByteForByte()
    {
        string first = await TraceOf("asmhello");
        string second = await TraceOf("asmhello");
        Assert.That(second, Is.EqualTo(first));
        Assert.That(first, Does.Contain("Lifecycle stopped guest-exit value=0"));
    }

    [Test]
    public async Task DefaultScenarioOutput()
    {
        var output = new StringWriter { NewLine = "\n" };
        var error = new StringWriter();
        int status = await DefaultScenario.RunAsync(output, error, new TraceRecorder(null), CancellationToken.None);
        Assert.That(status, Is.Zero, error.ToString());
        Approvals.Verify(output.ToString());
    }

    [Test]
    public async Task DefaultScenarioTraceIsDeterministicAcrossRuns()
    {
        static async Task<string> Once()
        {
            var trace = new TraceRecorder(null, keepInMemory: true);
            await DefaultScenario.RunAsync(TextWriter.Null, TextWriter.Null, trace, CancellationToken.None);
            return string.Join("\n", trace.Lines!);
        }

        string first = await Once();
        Assert.That(await Once(), Is.EqualTo(first));
    }

    private static async Task<string> TraceOf(string guest)
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(guest, Repository.ReadGuest(guest));
        await machine.RunAsync();
        return string.Join("\n", machine.TraceLines) + "\n";
    }
}
