namespace HybridVmm.Conformance.Tests.Fuzzing;

internal enum OutcomeKind : byte { Retired, Exception, MemoryFault, Skipped }

/// <summary>The state one CPU ended a test case in.</summary>
internal sealed class Outcome
{
    public OutcomeKind Kind;
    public int Vector;
    public readonly uint[] Gprs = new uint[8];
    public uint Eip;
    public uint Eflags;

    public void CopyFrom(Outcome other)
    {
        Kind = other.Kind;
        Vector = other.Vector;
        other.Gprs.CopyTo(Gprs, 0);
        Eip = other.Eip;
        Eflags = other.Eflags;
    }

    public string Describe() => Kind switch
    {
        OutcomeKind.Retired => $"retired  eip={Eip:x8} {Registers(Gprs)} eflags={Eflags:x8}",
        OutcomeKind.Exception => $"exception vector {Vector} ({VectorName(Vector)})",
        OutcomeKind.MemoryFault => "memory fault (unmapped access)",
        _ => "skipped",
    };

    public static string Registers(ReadOnlySpan<uint> r) =>
        $"eax={r[0]:x8} ecx={r[1]:x8} edx={r[2]:x8} ebx={r[3]:x8} esp={r[4]:x8} ebp={r[5]:x8} esi={r[6]:x8} edi={r[7]:x8}";

    public static string VectorName(int v) => v switch { 0 => "#DE", 3 => "#BP", 4 => "#OF", 5 => "#BR", 6 => "#UD", 13 => "#GP", 14 => "#PF", _ => "?" };
}
