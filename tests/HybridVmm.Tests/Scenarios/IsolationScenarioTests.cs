using ApprovalTests;
using HybridVmm.Samples.Isolation;

namespace HybridVmm.Tests.Scenarios;

public class IsolationScenarioTests
{
    [Test]
    public async Task TheIsolationSampleShowsMisbehavingGuestsStoppedAloneAndTheOthersUnaffected()
    {
        var output = new StringWriter { NewLine = "\n" };
        int status = await IsolationScenario.RunAsync(output);
        Assert.That(status, Is.Zero, output.ToString());
        Approvals.Verify(output.ToString());
    }
}
