using System.Text;
using ApprovalTests.Core;

namespace HybridVmm.Tests.Support;

/// <summary>
/// An ApprovalTests reporter for headless runs: no diff tool is launched; the failure message carries a
/// line diff of approved against received, and the received file is left beside the approved one.
/// </summary>
public sealed class DiffInMessageReporter : IApprovalFailureReporter
{
    private const int MaxReportedLines = 60;

    public void Report(string approved, string received)
    {
        string[] want = File.Exists(approved) ? File.ReadAllLines(approved) : Array.Empty<string>();
        string[] got = File.ReadAllLines(received);
        var message = new StringBuilder();
        message.AppendLine(File.Exists(approved)
            ? $"Received output differs from {Path.GetFileName(approved)}:"
            : $"No approved file yet: {Path.GetFileName(approved)}. Review {Path.GetFileName(received)} and rename it to approve.");
        message.AppendLine($"  approved: {approved}");
        message.AppendLine($"  received: {received}");
        int reported = 0;
        int max = Math.Max(want.Length, got.Length);
        for (int i = 0; i < max && reported < MaxReportedLines; i++)
        {
            string? a = i < want.Length ? want[i] : null;
            string? b = i < got.Length ? got[i] : null;
            if (a == b)
            {
                continue;
            }

            if (a is not null) message.AppendLine($"  line {i + 1} - {a}");
            if (b is not null) message.AppendLine($"  line {i + 1} + {b}");
            reported++;
        }

        if (want.Length != got.Length)
        {
            message.AppendLine($"  approved has {want.Length} lines, received {got.Length}");
        }

        throw new AssertionException(message.ToString());
    }
}
