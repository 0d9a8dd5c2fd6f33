using System.Runtime.InteropServices;
using HybridVmm.Testing.Reference;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>The reference CPU: Unicorn on its own 1 MiB of memory with the same layout.</summary>
internal sealed unsafe class UnicornSide : IDisposable
{
    private readonly byte* _memory;
    private Unicorn _unicorn;

    private UnicornSide(byte* memory, Unicorn unicorn)
    {
        _memory = memory;
        _unicorn = unicorn;
    }

    public static UnicornSide? TryCreate()
    {
        byte* memory = (byte*)NativeMemory.AlignedAlloc(MachineLayout.MemorySize, 4096);
        // HLT everywhere: a translation block never runs on into stale bytes (see MachineLayout.IsWritablePage).
        new Span<byte>(memory, (int)MachineLayout.MemorySize).Fill(0xF4);
        Unicorn? unicorn = Unicorn.TryCreate(memory, MachineLayout.MemorySize, MachineLayout.IsWritablePage);
        if (unicorn is null)
        {
            NativeMemory.AlignedFree(memory);
            return null;
        }
        unicorn.SaveResetState();
        return new UnicornSide(memory, unicorn);
    }

    /// <summary>
    /// Replaces the Unicorn instance (same memory). Unicorn 2.0.1 aborts with "tcg fatal error" after a few
    /// hundred thousand freshly translated blocks; a new instance every few blocks of cases avoids that.
    /// </summary>
    public void Renew()
    {
        _unicorn.Dispose();
        _unicorn = Unicorn.TryCreate(_memory, MachineLayout.MemorySize, MachineLayout.IsWritablePage) ?? throw new InvalidOperationException(Unicorn.UnavailableReason);
        _unicorn.SaveResetState();
    }

    public Span<byte> Bytes => new(_memory, (int)MachineLayout.MemorySize);

    public void LoadCode(uint address, ReadOnlySpan<byte> code)
    {
        code.CopyTo(Bytes[(int)address..]);
        _unicorn.InvalidateCode(address, address + (uint)code.Length);
    }

    /// <summary>Sets the case's registers, flags and memory windows without running anything.</summary>
    public void Load(TestCase c)
    {
        c.Data.CopyTo(Bytes[(int)MachineLayout.DataWindow..]);
        c.Stack.CopyTo(Bytes[(int)MachineLayout.StackWindow..]);
        c.Low.CopyTo(Bytes[(int)MachineLayout.LowWindow..]);
        _unicorn.SetState(c.Gprs, c.Eflags, c.Eip);
    }

    /// <summary>Overwrites the registers and flags (to resynchronise after an SDM-undefined difference).</summary>
    public void SetRegisters(ReadOnlySpan<uint> gprs, uint eflags, uint eip) => _unicorn.SetState(gprs, eflags, eip);

    public void Run(TestCase c, Outcome o) { Load(c); Step(c, o); }

    /// <summary>Executes the case's instruction from the current state.</summary>
    public void Step(TestCase c, Outcome o)
    {
        // Unicorn counts every REP iteration as an instruction: run a REP string instruction to its end address
        // (count stays non-zero: Unicorn flushes its translation cache whenever the count hook goes away).
        bool rep = c.Form.IsString && (c.Bytes[0] == 0xF3 || c.Bytes[0] == 0xF2);
        int err = rep ? _unicorn.Step(c.Eip, c.Eip + (uint)c.Length, 100_000) : _unicorn.Step(c.Eip);
        _unicorn.GetState(o.Gprs, out o.Eflags, out o.Eip);
        if (_unicorn.LastInterrupt >= 0 || err != Unicorn.ErrOk) _unicorn.ResetCpu();
        o.Vector = 0;
        if (_unicorn.LastInterrupt >= 0)
        {
            o.Kind = OutcomeKind.Exception;
            o.Vector = _unicorn.LastInterrupt;
        }
        else if (err == Unicorn.ErrOk)
        {
            o.Kind = OutcomeKind.Retired;
        }
        else if (err == Unicorn.ErrInsnInvalid)
        {
            o.Kind = OutcomeKind.Exception;
            o.Vector = 6;
        }
        else if ((err == Unicorn.ErrFetchUnmapped && o.Eip >= MachineLayout.MemorySize) || (err == Unicorn.ErrFetchProtected && o.Eip != c.Eip))
        {
            // The instruction retired (a jump, call or return to an address without memory); Unicorn stops when it
            // fetches the next one. The core retires it too and would fault on its next fetch. The same for a jump
            // into a (non-executable) window page.
            o.Kind = OutcomeKind.Retired;
        }
        else
        {
            o.Kind = OutcomeKind.MemoryFault;
            o.Vector = err;
        }
    }

    public void Dispose()
    {
        _unicorn.Dispose();
        NativeMemory.AlignedFree(_memory);
    }
}
