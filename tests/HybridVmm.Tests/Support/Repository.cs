namespace HybridVmm.Tests.Support;

/// <summary>Paths into the repository the tests run from.</summary>
public static class Repository
{
    public static string Root { get; } = FindRoot();

    public static string GuestsDirectory => Path.Combine(Root, "samples", "guests");

    public static string GuestElf(string name) => Path.Combine(GuestsDirectory, "bin", name + ".elf");

    public static byte[] ReadGuest(string name) => File.ReadAllBytes(GuestElf(name));

    /// <summary>What the sample guest prints under QEMU (its <c>.qemu.txt</c> beside the ELF): the output every run must match.</summary>
    public static string QemuOutput(string name) => File.ReadAllText(Path.ChangeExtension(GuestElf(name), ".qemu.txt"));

    private static string FindRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "HybridVmm.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("HybridVmm.sln not found above " + AppContext.BaseDirectory);
    }
}
