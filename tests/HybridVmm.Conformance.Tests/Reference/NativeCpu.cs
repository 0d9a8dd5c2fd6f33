using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Conformance.Tests.Reference;

/// <summary>
/// Runs one instruction on the host processor (x86-64, 64-bit mode): a stub on an executable page loads
/// EAX..EDI (not ESP) and the status flags from a state block, runs the instruction placed in a 16-byte
/// slot, and stores the registers and RFLAGS back. A memory operand is rewritten to <c>[r15+40]</c>, 8 bytes
/// of the state block. Only forms whose 32-bit behaviour is the same in 64-bit mode go here, and never with
/// inputs that fault (#DE).
/// </summary>
internal sealed unsafe class NativeCpu : IDisposable
{
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, MapPrivate = 2, MapAnonymous = 0x20;
    private const nuint PageSize = 4096;
    public const int SlotSize = 16;

    [DllImport("libc", SetLastError = true)] private static extern void* mmap(void* address, nuint length, int prot, int flags, int fd, nint offset);
    [DllImport("libc")] private static extern int munmap(void* address, nuint length);

    private readonly byte* _page;
    private readonly byte* _slot;
    private readonly uint* _state; // 8 GPRs (index 4 unused), RFLAGS as a 64-bit value at byte 32, memory operand at byte 40
    public const int MemoryOffset = 40;
    private readonly delegate* unmanaged<uint*, void> _run;

    private NativeCpu(byte* page, byte* slot)
    {
        _page = page;
        _slot = slot;
        _state = (uint*)NativeMemory.AllocZeroed(64);
        _run = (delegate* unmanaged<uint*, void>)page;
    }

    /// <summary>Null when the host is not x86-64 Linux or refuses an executable mapping.</summary>
    public static NativeCpu? TryCreate()
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || !OperatingSystem.IsLinux()) return null;
        byte* page = (byte*)mmap(null, PageSize, ProtRead | ProtWrite | ProtExec, MapPrivate | MapAnonymous, -1, 0);
        if (page == (byte*)-1 || page == null) return null;

        var a = new Assembler(64);
        a.push(rbx); a.push(rbp); a.push(r12); a.push(r13); a.push(r14); a.push(r15);
        a.mov(r15, rdi);
        a.mov(r14, rsp);
        a.push(__qword_ptr[r15 + 32]);
        a.popfq();
        a.mov(eax, __dword_ptr[r15]);
        a.mov(ecx, __dword_ptr[r15 + 4]);
        a.mov(edx, __dword_ptr[r15 + 8]);
        a.mov(ebx, __dword_ptr[r15 + 12]);
        a.mov(ebp, __dword_ptr[r15 + 20]);
        a.mov(esi, __dword_ptr[r15 + 24]);
        a.mov(edi, __dword_ptr[r15 + 28]);
        Label slot = a.CreateLabel();
        a.Label(ref slot);
        for (int i = 0; i < SlotSize; i++) a.nop();
        a.pushfq();
        a.pop(__qword_ptr[r15 + 32]);
        a.mov(__dword_ptr[r15], eax);
        a.mov(__dword_ptr[r15 + 4], ecx);
        a.mov(__dword_ptr[r15 + 8], edx);
        a.mov(__dword_ptr[r15 + 12], ebx);
        a.mov(__dword_ptr[r15 + 20], ebp);
        a.mov(__dword_ptr[r15 + 24], esi);
        a.mov(__dword_ptr[r15 + 28], edi);
        a.mov(rsp, r14);
        a.cld();
        a.pop(r15); a.pop(r14); a.pop(r13); a.pop(r12); a.pop(rbp); a.pop(rbx);
        a.ret();
        var stream = new MemoryStream();
        AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), (ulong)page, BlockEncoderOptions.ReturnNewInstructionOffsets);
        byte[] code = stream.ToArray();
        code.CopyTo(new Span<byte>(page, (int)PageSize));
        ulong slotAddress = result.GetLabelRIP(slot);
        return new NativeCpu(page, page + (slotAddress - (ulong)page));
    }

    /// <summary>Runs <paramref name="instruction"/> (64-bit encoding, at most 16 bytes) on the given state.</summary>
    public void Run(ReadOnlySpan<byte> instruction, Span<uint> gprs, ref uint flags, Span<byte> memory)
    {
        var operand = new Span<byte>((byte*)_state + MemoryOffset, 8);
        memory.CopyTo(operand);
        var slot = new Span<byte>(_slot, SlotSize);
        slot.Fill(0x90);
        instruction.CopyTo(slot);
        for (int i = 0; i < 8; i++) _state[i] = gprs[i];
        *(ulong*)(_state + 8) = flags & 0x8D5u | 2u; // status flags only: TF/IF/DF/AC stay as the ABI wants them
        _run(_state);
        for (int i = 0; i < 8; i++) if (i != 4) gprs[i] = _state[i];
        flags = (uint)*(ulong*)(_state + 8);
        operand.CopyTo(memory);
    }

    /// <summary>
    /// Runs <c>ret imm16</c> on the host on a private stack and returns how far it moved RSP beyond the
    /// popped return address: imm16 if the immediate is zero-extended (SDM), imm16 - 0x10000 if sign-extended.
    /// </summary>
    public long RetImm16Displacement(ushort imm)
    {
        byte* stub = _page + 2048;
        var a = new Assembler(64);
        Label after = a.CreateLabel();
        a.mov(rax, rsp);
        a.mov(rsp, rdi);
        a.lea(rcx, __[after]);
        a.push(rcx);
        a.ret(imm);
        a.Label(ref after);
        a.mov(rdx, rsp);
        a.mov(rsp, rax);
        a.mov(rax, rdx);
        a.sub(rax, rdi);
        a.ret();
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), (ulong)stub);
        stream.ToArray().CopyTo(new Span<byte>(stub, 1024));
        const int StackBytes = 0x40000;
        byte* stack = (byte*)NativeMemory.Alloc(StackBytes);
        try
        {
            var run = (delegate* unmanaged<byte*, long>)stub;
            return run(stack + 0x20000);
        }
        finally
        {
            NativeMemory.Free(stack);
        }
    }

    public void Dispose()
    {
        munmap(_page, PageSize);
        NativeMemory.Free(_state);
    }
}
