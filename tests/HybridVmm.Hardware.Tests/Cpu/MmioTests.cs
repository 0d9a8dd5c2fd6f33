using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Memory intercepts that complete (MMIO): a fake device claims a two-page window that no RAM backs, so the
/// second-level table refuses every access to it. A small loop answers each exit from a backing array (reads) or
/// stores into it (writes) and calls <see cref="X86Core.CompleteMemoryIntercept"/>. Each test checks the exact
/// device-side access log (address, size, value, order: every access exactly once) and, as the reference, runs the
/// same code with the window replaced by RAM preloaded with the device's bytes: an MMIO read is a memory read of
/// the value the device returns, so registers, flags, RAM and the device's bytes must all be identical.
/// </summary>
public class MmioTests
{
    private const uint Window = 0x40000;     // guest pages 0x40 and 0x41
    private const int WindowSize = 0x2000;
    private const uint Ram = TestMachine.DataBase;

    private readonly record struct Access(char Kind, uint Address, int Size, uint Value)
    {
        public override string ToString() => $"{Kind} {Address:x}/{Size} = {Value:x}";
    }

    /// <summary>A device whose registers behave like memory, with an access log.</summary>
    private sealed class MemoryLikeDevice
    {
        public readonly byte[] Bytes = new byte[WindowSize];
        public readonly List<Access> Log = [];

        public MemoryLikeDevice()
        {
            for (int i = 0; i < WindowSize; i++) Bytes[i] = (byte)(0x11 * (i & 0xf) + (i >> 4));
        }

        public uint Read(uint address, int size)
        {
            uint value = 0;
            for (int i = 0; i < size; i++) value |= (uint)Bytes[address - Window + i] << (8 * i);
            Log.Add(new Access('R', address, size, value));
            return value;
        }

        public void Write(uint address, int size, uint value)
        {
            for (int i = 0; i < size; i++) Bytes[address - Window + i] = (byte)(value >> (8 * i));
            Log.Add(new Access('W', address, size, value));
        }

        public uint U32(uint address) => BitConverter.ToUInt32(Bytes, (int)(address - Window));
    }

    private static TestMachine MmioMachine()
    {
        var m = new TestMachine();
        m.Slat.Unmap(Window >> 12);
        m.Slat.Unmap((Window >> 12) + 1);
        return m;
    }

    /// <summary>Runs to HLT, serving every memory intercept in the window from <paramref name="device"/>.</summary>
    private static void RunWithDevice(TestMachine m, MemoryLikeDevice device, Action<TestMachine, CpuExit>? other = null)
    {
        for (int exits = 0; exits < 10_000; exits++)
        {
            CpuExit exit = m.Cpu.Run(1_000_000);
            if (exit.Reason == CpuExitReason.Halt) return;
            bool inWindow = exit.Reason == CpuExitReason.MemoryIntercept
                && exit.GuestPhysicalAddress >= Window && exit.GuestPhysicalAddress + exit.Size <= Window + WindowSize;
            if (!inWindow)
            {
                Assert.That(other, Is.Not.Null, () => $"unexpected exit {exit}\n{m.Cpu.DescribeState()}");
                other!(m, exit);
                continue;
            }
            Assert.That(m.Cpu.CanCompleteMemoryIntercept, Is.True, exit.ToString);
            if (exit.IsWrite)
            {
                Assert.That(exit.Value & ~Mask(exit.Size), Is.Zero, "a write carries only its low Size bytes");
                device.Write((uint)exit.GuestPhysicalAddress, exit.Size, exit.Value);
                m.Cpu.CompleteMemoryIntercept();
            }
            else
            {
                Assert.That(exit.Value, Is.Zero, "a read intercept carries no value");
                m.Cpu.CompleteMemoryIntercept(device.Read((uint)exit.GuestPhysicalAddress, exit.Size));
            }
        }
        Assert.Fail("too many exits");
    }

    private static uint Mask(int size) => size == 4 ? 0xffffffff : (1u << (8 * size)) - 1;

