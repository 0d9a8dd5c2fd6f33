using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace HybridVmm.Tests.Support;

/// <summary>hybridvmm (run, vm console) under util-linux <c>script</c>: our writes are keys on its pseudo-terminal, its output is the screen.</summary>
public sealed class TerminalSession : IDisposable
{
    public static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);

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

    public static TerminalSession Start(string guest) => StartHybridVmm($"run \"{guest}\"");

    /// <summary>Runs <c>hybridvmm ARGS</c> (already quoted for sh) on the pseudo-terminal, with <c>stty -g</c> before and after.</summary>
    public static TerminalSession StartHybridVmm(string arguments)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll");
        string command = $"stty -g; sh -c 'echo pid=$$; exec dotnet \"{dll}\" {arguments}'; echo status=$?; stty -g";
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

    /// <summary>The terminal settings (<c>stty -g</c>) after the program equal those before it.</summary>
    public static void AssertTerminalRestored(string output)
    {
        // stty -g: the settings as colon-separated hex numbers, once before the run and once after.
        string[] settings = Regex.Matches(output, @"^[0-9a-f]+(?::[0-9a-f]+){10,}\r?$", RegexOptions.Multiline)
            .Select(m => m.Value.TrimEnd('\r')).ToArray();
        Assert.That(settings, Has.Length.EqualTo(2), output);
        Assert.That(settings[1], Is.EqualTo(settings[0]), "stty -g after the run equals stty -g before it");
    }
}
