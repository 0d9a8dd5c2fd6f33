using HybridVmm.Hypervisor.Partitions;
using static HybridVmm.Tests.Apic.ApicGuest;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Apic;

/// <summary>
/// Interrupt acceptance, priority and EOI (Intel SDM Vol. 3A, 11.8): self-IPIs through the ICR set IRR; the highest
/// vector whose priority class is above PPR moves to ISR when the processor takes it; TPR and ISR raise PPR; EOI clears
/// the highest ISR bit. NMI to self (11.6.1) ignores IF and waits for the previous NMI's IRET.
/// </summary>
public class LocalApicPriorityTests
{
    private const uint SelfFixed = 0x0004_0000; // shorthand self, fixed, edge

    [Test]
    public async Task SelfIpisWaitInIrrAndAreTakenHighestFirstEachAfterTheEoiOfTheOneBefore()
    {
        Run run = await RunAsync(Build(a =>
        {
            foreach (uint vector in new uint[] { 0x31, 0x51, 0x52, 0x41 }) Write(a, IcrLow, SelfFixed | vector);
            Save(a, Irr + 0x10, 0); Save(a, Irr + 0x20, 1); Save(a, IcrLow, 2);
            a.sti(); a.nop(); a.cli();
            Save(a, Irr + 0x10, 3); Save(a, Irr + 0x20, 4); Save(a, Isr + 0x20, 5); Save(a, Ppr, 6);
            Exit(a);
        }, [0x31, 0x41, 0x51, 0x52], eoiVectors: [0x31, 0x41, 0x51, 0x52]));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(run.Results[0], Is.EqualTo(1u << 17), "IRR1: vector 0x31");
            Assert.That(run.Results[1], Is.EqualTo((1u << 1) | (1u << 17) | (1u << 18)), "IRR2: 0x41, 0x51, 0x52");
            Assert.That(run.Results[2], Is.EqualTo(SelfFixed | 0x41), "ICR low reads back, delivery status idle");
            Assert.That(run.Log, Is.EqualTo(new[] { (0x52u, 0x50u), (0x51u, 0x50u), (0x41u, 0x40u), (0x31u, 0x30u) }), "vector and the PPR its handler saw");
            Assert.That(run.Results[3..7], Is.EqualTo(new uint[] { 0, 0, 0, 0 }), "IRR, ISR and PPR empty after the EOIs");
        });
    }

    [Test]
    public async Task AnInServiceVectorHoldsBackItsOwnClassAndLowerUntilEoi()
    {
        Run run = await RunAsync(Build(a =>
        {
            Write(a, IcrLow, SelfFixed | 0x45);
            a.sti(); a.nop(); a.cli();                          // 0x45 taken, no EOI: in service
            Write(a, IcrLow, SelfFixed | 0x44);                 // same class: waits
            Write(a, IcrLow, SelfFixed | 0x30);                 // lower class: waits
            a.sti(); a.nop(); a.cli();
            Save(a, Isr + 0x20, 0); Save(a, Irr + 0x20, 1); Save(a, Irr + 0x10, 2); Save(a, Ppr, 3); Save(a, Apr, 4);
            Write(a, Eoi, 0);                                   // 0x45 leaves ISR: 0x44, then 0x30 (each EOIs itself)
            a.sti(); a.nop(); a.cli();
            Save(a, Isr + 0x20, 5); Save(a, Ppr, 6);
            Exit(a);
        }, [0x30, 0x44, 0x45], eoiVectors: [0x30, 0x44]));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(run.Results[0], Is.EqualTo(1u << 5), "ISR2: 0x45");
            Assert.That(run.Results[1], Is.EqualTo(1u << 4), "IRR2: 0x44 waits");
            Assert.That(run.Results[2], Is.EqualTo(1u << 16), "IRR1: 0x30 waits");
            Assert.That(run.Results[3], Is.EqualTo(0x40u), "PPR: the in-service class");
            Assert.That(run.Results[4], Is.EqualTo(0x40u), "APR: the highest of the TPR, ISR and IRR classes");
            Assert.That(run.Log.Select(e => e.Vector), Is.EqualTo(new uint[] { 0x45, 0x44, 0x30 }));
            Assert.That(run.Results[5..7], Is.EqualTo(new uint[] { 0, 0 }));
        });
    }

    [Test]
    public async Task TprHoldsBackClassesAtOrBelowIt()
    {
        Run run = await RunAsync(Build(a =>
        {
            Write(a, Tpr, 0x50);
            Write(a, IcrLow, SelfFixed | 0x51);
            Write(a, IcrLow, SelfFixed | 0x61);
            a.sti(); a.nop(); a.cli();
            Save(a, Irr + 0x20, 0);
            Write(a, Tpr, 0x00);
            a.sti(); a.nop(); a.cli();
            Save(a, Irr + 0x20, 1);
            Exit(a);
        }, [0x51, 0x61], eoiVectors: [0x51, 0x61]));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(run.Log, Is.EqualTo(new[] { (0x61u, 0x60u), (0x51u, 0x50u) }), "0x61 at once (PPR was TPR 0x50), 0x51 once TPR dropped");
            Assert.That(run.Results[0], Is.EqualTo(1u << 17), "0x51 waited in IRR");
            Assert.That(run.Results[1], Is.Zero);
        });
    }

    [Test]
    public async Task ASoftwareDisabledApicHoldsItsIrrAndMasksTheLvt()
    {
        Run run = await RunAsync(Build(a =>
        {
            Write(a, Svr, 0x0FF);
            Write(a, IcrLow, SelfFixed | 0x70);                 // the ICR still sends (SDM 11.4.7.2)
            a.sti(); a.nop(); a.cli();
            Save(a, Irr + 0x30, 0); Save(a, Lint0, 1);
            Write(a, Lint0, 0x700); Save(a, Lint0, 2);          // the mask stays while disabled
            Write(a, Svr, 0x1FF);
            a.sti(); a.nop(); a.cli();
            Save(a, Irr + 0x30, 3);
            Exit(a);
        }, [0x70], eoiVectors: [0x70]));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(run.Results[0], Is.EqualTo(1u << 16), "IRR3: 0x70 held");
            Assert.That(run.Results[1], Is.EqualTo(0x18700u), "LINT0 masked by the software disable");
            Assert.That(run.Results[2], Is.EqualTo(0x10700u));
            Assert.That(run.Log.Select(e => e.Vector), Is.EqualTo(new uint[] { 0x70 }), "delivered once enabled again");
            Assert.That(run.Results[3], Is.Zero);
        });
    }

    [Test]
    public async Task PhysicalDestinationOfItsOwnIdReachesItAndOthersReachNobody()
    {
        Run run = await RunAsync(Build(a =>
        {
            Write(a, IcrHigh, 0x0100_0000); Write(a, IcrLow, 0x61);          // physical destination 1: nobody
            Write(a, IcrLow, 0x000C_0062);                                  // all excluding self: nobody
            Write(a, IcrHigh, 0x0000_0000); Write(a, IcrLow, 0x63);          // physical destination 0: itself
            Write(a, Ldr, 0x0100_0000); Write(a, IcrHigh, 0x0300_0000); Write(a, IcrLow, 0x864); // logical, flat: bit 0 matches
            Write(a, IcrLow, 0x0008_0065);                                  // all including self
            Save(a, Irr + 0x30, 0);
            Write(a, IcrLow, 0x0004_0005);                                  // an illegal vector: ESR's send-illegal bit
            Write(a, Esr, 0); Save(a, Esr, 1);
            Exit(a);
        }, []));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.That(run.Results[0], Is.EqualTo((1u << 3) | (1u << 4) | (1u << 5)), "0x63, 0x64 and 0x65 only");
        Assert.That(run.Results[1], Is.EqualTo(0x20u));
    }

    [Test]
    public async Task NmiToSelfIgnoresIfAndTheNextWaitsForIret()
    {
        Run run = await RunAsync(Build(a =>
        {
            Write(a, IcrLow, 0x0004_0400);                      // NMI, shorthand self, with IF=0
            a.nop();
            Exit(a);
        }, [2]));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.That(run.Log.Select(e => e.Vector), Is.EqualTo(new uint[] { 2 }));
    }
}
