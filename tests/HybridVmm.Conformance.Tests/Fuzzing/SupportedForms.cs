namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>
/// The forms the core claims to support: every candidate form that does not raise #UD on the core for
/// any of a few generated instances. Forms that do are listed as unsupported in the report.
/// </summary>
internal static class SupportedForms
{
    public static readonly InstructionForm[] All;
    public static readonly InstructionForm[] Unsupported;

    static SupportedForms()
    {
        var core = new CoreSide();
        var generator = new CaseGenerator(0x5eed, InstructionCatalogue.Candidates);
        var c = new TestCase();
        var outcome = new Outcome();
        var supported = new List<InstructionForm>();
        var unsupported = new List<InstructionForm>();
        foreach (InstructionForm form in InstructionCatalogue.Candidates)
        {
            bool any = false;
            for (int i = 0; i < 8 && !any; i++)
            {
                if (!generator.Generate(i, MachineLayout.CodeBase, c, form)) continue;
                core.LoadCode(MachineLayout.CodeBase, c.Code);
                core.Run(c, outcome);
                any = !(outcome.Kind == OutcomeKind.Exception && outcome.Vector == 6);
            }
            (any ? supported : unsupported).Add(form);
        }
        All = supported.ToArray();
        Unsupported = unsupported.ToArray();
    }

    /// <summary>
    /// Forms the host CPU can run in 64-bit mode. F3 0F BC/BD are not among them: the guest CPU claims neither BMI1
    /// nor LZCNT, so they run as BSF/BSR (SystemInstructionTests), while a modern host runs them as TZCNT/LZCNT.
    /// </summary>
    public static InstructionForm[] Native => All.Where(f => f.NativeEligible).ToArray();
}
