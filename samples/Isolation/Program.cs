using HybridVmm.Samples.Isolation;

// Boots several guests in separate partitions and shows that faulting or misbehaving ones leave the others running.
return await IsolationScenario.RunAsync(Console.Out);
