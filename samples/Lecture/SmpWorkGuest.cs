using HybridVmm.Guests.Multiboot;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// A Multiboot guest that spreads work over its processors as an SMP kernel does. The bootstrap processor starts the
/// application processors with INIT and start-up IPIs (a real-mode trampoline at 0x8000 that enters protected mode
/// with the BSP's GDT), then, each round, gives every AP a slice of a sum of squares in its mailbox and wakes it with
/// a fixed IPI (vector 0x40). It works on its own slice meanwhile, then halts until every AP has answered with an IPI
/// of its own (vector 0x41). The APs halt between jobs. Each round's total goes to COM1 as eight hex digits; the sums
/// do not depend on who ran when, so the output is the same on any machine with the same number of processors.
/// </summary>
public static class SmpWorkGuest
{
    public const int Rounds = 8;
    public const uint SliceLength = 20_000;

    private const uint Trampoline = 0x8000, GdtCopy = 0x8100, Stub = 0x8200, ApCounter = 0x8300, ApMainAddress = 0x8304,
        IdtRegister = 0x8308, Ready = 0x8310, Mailboxes = 0x8400, Idt = 0x9000;
    private const uint ApicBase = 0xFEE0_0000, ApicEoi = ApicBase + 0xB0, ApicSvr = ApicBase + 0xF0, IcrLow = ApicBase + 0x300, IcrHigh = ApicBase + 0x310;
    private const int WorkVector = 0x40, DoneVector = 0x41;

    // A mailbox per AP, 16 bytes: busy flag, first number, count, result.
    private const uint Busy = 0, First = 4, Count = 8, Result = 12;

    /// <summary>The image for a machine of <paramref name="processors"/> processors (2 to 8: the BSP and its APs).</summary>
    public static byte[] Build(int processors)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(processors, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(processors, 8);
        byte[] trampoline = Assemble(a =>
        {
            a.cli();
            a.xor(ax, ax);
            a.mov(ds, ax);
            a.lgdt(__[GdtCopy]);
            a.mov(eax, cr0);
            a.or(eax, 1);
            a.mov(cr0, eax);
            a.db(0x66, 0xEA); // JMP FAR ptr16:32 into the 32-bit stub, through the flat code segment 0x08
            a.dd(Stub);
            a.dw(0x08);
            return [];
        }, Trampoline, 16, out _);
        byte[] stub = Assemble(a =>
        {
            a.mov(ax, 0x10);
            a.mov(ds, ax); a.mov(es, ax); a.mov(ss, ax); a.mov(fs, ax); a.mov(gs, ax);
            a.mov(ebx, 1);
            a.@lock.xadd(__dword_ptr[ApCounter], ebx); // EBX: this AP's number, 0 for the first
            a.inc(ebx);                                   // 1 to N-1
            a.mov(esp, ebx);
            a.shl(esp, 12);
            a.add(esp, 0x70000);                          // its own 4 KiB stack
            a.jmp(__dword_ptr[ApMainAddress]);
            return [];
        }, Stub, 32, out _);

        // Assembled twice: the first pass finds where the handler and the AP's main loop land, the second writes their
        // addresses into the code (MOV r32, imm32 has one length, so nothing moves).
        uint handler = 0, apMain = 0;
        byte[] code = [];
        for (int pass = 0; pass < 2; pass++)
        {
            code = Assemble(a => Program(a, processors, trampoline, stub, handler, apMain), FlatMultibootImage.Entry, 32, out uint[] labels);
            (handler, apMain) = (labels[0], labels[1]);
        }

        return FlatMultibootImage.Wrap(code);
    }

