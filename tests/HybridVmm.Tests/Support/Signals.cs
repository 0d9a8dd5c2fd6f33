using System.Runtime.InteropServices;

namespace HybridVmm.Tests.Support;

/// <summary>
/// POSIX signals to a process the test started: SIGSTOP freezes every thread of it at once, as a host that hangs or is
/// cut off, and SIGCONT lets it go on where it was. (Linux numbers; the cluster tests run on Linux only.)
/// </summary>
public static partial class Signals
{
    private const int SigCont = 18;
    private const int SigStop = 19;

    public static void Stop(int pid) => Send(pid, SigStop, "SIGSTOP");

    public static void Continue(int pid) => Send(pid, SigCont, "SIGCONT");

    private static void Send(int pid, int signal, string name)
    {
        if (kill(pid, signal) != 0)
        {
            Assert.Fail($"{name} to process {pid} failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
