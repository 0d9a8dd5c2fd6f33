using ApprovalTests.Reporters;
using HybridVmm.Tests.Support;

[assembly: UseReporter(typeof(DiffInMessageReporter))]
[assembly: Parallelizable(ParallelScope.Fixtures)]
