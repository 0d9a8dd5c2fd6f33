using HybridVmm.Samples.Lecture;

// The lecture's "why virtualize" scenarios. Run one by name, or all of them in turn.
var scenarios = new Dictionary<string, Func<TextWriter, TextWriter, Task<int>>>(StringComparer.OrdinalIgnoreCase)
{
    ["diversity"] = OsDiversityScenario.RunAsync,
    ["smp"] = MultiprocessorScenario.RunAsync,
    ["encapsulation"] = EncapsulationScenario.RunAsync,
    ["provisioning"] = ProvisioningScenario.RunAsync,
    ["migration"] = MigrationScenario.RunAsync,
    ["ha"] = ClusterHighAvailabilityScenario.RunAsync,
    ["ha-offline"] = OfflineHighAvailabilityScenario.RunAsync,
    ["balancing"] = ClusterBalancingScenario.RunAsync,
    ["balancing-offline"] = OfflineLoadBalancingScenario.RunAsync,
    ["types"] = HostingTypesScenario.RunAsync,
    ["attack"] = AttackScenario.RunAsync,
};

if (args.Length > 1 || (args.Length == 1 && !scenarios.ContainsKey(args[0])))
{
    Console.Error.WriteLine($"usage: dotnet run --project samples/Lecture [-- {string.Join('|', scenarios.Keys)}]");
    return 64;
}

int status = 0;
foreach ((string name, Func<TextWriter, TextWriter, Task<int>> run) in scenarios)
{
    if (args.Length == 1 && !string.Equals(args[0], name, StringComparison.OrdinalIgnoreCase))
    {
        continue;
    }

    Console.WriteLine($"=== {name} ===");
    // Deterministic results and wall-clock measurements both go to the terminal here; tests keep them apart.
    status = Math.Max(status, await run(Console.Out, Console.Out));
    Console.WriteLine();
}

return status;