    /// <summary>
    /// Runs <paramref name="program"/> (then HLT) against the device, and again with the window as RAM holding the
    /// device's initial bytes; asserts both runs end in the same state. Returns the device's access log.
    /// </summary>
    private static List<Access> RunAndCrossCheck(Action<Assembler> program, Action<TestMachine>? setup = null)
    {
        var device = new MemoryLikeDevice();
        var reference = new TestMachine();
        reference.WriteBytes(Window, device.Bytes);
        setup?.Invoke(reference);
        reference.Execute(program);

        var m = MmioMachine();
        setup?.Invoke(m);
        m.Load(asm => { program(asm); asm.hlt(); });
        RunWithDevice(m, device);

        Assert.Multiple(() =>
        {
            foreach (Gpr r in Enum.GetValues<Gpr>())
            {
                Assert.That(m.Cpu[r], Is.EqualTo(reference.Cpu[r]), r.ToString);
            }
            Assert.That(m.Cpu.Eip, Is.EqualTo(reference.Cpu.Eip), "EIP");
            Assert.That(m.Cpu.Eflags, Is.EqualTo(reference.Cpu.Eflags), "EFLAGS");
            Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(reference.Cpu.InstructionsRetired), "retired once each");
            Assert.That(device.Bytes, Is.EqualTo(reference.Memory.Bytes.Slice((int)Window, WindowSize).ToArray()), "device bytes");
            Assert.That(m.Memory.Bytes.Slice(0, (int)Window).SequenceEqual(reference.Memory.Bytes.Slice(0, (int)Window)), "RAM below the window");
            int above = (int)Window + WindowSize;
            Assert.That(m.Memory.Bytes.Slice(above).SequenceEqual(reference.Memory.Bytes.Slice(above)), "RAM above the window");
        });
        return device.Log;
    }

    private static Access R(uint address, int size, uint value) => new('R', address, size, value);
    private static Access W(uint address, int size, uint value) => new('W', address, size, value);

    [Test]
    public void MovReadsOfEveryWidthCompleteWithTheDeviceValue()
    {
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(eax, 0x11223344);
            asm.mov(al, __byte_ptr[Window + 1]);
            asm.mov(bx, __word_ptr[Window + 2]);
            asm.mov(ecx, __dword_ptr[Window + 4]);
            asm.movzx(edx, __byte_ptr[Window + 8]);
            asm.movsx(esi, __word_ptr[Window + 0x1e]);
            asm.movsx(edi, __byte_ptr[Window + 0x8f]);
        });
        var d = new MemoryLikeDevice();
        Assert.That(log, Is.EqualTo(new[]
        {
            R(Window + 1, 1, d.Bytes[1]),
            R(Window + 2, 2, BitConverter.ToUInt16(d.Bytes, 2)),
            R(Window + 4, 4, d.U32(Window + 4)),
            R(Window + 8, 1, d.Bytes[8]),
            R(Window + 0x1e, 2, BitConverter.ToUInt16(d.Bytes, 0x1e)),
            R(Window + 0x8f, 1, d.Bytes[0x8f]),
        }));
    }

    [Test]
    public void MovWritesOfEveryWidthCarryTheirBytesInTheExit()
    {
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(eax, 0xa1b2c3d4);
            asm.mov(__byte_ptr[Window], al);
            asm.mov(__byte_ptr[Window + 3], ah);
            asm.mov(__word_ptr[Window + 6], ax);
            asm.mov(__dword_ptr[Window + 8], eax);
            asm.mov(__dword_ptr[Window + 12], 0x55667788);
            asm.mov(__word_ptr[Window + 16], 0x99aa);
        });
        Assert.That(log, Is.EqualTo(new[]
        {
            W(Window, 1, 0xd4), W(Window + 3, 1, 0xc3), W(Window + 6, 2, 0xc3d4),
            W(Window + 8, 4, 0xa1b2c3d4), W(Window + 12, 4, 0x55667788), W(Window + 16, 2, 0x99aa),
        }));
    }

    [Test]
    public void ReadModifyWriteReadsOnceThenWritesOnce()
    {
        var d = new MemoryLikeDevice();
        uint before = d.U32(Window + 0x20);
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(eax, 0x80000001);
            asm.add(__dword_ptr[Window + 0x20], eax);   // flags come from the device value
            asm.pushfd();
            asm.pop(ebp);
            asm.or(__byte_ptr[Window + 0x25], 0x80);
            asm.sub(__word_ptr[Window + 0x26], 3);
            asm.cmp(__dword_ptr[Window + 0x28], 7);     // read only
            asm.setb(bl);
        });
        Assert.That(log, Is.EqualTo(new[]
        {
            R(Window + 0x20, 4, before), W(Window + 0x20, 4, before + 0x80000001),
            R(Window + 0x25, 1, d.Bytes[0x25]), W(Window + 0x25, 1, d.Bytes[0x25] | 0x80u),
            R(Window + 0x26, 2, BitConverter.ToUInt16(d.Bytes, 0x26)),
            W(Window + 0x26, 2, (BitConverter.ToUInt16(d.Bytes, 0x26) - 3u) & 0xffff),
            R(Window + 0x28, 4, d.U32(Window + 0x28)),
        }));
    }

    [Test]
    public void XchgAndXaddWithTheWindowReadThenWrite()
    {
        var d = new MemoryLikeDevice();
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(ebx, 0xdeadbeef);
            asm.xchg(__dword_ptr[Window + 0x40], ebx);
            asm.mov(ecx, 5);
            asm.xadd(__dword_ptr[Window + 0x44], ecx);
        });
        uint x = d.U32(Window + 0x44);
        Assert.That(log, Is.EqualTo(new[]
        {
            R(Window + 0x40, 4, d.U32(Window + 0x40)), W(Window + 0x40, 4, 0xdeadbeef),
            R(Window + 0x44, 4, x), W(Window + 0x44, 4, x + 5),
        }));
    }

    [Test]
    public void PushAndPopWithAWindowOperand()
    {
        var d = new MemoryLikeDevice();
        var log = RunAndCrossCheck(asm =>
        {
            asm.push(__dword_ptr[Window + 0x50]);
            asm.pop(__dword_ptr[Window + 0x54]);
            asm.push(0x1234);
            asm.pop(__word_ptr[Window + 0x58]);
            asm.pop(__word_ptr[Window + 0x5a]);
        });
        Assert.That(log, Is.EqualTo(new[]
        {
            R(Window + 0x50, 4, d.U32(Window + 0x50)), W(Window + 0x54, 4, d.U32(Window + 0x50)),
            W(Window + 0x58, 2, 0x1234), W(Window + 0x5a, 2, 0),
        }));
    }

    [Test]
    public void RepMovsbIntoTheWindowWritesEachByteOnceInOrder()
    {
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(esi, Ram);
            asm.mov(edi, Window + 0x100);
            asm.mov(ecx, 5);
            asm.rep.movsb();
        }, m => m.WriteBytes(Ram, "hello"u8));
        Assert.That(log, Is.EqualTo("hello"u8.ToArray().Select((b, i) => W(Window + 0x100 + (uint)i, 1, b)).ToArray()));
    }

    [Test]
    public void RepStosdIntoTheWindowAndRepMovsdOutOfItBothDirections()
    {
        var d = new MemoryLikeDevice();
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(eax, 0xcafef00d);
            asm.mov(edi, Window + 0x200);
            asm.mov(ecx, 4);
            asm.rep.stosd();
            asm.mov(esi, Window + 0x300);
            asm.mov(edi, Ram + 0x100);
            asm.mov(ecx, 3);
            asm.rep.movsd();
            asm.std();
            asm.mov(esi, Window + 0x408);
            asm.mov(edi, Ram + 0x208);
            asm.mov(ecx, 3);
            asm.rep.movsd();
            asm.cld();
            asm.lodsb(); // ESI = Window + 0x3fc after the backward copy, DF = 0 again
        });
        var expected = new List<Access>();
        for (uint i = 0; i < 4; i++) expected.Add(W(Window + 0x200 + 4 * i, 4, 0xcafef00d));
        for (uint i = 0; i < 3; i++) expected.Add(R(Window + 0x300 + 4 * i, 4, d.U32(Window + 0x300 + 4 * i)));
        for (uint i = 0; i < 3; i++) expected.Add(R(Window + 0x408 - 4 * i, 4, d.U32(Window + 0x408 - 4 * i)));
        expected.Add(R(Window + 0x3fc, 1, d.Bytes[0x3fc]));
        Assert.That(log, Is.EqualTo(expected));
    }

    [Test]
    public void MovsFromTheWindowToTheWindowReadsThenWritesEachElement()
    {
        var d = new MemoryLikeDevice();
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(esi, Window + 0x500);
            asm.mov(edi, Window + 0x1600);   // second page of the window
            asm.movsd();
            asm.mov(ecx, 2);
            asm.rep.movsw();
        });
        Assert.That(log, Is.EqualTo(new[]
        {
            R(Window + 0x500, 4, d.U32(Window + 0x500)), W(Window + 0x1600, 4, d.U32(Window + 0x500)),
            R(Window + 0x504, 2, BitConverter.ToUInt16(d.Bytes, 0x504)), W(Window + 0x1604, 2, BitConverter.ToUInt16(d.Bytes, 0x504)),
            R(Window + 0x506, 2, BitConverter.ToUInt16(d.Bytes, 0x506)), W(Window + 0x1606, 2, BitConverter.ToUInt16(d.Bytes, 0x506)),
        }));
    }

    [Test]
    public void AccessesCrossingFromRamIntoTheWindowSplitAtThePage()
    {
        var d = new MemoryLikeDevice();
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(eax, __dword_ptr[Window - 2]);         // RAM 2 bytes, then the device 2 bytes
            asm.mov(ebx, 0x44332211);
            asm.mov(__dword_ptr[Window - 1], ebx);         // RAM 1 byte, then the device 3 bytes
            asm.add(__word_ptr[Window - 1], 0x101);        // RAM 1 byte + device 1 byte, read then write
        }, m => m.WriteBytes(Window - 4, [0xa0, 0xa1, 0xa2, 0xa3]));
        Assert.That(log, Is.EqualTo(new[]
        {
            R(Window, 2, BitConverter.ToUInt16(d.Bytes, 0)),
            W(Window, 3, 0x443322),
            R(Window, 1, 0x22),
            W(Window, 1, 0x23),
        }));
    }

    [Test]
    public void AnAccessCrossingBothWindowPagesIsTwoDeviceAccesses()
    {
        var d = new MemoryLikeDevice();
        var log = RunAndCrossCheck(asm =>
        {
            asm.mov(eax, __dword_ptr[Window + 0xffd]);     // 3 bytes in page 0x40, 1 in page 0x41
            asm.mov(__dword_ptr[Window + 0xffe], 0x87654321);
        });
        Assert.That(log, Is.EqualTo(new[]
        {
            R(Window + 0xffd, 3, d.U32(Window + 0xffc) >> 8), R(Window + 0x1000, 1, d.Bytes[0x1000]),
            W(Window + 0xffe, 2, 0x4321), W(Window + 0x1000, 2, 0x8765),
        }));
    }

    [Test]
    public void EveryReadOfASideEffectingRegisterHappensOnce()
    {
        // A FIFO: each read returns the next value. A repeated device access would show in the sums.
        var m = MmioMachine();
        m.Load(asm =>
        {
            asm.mov(eax, __dword_ptr[Window]);
            asm.add(eax, __dword_ptr[Window]);
            asm.imul(ebx, __dword_ptr[Window], 10);
            asm.hlt();
        });
        uint next = 1;
        int reads = 0;
        while (true)
        {
            CpuExit exit = m.Cpu.Run(1000);
            if (exit.Reason == CpuExitReason.Halt) break;
            Assert.That((exit.Reason, exit.GuestPhysicalAddress, exit.IsWrite, exit.Size), Is.EqualTo((CpuExitReason.MemoryIntercept, Window, false, (byte)4)));
            reads++;
            m.Cpu.CompleteMemoryIntercept(next++);
        }
        Assert.That((reads, m.Cpu[Gpr.Eax], m.Cpu[Gpr.Ebx], m.Cpu.InstructionsRetired), Is.EqualTo((3, 1u + 2u, 30u, 4L)));
    }

    [Test]
    public void WriteProtectionStillResolvesByReexecutionAndKeepsCompletedReads()
    {
        // MOVSD from the device into a write-protected RAM page: the read completes, the write then meets the
        // write protection, which the hypervisor lifts and re-runs without a completion (copy-on-write).
        var m = MmioMachine();
        var device = new MemoryLikeDevice();
        m.Slat.SetWritable(Ram >> 12, false);
        m.Load(asm =>
        {
            asm.mov(esi, Window + 0x10);
            asm.mov(edi, Ram);
            asm.movsd();
            asm.hlt();
        });
        int protectionExits = 0;
        RunWithDevice(m, device, (machine, exit) =>
        {
            Assert.That((exit.Reason, exit.GuestPhysicalAddress, exit.IsWrite, exit.Value), Is.EqualTo((CpuExitReason.MemoryIntercept, Ram, true, device.U32(Window + 0x10))));
            protectionExits++;
            machine.Slat.SetWritable(Ram >> 12, true);
        });
        Assert.That(protectionExits, Is.EqualTo(1));
        Assert.That(device.Log, Is.EqualTo(new[] { R(Window + 0x10, 4, device.U32(Window + 0x10)) }));
        Assert.That(m.Read32(Ram), Is.EqualTo(device.U32(Window + 0x10)));
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edi]), Is.EqualTo((Window + 0x14, Ram + 4)));
    }

    [Test]
    public void AnInterruptRequestedAtTheExitWaitsUntilTheCompletedInstructionRetires()
    {
        const uint idt = 0x30000, idtDescriptor = 0x2F000, handler = 0x5000;
        var m = MmioMachine();
        m.WriteBytes(idtDescriptor, BitConverter.GetBytes((ushort)(256 * 8 - 1)));
        m.Write32(idtDescriptor + 2, idt);
        m.Write32(idt + 0x40 * 8, (handler & 0xffff) | (0x08u << 16));
        m.Write32(idt + 0x40 * 8 + 4, (handler & 0xffff0000) | 0x8E00);
        m.Load(asm => { asm.mov(edx, eax); asm.iretd(); }, handler);   // the handler sees EAX
        m.Load(asm =>
        {
            asm.lidt(__[idtDescriptor]);
            asm.sti();
            asm.nop();
            asm.mov(eax, __dword_ptr[Window]);
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(1000);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.MemoryIntercept));
        m.Cpu.RequestInterrupt(0x40);
        m.Cpu.CompleteMemoryIntercept(0x600d);
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(0x600d), "the MOV retired before the interrupt was taken");
    }

    [Test]
    public void FetchFromTheWindowAndAWriteProbeCannotBeCompleted()
    {
        var m = MmioMachine();
        m.Load(asm => asm.jmp(Window));
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: Window, IsWrite: false, Size: 1)));
        Assert.That(m.Cpu.CanCompleteMemoryIntercept, Is.False);
        Assert.Throws<InvalidOperationException>(() => m.Cpu.CompleteMemoryIntercept(0));

        // PUSHA probes its whole destination before the first write: no data, nothing to complete.
        m = MmioMachine();
        m.Cpu[Gpr.Esp] = Window + 0x10;
        m.Load(asm => { asm.pushad(); asm.hlt(); });
        exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.GuestPhysicalAddress, exit.IsWrite), Is.EqualTo((CpuExitReason.MemoryIntercept, Window, true)));
        Assert.That(m.Cpu.CanCompleteMemoryIntercept, Is.False);
    }

    [Test]
    public void CompletingTwiceOrWithoutAnInterceptIsRefused()
    {
        var m = MmioMachine();
        m.Load(asm => { asm.mov(eax, __dword_ptr[Window]); asm.hlt(); });
        Assert.Throws<InvalidOperationException>(() => m.Cpu.CompleteMemoryIntercept(1));
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.MemoryIntercept));
        Assert.That(m.Cpu.CanCompleteMemoryIntercept, Is.True);
        m.Cpu.CompleteMemoryIntercept(7);
        Assert.Throws<InvalidOperationException>(() => m.Cpu.CompleteMemoryIntercept(8));
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(7));
    }

    [Test]
    public void WithoutACompletionTheInstructionExitsAgainUnchanged()
    {
        var m = MmioMachine();
        m.Load(asm => { asm.mov(eax, 1); asm.add(eax, __dword_ptr[Window]); asm.hlt(); });
        CpuExit first = m.Cpu.Run(100);
        CpuExit second = m.Cpu.Run(100);
        Assert.That(second, Is.EqualTo(first));
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu.InstructionsRetired), Is.EqualTo((1u, 1L)));
    }
}
