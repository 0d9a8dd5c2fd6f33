using System.Runtime.CompilerServices;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Segment registers (SDM Vol. 3A, 3.4). Every load goes through <see cref="LoadSegment"/>, which fills the hidden
/// descriptor cache. The core runs flat protected mode: the cache is always base 0, limit 4 GiB and the
/// effective address is the linear address (Interp/X86Core.Operands.cs adds no base). Descriptor loads from
/// the GDT/LDT, their #GP/#NP/#SS checks and segment bases in address formation will come here.
/// </summary>
public sealed partial class X86Core
{
    /// <summary>Loads <paramref name="selector"/> into <paramref name="segment"/> with its (flat) descriptor cache.</summary>
    private void LoadSegment(Sreg segment, ushort selector)
    {
        _ctx.Segments[(int)segment] = SegmentRegister.Flat(selector, code: segment == Sreg.Cs);
        if (segment == Sreg.Ss)
        {
            UpdateAccessRights(); // SS.DPL is the CPL
        }
    }

    /// <summary>Iced's ES, CS, SS, DS, FS, GS are consecutive and in <see cref="Sreg"/> order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Sreg ToSreg(Register segment) => (Sreg)(segment - Register.ES);

    private uint ReadSegment(Register s) => _ctx.Segments[(int)ToSreg(s)].Selector;

    private void WriteSegment(Register s, ushort selector) => LoadSegment(ToSreg(s), selector);
}
