using HybridVmm.Hardware.Cpu;

namespace HybridVmm.Hardware.Tests.Cpu.Fpu;

/// <summary>
/// The soft-float on cases whose exact answer is known independently (computed with exact rational arithmetic, or
/// given by the SDM): rounding in every mode and precision, specials, flags.
/// </summary>
public class SoftFloatTests
{
    private static Float80 X(ushort se, ulong sig) => new(sig, se);
    private static readonly Float80 Three = SoftFloat.FromInteger(3);
    private static readonly Float80 MinusTwo = SoftFloat.FromInteger(-2);

    [TestCase(FpuRounding.Nearest, 64, 0x3FFDu, 0xAAAAAAAAAAAAAAABUL, true)]
    [TestCase(FpuRounding.Down, 64, 0x3FFDu, 0xAAAAAAAAAAAAAAAAUL, false)]
    [TestCase(FpuRounding.TowardZero, 64, 0x3FFDu, 0xAAAAAAAAAAAAAAAAUL, false)]
    [TestCase(FpuRounding.Up, 64, 0x3FFDu, 0xAAAAAAAAAAAAAAABUL, true)]
    [TestCase(FpuRounding.Nearest, 53, 0x3FFDu, 0xAAAAAAAAAAAAA800UL, false)]
    [TestCase(FpuRounding.Nearest, 24, 0x3FFDu, 0xAAAAAB0000000000UL, true)]
    public void OneThirdRoundsByModeAndPrecision(FpuRounding rc, int precision, uint se, ulong sig, bool roundedUp)
    {
        var env = new FpuEnvironment(rc, precision);
        Float80 r = SoftFloat.Divide(ref env, Float80.One, Three);
        Assert.That(r, Is.EqualTo(X((ushort)se, sig)));
        Assert.That(env.Flags, Is.EqualTo(FpuExceptions.Precision));
        Assert.That(env.RoundedUp, Is.EqualTo(roundedUp), "C1");
    }

    [TestCase(FpuRounding.Up, 0xAAAAAAAAAAAAAAAAUL)]
    [TestCase(FpuRounding.Down, 0xAAAAAAAAAAAAAAABUL)]
    public void NegativeQuotientRoundsTowardTheRightInfinity(FpuRounding rc, ulong sig)
    {
        var env = new FpuEnvironment(rc);
        Assert.That(SoftFloat.Divide(ref env, MinusTwo, Three), Is.EqualTo(X(0xBFFE, sig)));
    }

    [Test]
    public void SquareRootOfTwoIsCorrectlyRounded()
    {
        var env = new FpuEnvironment(FpuRounding.Nearest);
        Assert.That(SoftFloat.Sqrt(ref env, SoftFloat.FromInteger(2)), Is.EqualTo(X(0x3FFF, 0xB504F333F9DE6484)));
        Assert.That(env.Flags, Is.EqualTo(FpuExceptions.Precision));
    }

    [Test]
    public void AdditionTiesToEven()
    {
        // 1 + 2^-64 is halfway between 1 and its successor: nearest-even gives 1; 1 + 2^-63 + 2^-64 rounds up.
        var env = new FpuEnvironment(FpuRounding.Nearest);
        Float80 half = X(0x3FFF - 64, 0x8000000000000000);
        Assert.That(SoftFloat.Add(ref env, Float80.One, half), Is.EqualTo(Float80.One));
        Float80 onePlusUlp = X(0x3FFF, 0x8000000000000001);
        Assert.That(SoftFloat.Add(ref env, onePlusUlp, half), Is.EqualTo(X(0x3FFF, 0x8000000000000002)));
    }

    [Test]
    public void SpecialCasesFollowTheSdm()
    {
        var env = new FpuEnvironment(FpuRounding.Nearest);
        Assert.That(SoftFloat.Subtract(ref env, Float80.PositiveInfinity, Float80.PositiveInfinity), Is.EqualTo(Float80.Indefinite));
        Assert.That(env.Flags, Is.EqualTo(FpuExceptions.Invalid));

        env = new FpuEnvironment(FpuRounding.Nearest);
        Assert.That(SoftFloat.Divide(ref env, MinusTwo, Float80.Zero), Is.EqualTo(Float80.NegativeInfinity));
        Assert.That(env.Flags, Is.EqualTo(FpuExceptions.ZeroDivide));

        env = new FpuEnvironment(FpuRounding.Down);
        Assert.That(SoftFloat.Subtract(ref env, Three, Three), Is.EqualTo(Float80.NegativeZero), "x - x is -0 when rounding down");

        env = new FpuEnvironment(FpuRounding.Nearest);
        Float80 snan = X(0x7FFF, 0x8000000000000001);
        Assert.That(SoftFloat.Add(ref env, snan, Float80.One), Is.EqualTo(X(0x7FFF, 0xC000000000000001)), "SNaN quieted");
        Assert.That(env.Flags, Is.EqualTo(FpuExceptions.Invalid));

        env = new FpuEnvironment(FpuRounding.Nearest);
        Assert.That(SoftFloat.Add(ref env, X(0x3FFF, 0x4000000000000000), Float80.One), Is.EqualTo(Float80.Indefinite), "an unnormal is invalid");
    }

