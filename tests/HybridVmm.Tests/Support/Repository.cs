namespace HybridVmm.Tests.Support;

/// <summary>Paths into the repository the tests run from.</summary>
public static class Repository
{
    public static string Root { get; } = FindRoot();

    public static string GuestsDirectory => Path.Combine(Root, "samples", "guests");

    public static string GuestElf(string name) => Path.Combine(GuestsDirectory, "bin", name + ".elf");

    public static byte[] ReadGuest(string name) => File.ReadAllBytes(GuestElf(name));

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
