/* pic.c - the PC's legacy interrupt controller (two 8259A PICs) and timer (8254 PIT) as a kernel finds them
 * after the firmware, then driven the way a kernel drives them: remapped, the PIT in one-shot mode, HLT until
 * the interrupt, ISR/IRR through OCW3, masks, poll mode, both PICs at once (the RTC's IRQ 8 through the slave
 * and the PIT's IRQ 0) in the default priority order and after a rotation, specific EOI and auto-EOI.
 *
 * Its output must not depend on wall-clock time: QEMU's PIT and RTC run on the host's clock. So it never prints
 * a counter value or a timestamp; it waits for an event (the PIT's OUT through the read-back command, a PIC's
 * IRR bit) before it looks, and the one PIT input that ticks on its own (the firmware's mode 2 on channel 0) is
 * stopped before anything depends on the IRR. Every input is masked while the guest is not looking at it.
 */
#include "guest.h"

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1
#define ELCR1 0x4D0
#define ELCR2 0x4D1
#define PIT_CH0 0x40
#define PIT_CH2 0x42
#define PIT_MODE 0x43
#define PORT_B 0x61

struct idt_gate { uint16_t offset_low, selector; uint8_t zero, type_attr; uint16_t offset_high; } __attribute__((packed));
static struct idt_gate idt[256] __attribute__((aligned(8)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } idtr;

/* What the handlers saw, in the order they ran. */
#define LOG_MAX 16
static volatile unsigned log_count;
static volatile uint8_t log_vector[LOG_MAX], log_isr1[LOG_MAX], log_irr1[LOG_MAX], log_isr2[LOG_MAX];
/* What the handler does besides logging: EOI or not, and the RTC's register C. */
static volatile int handler_eoi;

/* 256 stubs: each pushes its vector and jumps to the common part, which calls on_interrupt(vector). */
__asm__(
    ".text\n"
    "stubs:\n"
    "    .set v, 0\n"
    "    .rept 256\n"
    "    .balign 16\n"
    "    pushl $v\n"
    "    jmp common_stub\n"
    "    .set v, v + 1\n"
    "    .endr\n"
    "common_stub:\n"
    "    pushal\n"
    "    pushl 32(%esp)\n"
    "    call on_interrupt\n"
    "    addl $4, %esp\n"
    "    popal\n"
    "    addl $4, %esp\n"
    "    iret\n");
extern char stubs[];

static uint8_t read_isr(uint16_t cmd) { outb(cmd, 0x0B); return inb(cmd); }
static uint8_t read_irr(uint16_t cmd) { outb(cmd, 0x0A); return inb(cmd); }

static uint8_t cmos_read(uint8_t index) { outb(0x70, index); return inb(0x71); }
static void cmos_write(uint8_t index, uint8_t v) { outb(0x70, index); outb(0x71, v); }

void __attribute__((used)) on_interrupt(uint32_t vector)
{
    unsigned n = log_count;
    if (n < LOG_MAX) {
        log_vector[n] = (uint8_t)vector;
        log_isr1[n] = read_isr(PIC1_CMD);
        log_irr1[n] = read_irr(PIC1_CMD);
        log_isr2[n] = read_isr(PIC2_CMD);
        log_count = n + 1;
    }
    if (vector == 0x70 || vector == 0x28) {   /* the RTC's IRQ 8 at the firmware's and the remapped vector */
        cmos_write(0x0B, 0x02);         /* PIE off (24-hour mode stays), then read C: IRQ 8 drops */
        (void)cmos_read(0x0C);
        if (handler_eoi) { outb(PIC2_CMD, 0x20); outb(PIC1_CMD, 0x20); }
    } else if (handler_eoi) {
        outb(PIC1_CMD, 0x20);
    }
}

/* IRR is left out while inputs the guest does not control may be latched there (the firmware's state). */
static void print_log(const char *what, int with_irr)
{
    kprintf("%s:", what);
    for (unsigned i = 0; i < log_count; i++) {
        kprintf(" [vector %02x isr %02x", log_vector[i], log_isr1[i]);
        if (with_irr)
            kprintf(" irr %02x", log_irr1[i]);
        kprintf(" slave isr %02x]", log_isr2[i]);
    }
    kprintf("\n");
    log_count = 0;
}

/* Waits with HLT until the handlers have logged n interrupts (the guest's only wait with IF=1). */
static void wait_for(unsigned n)
{
    while (log_count < n)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
}

static uint8_t pit_status(int channel)
{
    outb(PIT_MODE, (uint8_t)(0xE0 | (2 << channel)));   /* read-back: latch status only */
    return inb((uint16_t)(PIT_CH0 + channel));
}

/* Waits until channel 0's OUT is high (a one-shot expired), reading it through the read-back command, and then
   until the master's IRR holds the edge: QEMU computes OUT from the host's clock but raises the line from a timer
   callback that may run a little later. */
static void wait_out0(void)
{
    while (!(pit_status(0) & 0x80))
        ;
    while (!(read_irr(PIC1_CMD) & 0x01))
        ;
}

static void pit_one_shot(uint16_t count)
{
    outb(PIT_MODE, 0x30);               /* channel 0, LSB then MSB, mode 0, binary */
    outb(PIT_CH0, (uint8_t)count);
    outb(PIT_CH0, (uint8_t)(count >> 8));
}

static void pic_init(uint8_t base1, uint8_t base2, uint8_t icw4)
{
    outb(PIC1_CMD, 0x11); outb(PIC2_CMD, 0x11);         /* ICW1: edge, cascade, ICW4 follows */
    outb(PIC1_DATA, base1); outb(PIC2_DATA, base2);     /* ICW2: vector bases */
    outb(PIC1_DATA, 0x04); outb(PIC2_DATA, 0x02);       /* ICW3: slave on IR2; slave id 2 */
    outb(PIC1_DATA, icw4); outb(PIC2_DATA, icw4);       /* ICW4: 8086 mode (and AEOI if asked) */
    outb(PIC1_DATA, 0xFF); outb(PIC2_DATA, 0xFF);       /* OCW1: everything masked */
}

static void power_on_state(void)
{
    /* Only what does not depend on time: the masks, the ELCR, the PIT's modes (not OUT or null count),
       port 0x61's gate and speaker bits (not the refresh toggle or OUT2). */
    kprintf("power-on: imr %02x %02x, elcr %02x %02x\n", inb(PIC1_DATA), inb(PIC2_DATA), inb(ELCR1), inb(ELCR2));
    kprintf("power-on: pit status ch0 %02x ch1 %02x ch2 %02x (mode and access bits), port 61 %02x (low nibble)\n",
            pit_status(0) & 0x3F, pit_status(1) & 0x3F, pit_status(2) & 0x3F, inb(PORT_B) & 0x0F);

    /* The firmware's vectors: its PIT tick is IRQ 0 (unmasked); mask everything else and wait for it. */
    uint8_t imr1 = inb(PIC1_DATA), imr2 = inb(PIC2_DATA);
    outb(PIC1_DATA, 0xFE); outb(PIC2_DATA, 0xFF);
    handler_eoi = 1;
    wait_for(1);
    print_log("power-on: irq 0 (the firmware's pit tick)", 0);
    /* IRQ 8 through the slave: the RTC's periodic interrupt at 1024 Hz, IRQ 0 masked. */
    outb(PIC1_DATA, 0xFB); outb(PIC2_DATA, 0xFE);
    cmos_write(0x0A, 0x26);
    cmos_write(0x0B, 0x42);
    wait_for(1);
    print_log("power-on: irq 8 (rtc periodic)", 0);
    outb(PIC1_DATA, imr1); outb(PIC2_DATA, imr2);
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    for (int v = 0; v < 256; v++) {
        uint32_t offset = (uint32_t)stubs + (uint32_t)v * 16;
        idt[v].offset_low = (uint16_t)offset;
        idt[v].selector = cs;
        idt[v].type_attr = 0x8E;
        idt[v].offset_high = (uint16_t)(offset >> 16);
    }
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));

    power_on_state();

    /* Quiet the inputs: mask both PICs, then stop the firmware's mode 2 on channel 0 with a one-shot of one
       clock; once its OUT is high it stays high, so IRQ 0 has no more edges. Then initialise the PICs (which
       forgets the edges they latched) at the vectors a protected-mode kernel uses. */
    outb(PIC1_DATA, 0xFF); outb(PIC2_DATA, 0xFF);
    pit_one_shot(1);
    while (!(pit_status(0) & 0x80))
        ;
    pic_init(0x20, 0x28, 0x01);
    kprintf("remapped: imr %02x %02x, irr %02x %02x, isr %02x %02x\n", inb(PIC1_DATA), inb(PIC2_DATA),
            read_irr(PIC1_CMD), read_irr(PIC2_CMD), read_isr(PIC1_CMD), read_isr(PIC2_CMD));
    kprintf("pit: channel 0 status %02x after the one-shot (out high, mode 0, lsb/msb)\n", pit_status(0) & 0xBF);

    /* 1. A one-shot, masked: the edge is latched in IRR but raises nothing. */
    pit_one_shot(0x0100);
    kprintf("one-shot armed: status %02x (out low)\n", pit_status(0) & 0xBF);
    wait_out0();
    kprintf("one-shot expired, irq 0 masked: irr %02x isr %02x\n", read_irr(PIC1_CMD), read_isr(PIC1_CMD));

    /* 2. Unmasked with IF=0: INTR is up, nothing is taken; then HLT with IF=1 takes it (vector 0x20). The
       handler does not EOI: ISR keeps bit 0 until the guest sends a non-specific EOI. */
    outb(PIC1_DATA, 0xFE);
    kprintf("unmasked, if=0: irr %02x isr %02x\n", read_irr(PIC1_CMD), read_isr(PIC1_CMD));
    handler_eoi = 0;
    wait_for(1);
    print_log("irq 0 taken", 1);
    kprintf("after the handler: isr %02x; ", read_isr(PIC1_CMD));
    outb(PIC1_CMD, 0x20);
    kprintf("after a non-specific eoi: isr %02x\n", read_isr(PIC1_CMD));

    /* 3. Poll mode (OCW3 with P): with IF=0 the guest acknowledges by reading. */
    pit_one_shot(0x0100);
    wait_out0();
    outb(PIC1_CMD, 0x0C);
    uint8_t poll = inb(PIC1_CMD);
    kprintf("poll: %02x, then isr %02x; ", poll, read_isr(PIC1_CMD));
    outb(PIC1_CMD, 0x60);               /* specific EOI for IR0 */
    kprintf("after a specific eoi: isr %02x; ", read_isr(PIC1_CMD));
    outb(PIC1_CMD, 0x0C);
    kprintf("poll with nothing pending: %02x\n", inb(PIC1_CMD));

    /* 4. Both PICs: IRQ 0 (the PIT) and IRQ 8 (the RTC, on the slave's IR0 behind the master's IR2) both
       pending, then IF=1: the default priorities take IRQ 0 first. */
    for (int round = 0; round < 2; round++) {
        outb(PIC1_DATA, 0xFF); outb(PIC2_DATA, 0xFF);
        pit_one_shot(0x0100);
        wait_out0();
        cmos_write(0x0A, 0x26);
        cmos_write(0x0B, 0x42);
        while (!(read_irr(PIC2_CMD) & 0x01))
            ;
        cmos_write(0x0B, 0x02);         /* no more periodic interrupts; IRR keeps the edge */
        kprintf("both pending: irr %02x %02x\n", read_irr(PIC1_CMD), read_irr(PIC2_CMD));
        outb(PIC1_DATA, 0xFA); outb(PIC2_DATA, 0xFE);
        handler_eoi = 1;
        wait_for(2);
        print_log(round == 0 ? "default priority" : "after set-priority (lowest ir1: ir2 highest)", 1);
        if (round == 0)
            outb(PIC1_CMD, 0xC1);       /* OCW2: set priority, IR1 lowest, so IR2 is the highest */
    }
    outb(PIC1_CMD, 0xC7);               /* back to IR7 lowest */

    /* 5. Auto-EOI: the acknowledge leaves ISR clear. */
    pic_init(0x30, 0x38, 0x03);
    outb(PIC1_DATA, 0xFE);
    pit_one_shot(0x0100);
    handler_eoi = 0;
    wait_for(1);
    /* (IRR is read in the handler after the acknowledge cleared the edge.) */
    print_log("auto-eoi", 1);

    /* 6. Edge/level control: the ELCR bits for IRQ 3-7 and 9-12, 14, 15 are writable, 0-2, 8, 13 are not. */
    outb(PIC1_DATA, 0xFF);
    outb(ELCR1, 0xFF); outb(ELCR2, 0xFF);
    kprintf("elcr after writing ff: %02x %02x\n", inb(ELCR1), inb(ELCR2));
    outb(ELCR1, 0x00); outb(ELCR2, 0x00);

    /* 7. Port 0x61: channel 2's gate and the speaker bit read back; OUT2 (bit 5) follows a one-shot on channel 2. */
    outb(PORT_B, 0x00);
    outb(PIT_MODE, 0xB0);               /* channel 2, LSB/MSB, mode 0 */
    outb(PIT_CH2, 0x00); outb(PIT_CH2, 0x01);
    outb(PORT_B, 0x01);                 /* gate 2 on, speaker off */
    while (!(inb(PORT_B) & 0x20))
        ;
    kprintf("port 61: gate and speaker %02x, out2 high after the one-shot\n", inb(PORT_B) & 0x23);
    outb(PORT_B, 0x00);
    kprintf("done\n");
    return 0;
}
