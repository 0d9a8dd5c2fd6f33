using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// <c>hybridvmm run</c> on a real pseudo-terminal (util-linux <c>script</c>): the keyboard reaches COM1 in raw mode
/// (no echo by the terminal; Ctrl-C is a byte for the guest), the escape keys work, and every way out puts the
/// terminal back as it was (<c>stty -g</c> before and after).
/// </summary>
[NonParallelizable]
public class TerminalConsoleTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);
    private string _guest = "";

    [OneTimeSetUp]
    public void BuildGuest()
    {
        if (!File.Exists("/usr/bin/script")) Assert.Ignore("util-linux script is not installed");
        _guest = SerialEchoGuest.WriteToTempFile();
    }

    [OneTimeTearDown]
    public void RemoveGuest() => File.Delete(_guest);

    [Test]
    public void KeysReachTheGuestRawAndCtrlAXQuitsWithStatusZeroLeavingTheTerminalAsItWas()
    {
        using var session = TerminalSession.Start(_guest);
        session.WaitFor("ready");
        session.Type("abc");
        session.WaitFor("ABC");
        session.Type("\u0001h");
        session.WaitFor("C-a x");
        session.Type("z\u0001\u0001\u0003");
        session.WaitFor("Z\u0001\u0003");
        session.Type("\u0001x");
        string output = session.WaitForEnd();
        Assert.Multiple(() =>
        {
            Assert.That(output, Does.Not.Contain("abc"), "the terminal did not echo: raw mode");
            Assert.That(output, Does.Contain("hybridvmm: quit from the console (Ctrl-A x)"));
            Assert.That(output, Does.Contain("status=0"), output);
            AssertTerminalRestored(output);
        });
    }

    [Test]
    public void AGuestThatExitsLeavesTheTerminalAsItWas()
    {
        using var session = TerminalSession.Start(_guest);
        session.WaitFor("ready");
        session.Type("ok.");
        string output = session.WaitForEnd();
        Assert.That(output, Does.Contain("OK"));
        Assert.That(output, Does.Contain($"status={SerialEchoGuest.ExitValue}"), output);
        AssertTerminalRestored(output);
    }

    [Test]
    public void SigtermLeavesTheTerminalAsItWasWithTheInterruptedStatus()
    {
        using var session = TerminalSession.Start(_guest);
        string pid = session.WaitFor(@"pid=(\d+)");
        session.WaitFor("ready");
        using (Process kill = Process.Start("kill", ["-TERM", pid])) kill.WaitForExit();
        string output = session.WaitForEnd();
        Assert.That(output, Does.Contain($"status={ExitStatus.Interrupted}"), output);
        AssertTerminalRestored(output);
    }

    private static void AssertTerminalRestored(string output)
    {
        // stty -g: the settings as colon-separated hex numbers, once before the run and once after.
        string[] settings = Regex.Matches(output, @"^[0-9a-f]+(?::[0-9a-f]+){10,}\r?$", RegexOptions.Multiline)
            .Select(m => m.Value.TrimEnd('\r')).ToArray();
        Assert.That(settings, Has.Length.EqualTo(2), output);
        Assert.That(settings[1], Is.EqualTo(settings[0]), "stty -g after the run equals stty -g before it");
    }

    /// <summary>hybridvmm run under <c>script</c>: our writes are keys on its pseudo-terminal, its output is the screen.</summary>
    private sealed class TerminalSession : IDisposable
    {
        private readonly Process _script;
        private readonly StringBuilder _screen = new();
        private readonly Task _reader;

        private TerminalSession(Process script)
        {
            _script = script;
            _reader = Task.Run(async () =>
            {
                var buffer = new byte[4096];
                int n;
                while ((n = await _script.StandardOutput.BaseStream.ReadAsync(buffer)) > 0)
                {
                    lock (_screen) _screen.Append(Encoding.Latin1.GetString(buffer, 0, n));
                }
            });
        }

        public static TerminalSession Start(string guest)
        {
            string dll = Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll");
            string command = $"stty -g; sh -c 'echo pid=$$; exec dotnet \"{dll}\" run \"{guest}\"'; echo status=$?; stty -g";
            var start = new ProcessStartInfo("script")
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string arg in new[] { "-q", "-f", "-e", "-c", command, "/dev/null" }) start.ArgumentList.Add(arg);
            return new TerminalSession(Process.Start(start)!);
        }

        private string Screen
        {
            get
            {
                lock (_screen) return _screen.ToString();
            }
        }

        public void Type(string keys)
        {
            _script.StandardInput.BaseStream.Write(Encoding.Latin1.GetBytes(keys));
            _script.StandardInput.BaseStream.Flush();
        }

        /// <summary>Waits until the screen shows <paramref name="pattern"/> (a regular expression); returns its first group, or the match.</summary>
        public string WaitFor(string pattern)
        {
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < Patience)
            {
                Match match = Regex.Match(Screen, pattern);
                if (match.Success) return match.Groups.Count > 1 ? match.Groups[1].Value : match.Value;
                if (_reader.IsCompleted) break;
                Thread.Sleep(50);
            }

            Assert.Fail($"the terminal never showed /{pattern}/; it shows:\n{Screen}");
            return "";
        }

        public string WaitForEnd()
        {
            if (!_script.WaitForExit(Patience)) Assert.Fail($"script did not end; the terminal shows:\n{Screen}");
            _reader.Wait(Patience);
            return Screen;
        }

        public void Dispose()
        {
            if (!_script.HasExited) _script.Kill(entireProcessTree: true);
            _script.Dispose();
        }
    }
}
