using System.Diagnostics;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>The committed guest ELFs are what the committed sources build to (when gcc -m32 is here to check).</summary>
public class GuestBuildTests
{
    [Test]
    public void RebuildingTheSampleGuestsReproducesTheCommittedElfsByteForByte()
    {
        if (!CanBuild32BitGuests())
        {
            Assert.Ignore("gcc -m32, nasm or make is not installed (apt-get install gcc-multilib nasm make)");
        }

        string copy = Path.Combine(Path.GetTempPath(), $"hybridvmm-guests-{Guid.NewGuid():N}");
        try
        {
            CopyDirectory(Repository.GuestsDirectory, copy);
            foreach (string elf in Directory.GetFiles(Path.Combine(copy, "bin"), "*.elf"))
            {
                File.Delete(elf);
            }

            (int status, string output) = Execute("make", $"-C {copy} all");
            Assert.That(status, Is.Zero, output);
            string[] committed = Directory.GetFiles(Path.Combine(Repository.GuestsDirectory, "bin"), "*.elf");
            Assert.That(committed, Is.Not.Empty);
            foreach (string elf in committed)
            {
                byte[] rebuilt = File.ReadAllBytes(Path.Combine(copy, "bin", Path.GetFileName(elf)));
                Assert.That(rebuilt, Is.EqualTo(File.ReadAllBytes(elf)), $"{Path.GetFileName(elf)} differs from its rebuild");
            }
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }
    }

    private static bool CanBuild32BitGuests()
    {
        string probe = Path.Combine(Path.GetTempPath(), $"m32-{Guid.NewGuid():N}.c");
        File.WriteAllText(probe, "int main(void){return 0;}\n");
        try
        {
            return Execute("gcc", $"-m32 -c {probe} -o {probe}.o").Status == 0 && Execute("nasm", "-v").Status == 0 && Execute("make", "-v").Status == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
        finally
        {
            File.Delete(probe);
            File.Delete(probe + ".o");
        }
    }

    private static (int Status, string Output) Execute(string program, string arguments)
    {
        var start = new ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using Process process = Process.Start(start)!;
        Task<string> err = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output + err.Result);
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (string dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
        {
            if (!dir.Contains($"{Path.DirectorySeparatorChar}obj"))
            {
                Directory.CreateDirectory(dir.Replace(from, to));
            }
        }

        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            if (!file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
            {
                File.Copy(file, file.Replace(from, to));
            }
        }
    }
}