    [Test]
    public void OverflowAndUnderflowWithMaskedExceptions()
    {
        Float80 max = X(0x7FFE, 0xFFFFFFFFFFFFFFFF);
        var env = new FpuEnvironment(FpuRounding.Nearest);
        Assert.That(SoftFloat.Multiply(ref env, max, SoftFloat.FromInteger(2)), Is.EqualTo(Float80.PositiveInfinity));
        Assert.That(env.Flags, Is.EqualTo(FpuExceptions.Overflow | FpuExceptions.Precision));
        env = new FpuEnvironment(FpuRounding.TowardZero);
        Assert.That(SoftFloat.Multiply(ref env, max, SoftFloat.FromInteger(2)), Is.EqualTo(max));

        // The smallest normal halved is an exact denormal: no UE when exact (masked), no PE.
        Float80 minNormal = X(0x0001, 0x8000000000000000);
        env = new FpuEnvironment(FpuRounding.Nearest);
        Assert.That(SoftFloat.Divide(ref env, minNormal, SoftFloat.FromInteger(2)), Is.EqualTo(X(0x0000, 0x4000000000000000)));
        Assert.That(env.Flags, Is.EqualTo(FpuExceptions.None));
        // Divided by 3 it is tiny and inexact: UE and PE.
        env = new FpuEnvironment(FpuRounding.Nearest);
        SoftFloat.Divide(ref env, minNormal, Three);
        Assert.That(env.Flags, Is.EqualTo(FpuExceptions.Underflow | FpuExceptions.Precision));
    }

    [Test]
    public void ConversionsToAndFromBinaryFormats()
    {
        var env = new FpuEnvironment(FpuRounding.Nearest);
        Float80 third = SoftFloat.Divide(ref env, Float80.One, Three);
        Assert.That(SoftFloat.ToDouble(ref env, third), Is.EqualTo(BitConverter.DoubleToUInt64Bits(1.0 / 3)));
        Assert.That(SoftFloat.ToSingle(ref env, third), Is.EqualTo(BitConverter.SingleToUInt32Bits(1.0f / 3)));
        env = new FpuEnvironment(FpuRounding.Nearest);
        Float80 denormal = SoftFloat.FromDouble(ref env, 1);
        Assert.That(denormal, Is.EqualTo(X(0x3FFF - 1074, 0x8000000000000000)));
        Assert.That(env.SourceDenormal, Is.True);
        Assert.That(SoftFloat.ToDouble(ref env, denormal), Is.EqualTo(1UL));
        env = new FpuEnvironment(FpuRounding.Nearest);
        Assert.That(SoftFloat.ToInteger(ref env, X(0x3FFF, 0xC000000000000000), 32), Is.EqualTo(2), "1.5 rounds to even 2");
        Assert.That(SoftFloat.ToInteger(ref env, X(0x4000, 0xA000000000000000), 32), Is.EqualTo(2), "2.5 rounds to even 2");
        Assert.That(SoftFloat.ToInteger(ref env, SoftFloat.FromInteger(40000), 16), Is.EqualTo(-32768), "out of range: integer indefinite");
        Assert.That(env.Flags & FpuExceptions.Invalid, Is.EqualTo(FpuExceptions.Invalid));
    }

    [Test]
    public void ConstantsFollowTheRoundingControl()
    {
        Assert.That(SoftFloat.Constant(FpuConstant.Pi, FpuRounding.Nearest), Is.EqualTo(X(0x4000, 0xC90FDAA22168C235)));
        Assert.That(SoftFloat.Constant(FpuConstant.Pi, FpuRounding.Down), Is.EqualTo(X(0x4000, 0xC90FDAA22168C234)));
        Assert.That(SoftFloat.Constant(FpuConstant.Log2Ten, FpuRounding.Up), Is.EqualTo(X(0x4000, 0xD49A784BCD1B8AFF)));
    }

    [Test]
    public void PartialRemainderGivesQuotientBits()
    {
        var env = new FpuEnvironment(FpuRounding.Nearest);
        Float80 r = SoftFloat.Remainder(ref env, SoftFloat.FromInteger(23), SoftFloat.FromInteger(5), ieee: false, out int q, out bool incomplete);
        Assert.That((r, q, incomplete), Is.EqualTo((SoftFloat.FromInteger(3), 4, false)));
        r = SoftFloat.Remainder(ref env, SoftFloat.FromInteger(23), SoftFloat.FromInteger(5), ieee: true, out q, out _);
        Assert.That((r, q), Is.EqualTo((SoftFloat.FromInteger(-2), 5)));
    }
}
