/* clock.c - how much work fits between two timer interrupts: the PIT's IRQ 0 in rate-generator mode through the
 * 8259, then the local APIC's timer in periodic mode, each for a few periods, counting loop iterations in between.
 *
 * Its output is the ratio of the guest's speed to its clock, so it is not compared with QEMU (whose timers run on the
 * host's clock). Under HybridVmm both are virtual, so the counts are exact: the same on every run, and a run saved at
 * any instruction and restored in another process prints what an uninterrupted run prints. That is the property it
 * exists to check: a restored VM's timers continue on the clock they were saved with.
 */
#include "guest.h"

#define APIC 0xFEE00000u
#define APIC_EOI 0x0B0
#define APIC_SVR 0x0F0
#define APIC_LVT_TIMER 0x320
#define APIC_TIMER_INITIAL 0x380
#define APIC_TIMER_DIVIDE 0x3E0
#define LVT_MASKED (1u << 16)
#define LVT_PERIODIC (1u << 17)

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1
#define PIT_CH0 0x40
#define PIT_MODE 0x43

#define PIT_VECTOR 0x20
#define APIC_TIMER_VECTOR 0x40
#define PERIODS 8

static inline void apic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(APIC + reg) = v; }

struct idt_gate { uint16_t offset_low, selector; uint8_t zero, type_attr; uint16_t offset_high; } __attribute__((packed));
static struct idt_gate idt[256] __attribute__((aligned(8)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } idtr;

static volatile uint32_t ticks;

/* Two handlers: the PIT's (EOI to the master 8259) and the APIC timer's (EOI to the APIC). */
__asm__(
    ".text\n"
    "pit_stub:\n"
    "    pushl %eax\n"
    "    incl ticks\n"
    "    movb $0x20, %al\n"
    "    outb %al, $0x20\n"
    "    popl %eax\n"
    "    iret\n"
    "apic_timer_stub:\n"
    "    incl ticks\n"
    "    movl $0, 0xFEE000B0\n"
    "    iret\n");
extern char pit_stub[], apic_timer_stub[];

static void set_gate(int vector, void *handler)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    uint32_t offset = (uint32_t)handler;
    idt[vector].offset_low = (uint16_t)offset;
    idt[vector].selector = cs;
    idt[vector].type_attr = 0x8E;
    idt[vector].offset_high = (uint16_t)(offset >> 16);
}

/* Waits for a tick, then counts the loop iterations of each of the next PERIODS periods. */
static void measure(const char *what)
{
    uint32_t counts[PERIODS];
    uint32_t start = ticks;
    while (ticks == start) {
    }
    for (int i = 0; i < PERIODS; i++) {
        uint32_t tick = ticks, n = 0;
        while (ticks == tick) {
            n++;
        }
        counts[i] = n;
    }
    kprintf("%s:", what);
    for (int i = 0; i < PERIODS; i++) {
        kprintf(" %u", counts[i]);
    }
    kprintf("\n");
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    set_gate(PIT_VECTOR, pit_stub);
    set_gate(APIC_TIMER_VECTOR, apic_timer_stub);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));

    /* The 8259s remapped to vectors 0x20 and 0x28, only IRQ 0 unmasked; the PIT's channel 0 at about 10 kHz. */
    outb(PIC1_CMD, 0x11); outb(PIC1_DATA, 0x20); outb(PIC1_DATA, 0x04); outb(PIC1_DATA, 0x01);
    outb(PIC2_CMD, 0x11); outb(PIC2_DATA, 0x28); outb(PIC2_DATA, 0x02); outb(PIC2_DATA, 0x01);
    outb(PIC1_DATA, 0xFE); outb(PIC2_DATA, 0xFF);
    outb(PIT_MODE, 0x34);
    outb(PIT_CH0, 120); outb(PIT_CH0, 0);
    __asm__ volatile("sti");
    measure("pit irq 0, divisor 120");

    /* The 8259s masked; the APIC timer periodic, divide by 1, 100000 ticks a period. */
    outb(PIC1_DATA, 0xFF);
    apic_write(APIC_SVR, 0x1FF);
    apic_write(APIC_TIMER_DIVIDE, 0x0B);
    apic_write(APIC_LVT_TIMER, LVT_PERIODIC | APIC_TIMER_VECTOR);
    apic_write(APIC_TIMER_INITIAL, 100000);
    measure("apic timer, initial count 100000");
    apic_write(APIC_LVT_TIMER, LVT_MASKED);
    __asm__ volatile("cli");
    kprintf("ticks %u\n", ticks);
    return 0;
}