    /// <summary>The BSP's and the APs' code; returns the labels whose addresses the code holds (the handler, the AP's main).</summary>
    private static Label[] Program(Assembler a, int processors, byte[] trampoline, byte[] stub, uint handlerAddress, uint apMainAddress)
    {
        Label handler = a.CreateLabel(), apMain = a.CreateLabel(), hex8 = a.CreateLabel(), nibble = a.CreateLabel();
        Label letter = a.CreateLabel(), round = a.CreateLabel(), give = a.CreateLabel(), own = a.CreateLabel(), wait = a.CreateLabel();
        Label waitReady = a.CreateLabel(), allDone = a.CreateLabel(), apLoop = a.CreateLabel(), apWork = a.CreateLabel(), apSum = a.CreateLabel();
        Label bspSum = a.CreateLabel(), collect = a.CreateLabel();
        int aps = processors - 1;

        a.mov(esp, 0x6F000);
        a.mov(al, 0xFF);  // both 8259s masked: only IPIs interrupt (the PIT's ticks would find no gate)
        a.@out(0x21, al);
        a.@out(0xA1, al);
        // The IDT: vectors 0x40 and 0x41 are interrupt gates to the handler, which ends the interrupt at the local APIC.
        foreach (int vector in new[] { WorkVector, DoneVector })
        {
            uint gate = Idt + (uint)(vector * 8);
            a.mov(__dword_ptr[gate], (0x08 << 16) | (handlerAddress & 0xFFFF));
            a.mov(__dword_ptr[gate + 4], (handlerAddress & 0xFFFF_0000) | 0x8E00);
        }

        a.mov(__word_ptr[IdtRegister], 0x7FF);
        a.mov(__dword_ptr[IdtRegister + 2], Idt);
        a.lidt(__[IdtRegister]);
        a.sgdt(__[GdtCopy]);
        a.mov(__dword_ptr[ApMainAddress], apMainAddress);
        a.mov(__dword_ptr[ApCounter], 0);
        a.mov(__dword_ptr[Ready], 0);
        Copy(a, trampoline, Trampoline);
        Copy(a, stub, Stub);
        a.mov(__dword_ptr[ApicSvr], 0x1FF); // the local APIC on, spurious vector 0xFF

        // The MP specification's start-up: INIT, a pause, then two start-up IPIs with vector 0x08 (0x8000), each after a
        // pause, to every AP (APIC IDs 1 to N-1). A processor that did not yet take its INIT drops a start-up IPI, which is
        // why there are two; one already started ignores the second. (QEMU's vCPU threads take them at their own pace.)
        for (int id = 1; id <= aps; id++)
        {
            foreach (int icr in new[] { 0x4500, 0x4608, 0x4608 })
            {
                a.mov(__dword_ptr[IcrHigh], id << 24);
                a.mov(__dword_ptr[IcrLow], icr);
                Label pause = a.CreateLabel();
                a.mov(ecx, 20_000);
                a.Label(ref pause);
                a.pause();
                a.dec(ecx);
                a.jnz(pause);
            }
        }

        a.Label(ref waitReady);
        a.pause();
        a.cmp(__dword_ptr[Ready], aps);
        a.jne(waitReady);

        // EBP: the round. Each round's numbers: slice k of round r starts at (r * N + k) * SliceLength.
        a.xor(ebp, ebp);
        a.Label(ref round);
        a.mov(ecx, 1);
        a.Label(ref give); // mailbox of AP ECX, then a fixed IPI to it
        a.mov(eax, ebp);
        a.imul(eax, eax, processors);
        a.add(eax, ecx);
        a.imul(eax, eax, (int)SliceLength);
        a.mov(edi, ecx);
        a.shl(edi, 4);
        a.add(edi, Mailboxes);
        a.mov(__dword_ptr[edi + First], eax);
        a.mov(__dword_ptr[edi + Count], SliceLength);
        a.mov(__dword_ptr[edi + Busy], 1);
        a.mov(eax, ecx);
        a.shl(eax, 24);
        a.mov(__dword_ptr[IcrHigh], eax);
        a.mov(__dword_ptr[IcrLow], WorkVector);
        a.inc(ecx);
        a.cmp(ecx, processors);
        a.jb(give);

        // Its own slice, k = 0, meanwhile.
        a.mov(esi, ebp);
        a.imul(esi, esi, processors * (int)SliceLength);
        a.mov(ecx, SliceLength);
        a.xor(ebx, ebx);
        a.Label(ref bspSum);
        a.mov(eax, esi); a.imul(eax, eax); a.add(ebx, eax); a.inc(esi); a.dec(ecx); a.jnz(bspSum);

        // Halts until every AP has cleared its busy flag (each wakes it with an IPI); STI;HLT cannot miss one.
        a.Label(ref wait);
        a.cli();
        a.mov(ecx, 1);
        a.Label(ref collect);
        a.mov(edi, ecx);
        a.shl(edi, 4);
        a.cmp(__dword_ptr[edi + Mailboxes + Busy], 0);
        a.jne(own); // still busy: halt and look again
        a.inc(ecx);
        a.cmp(ecx, processors);
        a.jb(collect);
        a.jmp(allDone);
        a.Label(ref own);
        a.sti();
        a.hlt();
        a.jmp(wait);

        a.Label(ref allDone);
        a.sti();
        a.mov(ecx, 1);
        Label add = a.CreateLabel();
        a.Label(ref add);
        a.mov(edi, ecx);
        a.shl(edi, 4);
        a.add(ebx, __dword_ptr[edi + Mailboxes + Result]);
        a.inc(ecx);
        a.cmp(ecx, processors);
        a.jb(add);
        a.mov(eax, ebx);
        a.call(hex8);
        a.inc(ebp);
        a.cmp(ebp, Rounds);
        a.jb(round);
        a.mov(eax, 0);
        a.@out(0xF4, eax); // the end under HybridVmm (the debug-exit port) ...
        a.mov(al, 0xFE);
        a.@out(0x64, al);  // ... and under QEMU, which has no such port by default: a reset, which -no-reboot ends on
        a.hlt();

        // An AP, in protected mode on its own stack with its number in EBX: the IDT, its local APIC, ready; then it
        // halts until a job is in its mailbox, works, and tells the BSP with an IPI.
        a.Label(ref apMain);
        a.lidt(__[IdtRegister]);
        a.mov(__dword_ptr[ApicSvr], 0x1FF);
        a.mov(edi, ebx);
        a.shl(edi, 4);
        a.add(edi, Mailboxes);
        a.@lock.inc(__dword_ptr[Ready]);
        a.Label(ref apLoop);
        a.cli();
        a.cmp(__dword_ptr[edi + Busy], 0);
        a.jne(apWork);
        a.sti();
        a.hlt();
        a.jmp(apLoop);
        a.Label(ref apWork);
        a.sti();
        a.mov(esi, __dword_ptr[edi + First]);
        a.mov(ecx, __dword_ptr[edi + Count]);
        a.xor(edx, edx);
        a.Label(ref apSum);
        a.mov(eax, esi); a.imul(eax, eax); a.add(edx, eax); a.inc(esi); a.dec(ecx); a.jnz(apSum);
        a.mov(__dword_ptr[edi + Result], edx);
        a.mov(__dword_ptr[edi + Busy], 0);
        a.mov(__dword_ptr[IcrHigh], 0);           // to the BSP, APIC ID 0
        a.mov(__dword_ptr[IcrLow], DoneVector);
        a.jmp(apLoop);

        a.Label(ref handler);
        a.mov(__dword_ptr[ApicEoi], 0);
        a.iretd();

        a.Label(ref hex8); // EAX as eight hex digits and a newline on COM1
        a.mov(edx, 0x3F8);
        a.mov(ecx, 8);
        Label next = a.CreateLabel();
        a.Label(ref next);
        a.rol(eax, 4);
        a.call(nibble);
        a.dec(ecx);
        a.jnz(next);
        a.mov(esi, eax); a.mov(al, (byte)'\n'); a.@out(dx, al); a.mov(eax, esi);
        a.ret();
        a.Label(ref nibble); // the low nibble of AL as a hex digit; EAX kept
        a.mov(esi, eax); a.and(al, 15); a.add(al, (byte)'0'); a.cmp(al, (byte)'9'); a.jbe(letter); a.add(al, 7);
        a.Label(ref letter);
        a.@out(dx, al); a.mov(eax, esi);
        a.ret();
        return [handler, apMain];
    }

    /// <summary>Copies code into low memory with 32-bit stores.</summary>
    private static void Copy(Assembler a, byte[] code, uint address)
    {
        byte[] padded = [.. code, .. new byte[(4 - (code.Length % 4)) % 4]];
        for (int i = 0; i < padded.Length; i += 4)
        {
            a.mov(__dword_ptr[address + (uint)i], BitConverter.ToInt32(padded, i));
        }
    }

    private static byte[] Assemble(Func<Assembler, Label[]> build, uint address, int bitness, out uint[] labels)
    {
        var asm = new Assembler(bitness);
        Label[] wanted = build(asm);
        using var stream = new MemoryStream();
        AssemblerResult result = asm.Assemble(new StreamCodeWriter(stream), address, BlockEncoderOptions.ReturnNewInstructionOffsets);
        labels = [.. wanted.Select(l => (uint)result.GetLabelRIP(l))];
        return stream.ToArray();
    }
}
