using HybridVmm.Samples.EnlightenedIo;

// Emulated versus enlightened I/O: the UART and the synthetic console side by side, a synthetic disk that
// keeps its data across a VM restart, and two guests pinging each other through the root's virtual switch.
return await EnlightenedIoScenario.RunAsync(Console.Out);
