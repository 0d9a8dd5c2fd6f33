using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Support;

/// <summary>
/// A guest that answers on COM1 what it receives: it sets 8N1 at the reset divisor (9600 baud), turns the FIFOs on,
/// raises DTR and RTS, prints "ready\n", then polls LSR.DR and sends every byte back, lower-case letters in upper case,
/// until it receives '.', when it exits through port 0xF4 with <see cref="ExitValue"/>, or '!', when it resets the
/// machine through the keyboard controller.
/// </summary>
public static class SerialEchoGuest
{
    public const int ExitValue = 3;

    public static byte[] Build() => FlatKernel.Build(a =>
    {
        a.mov(dx, 0x3FB); a.mov(al, 0x03); a.@out(dx, al);    // LCR: 8N1, DLAB off
        a.mov(dx, 0x3FA); a.mov(al, 0x07); a.@out(dx, al);    // FCR: FIFOs on and emptied
        a.mov(dx, 0x3FC); a.mov(al, 0x03); a.@out(dx, al);    // MCR: DTR | RTS, ready to receive
        a.mov(dx, 0x3F8);
        foreach (char c in "ready\n")
        {
            a.mov(al, (byte)c); a.@out(dx, al);
        }

        Label poll = a.CreateLabel(), send = a.CreateLabel(), done = a.CreateLabel(), reset = a.CreateLabel();
        a.Label(ref poll);
        a.mov(dx, 0x3FD); a.@in(al, dx); a.test(al, 0x01); a.jz(poll);
        a.mov(dx, 0x3F8); a.@in(al, dx);
        a.cmp(al, (byte)'.'); a.je(done);
        a.cmp(al, (byte)'!'); a.je(reset);
        a.cmp(al, (byte)'a'); a.jb(send);
        a.cmp(al, (byte)'z'); a.ja(send);
        a.sub(al, 0x20);
        a.Label(ref send);
        a.@out(dx, al);
        a.jmp(poll);
        a.Label(ref done);
        a.mov(eax, ExitValue); a.@out(0xF4, eax);
        a.hlt();
        a.Label(ref reset);
        a.mov(al, 0xFE); a.@out(0x64, al);
        a.hlt();
    });

    /// <summary>Writes the guest to a temporary file and returns its path.</summary>
    public static string WriteToTempFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"serial-echo-{Guid.NewGuid():N}.elf");
        File.WriteAllBytes(path, Build());
        return path;
    }
}
