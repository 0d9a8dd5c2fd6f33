namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Decimal adjust instructions (SDM Vol. 2A, DAA/DAS/AAA/AAS/AAM/AAD), following the SDM pseudo-code.
/// Undefined flags follow QEMU's helpers (docs/undefined-flags.md).
/// </summary>
public sealed partial class X86Core
{
    private uint Al => _ctx.Eax & 0xff;

    private void SetAl(uint al) => _ctx.Eax = (_ctx.Eax & 0xffffff00) | (al & 0xff);

    private bool Daa()
    {
        uint oldAl = Al;
        bool oldCf = (_ctx.Eflags & CF) != 0;
        uint al = oldAl;
        uint f = 0;
        if ((al & 0x0f) > 9 || (_ctx.Eflags & AF) != 0)
        {
            al += 6;
            f |= AF;
        }
        if (oldAl > 0x99 || oldCf)
        {
            al += 0x60;
            f |= CF;
        }
        al &= 0xff;
        SetAl(al);
        SetStatus(f | Szp(al, 1)); // OF undefined: 0
        return true;
    }

    private bool Das()
    {
        uint oldAl = Al;
        bool oldCf = (_ctx.Eflags & CF) != 0;
        uint al = oldAl;
        uint f = 0;
        if ((al & 0x0f) > 9 || (_ctx.Eflags & AF) != 0)
        {
            if (al < 6 || oldCf) f |= CF; // CF <- old_CF or borrow from AL - 6
            al -= 6;
            f |= AF;
        }
        if (oldAl > 0x99 || oldCf)
        {
            al -= 0x60;
            f |= CF;
        }
        al &= 0xff;
        SetAl(al);
        SetStatus(f | Szp(al, 1)); // OF undefined: 0
        return true;
    }

    private bool Aaa()
    {
        // OF, SF, ZF, PF are undefined and left unchanged.
        if ((Al & 0x0f) > 9 || (_ctx.Eflags & AF) != 0)
        {
            uint ax = (_ctx.Eax + 0x106) & 0xffff;
            _ctx.Eax = (_ctx.Eax & 0xffff0000) | (ax & 0xff0f);
            _ctx.Eflags |= AF | CF;
        }
        else
        {
            _ctx.Eax &= 0xffffff0f;
            _ctx.Eflags &= ~(AF | CF);
        }
        return true;
    }

    private bool Aas()
    {
        if ((Al & 0x0f) > 9 || (_ctx.Eflags & AF) != 0)
        {
            uint ax = (_ctx.Eax - 6) & 0xffff;
            uint ah = ((ax >> 8) - 1) & 0xff;
            _ctx.Eax = (_ctx.Eax & 0xffff0000) | (ah << 8) | (ax & 0x0f);
            _ctx.Eflags |= AF | CF;
        }
        else
        {
            _ctx.Eax &= 0xffffff0f;
            _ctx.Eflags &= ~(AF | CF);
        }
        return true;
    }

    private bool Aam(ref Iced.Intel.Instruction ins)
    {
        uint imm = ins.Immediate8;
        if (imm == 0) return Fault(ExceptionVector.DivideError);
        uint al = Al;
        uint ah = al / imm;
        al %= imm;
        _ctx.Eax = (_ctx.Eax & 0xffff0000) | (ah << 8) | al;
        SetStatus(Szp(al, 1)); // OF, AF, CF undefined: 0
        return true;
    }

    private bool Aad(ref Iced.Intel.Instruction ins)
    {
        uint al = (Al + ((_ctx.Eax >> 8) & 0xff) * ins.Immediate8) & 0xff;
        _ctx.Eax = (_ctx.Eax & 0xffff0000) | al;
        SetStatus(Szp(al, 1)); // OF, AF, CF undefined: 0
        return true;
    }
}
