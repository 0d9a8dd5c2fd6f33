using System.Runtime.InteropServices;
using HybridVmm.Hardware.Cpu;
using HybridVmm.Testing.Cpu;
using HybridVmm.Testing.Reference;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>Runs an <see cref="X87Sequences.Case"/> on one CPU and returns the data block afterwards (FNSAVE image at 256).</summary>
internal interface IX87Machine : IDisposable
{
    string Name { get; }
    byte[] Run(X87Sequences.Case c);
}

/// <summary>
/// The common frame, in 32-bit code: EAX = 0, EFLAGS from the case, FRSTOR the image, the sequence, then EAX and
/// EFLAGS stored and FNSAVE. EBX points at the data block.
/// </summary>
internal static class X87Frame
{
    public const uint CodeBase = 0x1000, DataBase = 0x20000, StackTop = 0x80000;

    public static byte[] Assemble32(X87Sequences.Case c, out uint hltAddress)
    {
        var a = new Assembler(32);
        a.xor(eax, eax);
        a.push(c.Eflags);
        a.popfd();
        a.frstor(__[ebx]);
        foreach (Instruction ins in c.Instructions) a.AddInstruction(X87Sequences.Rebase(ins, Register.EBX));
        a.mov(__dword_ptr[ebx + X87Sequences.EaxOffset], eax);
        a.pushfd();
        a.pop(eax);
        a.mov(__dword_ptr[ebx + X87Sequences.FlagsOffset], eax);
        a.fnsave(__[ebx + X87Sequences.SaveOffset]);
        a.hlt();
        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), CodeBase);
        byte[] code = stream.ToArray();
        hltAddress = CodeBase + (uint)code.Length - 1;
        return code;
    }
}

internal sealed class CoreX87Machine : IX87Machine
{
    public string Name => "core";

    public byte[] Run(X87Sequences.Case c)
    {
        var m = new TestMachine();
        byte[] code = X87Frame.Assemble32(c, out _);
        m.WriteBytes(X87Frame.CodeBase, code);
        m.WriteBytes(X87Frame.DataBase, c.Block);
        m.Cpu.Eip = X87Frame.CodeBase;
        m.Cpu[Gpr.Ebx] = X87Frame.DataBase;
        m.Cpu[Gpr.Esp] = X87Frame.StackTop;
        CpuExit exit;
        if (Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_TRACE") == "1")
        {
            // Step by step, with the FPU state after each instruction (for a replayed case).
            while ((exit = m.Cpu.Run(1)).Reason == CpuExitReason.BudgetExhausted)
            {
                FpuSavedState f = m.Cpu.Fpu;
                Console.Error.WriteLine($"  eip={m.Cpu.Eip:x} FSW={f.Status:x4} FTW={f.Tag:x4} ST0={f.St(0)} ST1={f.St(1)}");
            }
        }
        else
        {
            exit = m.Cpu.Run(1000);
        }
        if (exit.Reason != CpuExitReason.Halt) return [];
        return m.Memory.Bytes.Slice((int)X87Frame.DataBase, X87Sequences.BlockSize).ToArray();
    }

    public void Dispose() { }
}

internal sealed class UnicornX87Machine : IX87Machine
{
    private readonly Unicorn _unicorn;

    private UnicornX87Machine(Unicorn unicorn) => _unicorn = unicorn;

    public static UnicornX87Machine? TryCreate() => Unicorn.TryCreate() is { } u ? new UnicornX87Machine(u) : null;

    public string Name => "Unicorn";

    public byte[] Run(X87Sequences.Case c)
    {
        byte[] code = X87Frame.Assemble32(c, out uint hlt);
        _unicorn.Write(X87Frame.CodeBase, code);
        _unicorn.InvalidateCode(X87Frame.CodeBase, X87Frame.CodeBase + 0x100);
        _unicorn.Write(X87Frame.DataBase, c.Block);
        _unicorn.SetReg(Unicorn.RegEbx, X87Frame.DataBase);
        _unicorn.SetReg(Unicorn.RegEsp, X87Frame.StackTop);
        _unicorn.SetReg(Unicorn.RegEflags, 2);
        if (!_unicorn.Run(X87Frame.CodeBase, hlt, 0)) return [];
        return _unicorn.Read(X87Frame.DataBase, X87Sequences.BlockSize);
    }

    public void Dispose() => _unicorn.Dispose();
}

/// <summary>The host processor in 64-bit mode: the same frame with R15 as the base (x87 behaves the same in every mode).</summary>
internal sealed unsafe class NativeX87Machine : IX87Machine
{
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, MapPrivate = 2, MapAnonymous = 0x20;
    [DllImport("libc", SetLastError = true)] private static extern void* mmap(void* address, nuint length, int prot, int flags, int fd, nint offset);
    [DllImport("libc")] private static extern int munmap(void* address, nuint length);

    private readonly byte* _page;
    private readonly byte* _block;

    private NativeX87Machine(byte* page)
    {
        _page = page;
        _block = (byte*)NativeMemory.AlignedAlloc(X87Sequences.BlockSize, 64);
    }

    public static NativeX87Machine? TryCreate()
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || !OperatingSystem.IsLinux()) return null;
        byte* page = (byte*)mmap(null, 4096, ProtRead | ProtWrite | ProtExec, MapPrivate | MapAnonymous, -1, 0);
        return page == (byte*)-1 || page == null ? null : new NativeX87Machine(page);
    }

    public string Name => "host processor";

    public byte[] Run(X87Sequences.Case c)
    {
        var a = new Assembler(64);
        a.push(rbx);
        a.push(r15);
        a.mov(r15, rdi);
        a.xor(eax, eax);
        a.push(__qword_ptr[r15 + X87Sequences.InFlagsOffset]);
        a.popfq();
        a.frstor(__[r15]);
        foreach (Instruction ins in c.Instructions) a.AddInstruction(X87Sequences.Rebase(ins, Register.R15));
        a.mov(__qword_ptr[r15 + X87Sequences.EaxOffset], rax);
        a.pushfq();
        a.pop(rax);
        a.mov(__qword_ptr[r15 + X87Sequences.FlagsOffset], rax);
        a.fnsave(__[r15 + X87Sequences.SaveOffset]);
        a.pop(r15);
        a.pop(rbx);
        a.ret();
        var writer = new CodeWriterImpl();
        a.Assemble(writer, (ulong)_page);
        writer.Bytes.CopyTo(new Span<byte>(_page, 4096));
        var block = new Span<byte>(_block, X87Sequences.BlockSize);
        c.Block.CopyTo(block);
        BitConverter.TryWriteBytes(block[X87Sequences.InFlagsOffset..], (ulong)c.Eflags);
        ((delegate* unmanaged<byte*, void>)_page)(_block);
        byte[] result = block.ToArray();
        result.AsSpan(X87Sequences.InFlagsOffset, 8).Clear();
        return result;
    }

    private sealed class CodeWriterImpl : CodeWriter
    {
        public readonly List<byte> Bytes = [];
        public override void WriteByte(byte value) => Bytes.Add(value);
    }

    public void Dispose()
    {
        munmap(_page, 4096);
        NativeMemory.AlignedFree(_block);
    }
}
