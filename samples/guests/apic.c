/* apic.c - the local APIC (xAPIC) as a kernel finds it after the firmware and then drives it: IA32_APIC_BASE and the
 * registers SeaBIOS leaves, self-IPIs through the ICR taken by priority class with EOI, TPR, an NMI to itself, the
 * timer in one-shot and periodic mode, and the 8259's INTR through LINT0 in ExtINT mode (virtual-wire mode), held
 * back while LINT0 is masked.
 *
 * Its output must not depend on wall-clock time: QEMU's APIC timer and PIT run on the host's clock. So it never
 * prints a count or a time, only what a count must satisfy; it waits for events (HLT until the timer's interrupt, the
 * PIT's OUT through read-back, then the PIC's IRR bit). Both 8259s are masked from the start, so the firmware's
 * 18.2 Hz PIT tick cannot interrupt it, and an input is unmasked only while the guest is looking at it.
 */
#include "guest.h"

#define APIC_BASE_MSR 0x1B
#define APIC 0xFEE00000u
#define APIC_ID 0x020
#define APIC_VERSION 0x030
#define APIC_TPR 0x080
#define APIC_PPR 0x0A0
#define APIC_EOI 0x0B0
#define APIC_LDR 0x0D0
#define APIC_DFR 0x0E0
#define APIC_SVR 0x0F0
#define APIC_ISR 0x100
#define APIC_IRR 0x200
#define APIC_ESR 0x280
#define APIC_ICR_LOW 0x300
#define APIC_ICR_HIGH 0x310
#define APIC_LVT_TIMER 0x320
#define APIC_LVT_THERMAL 0x330
#define APIC_LVT_PERF 0x340
#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_LVT_ERROR 0x370
#define APIC_TIMER_INITIAL 0x380
#define APIC_TIMER_CURRENT 0x390
#define APIC_TIMER_DIVIDE 0x3E0

#define ICR_SELF (1u << 18)
#define ICR_NMI (4u << 8)
#define LVT_MASKED (1u << 16)
#define LVT_PERIODIC (1u << 17)
#define TIMER_VECTOR 0x40

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1
#define PIT_CH0 0x40
#define PIT_MODE 0x43

static inline uint32_t apic_read(uint32_t reg) { return *(volatile uint32_t *)(APIC + reg); }
static inline void apic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(APIC + reg) = v; }

struct idt_gate { uint16_t offset_low, selector; uint8_t zero, type_attr; uint16_t offset_high; } __attribute__((packed));
static struct idt_gate idt[256] __attribute__((aligned(8)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } idtr;

/* What the handlers saw, in the order they ran. */
#define LOG_MAX 16
static volatile unsigned log_count;
static volatile uint8_t log_vector[LOG_MAX];
static volatile uint32_t log_ppr[LOG_MAX], log_isr[LOG_MAX];
static volatile int handler_eoi = 1;

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

static uint8_t read_irr8259(void) { outb(PIC1_CMD, 0x0A); return inb(PIC1_CMD); }

void __attribute__((used)) on_interrupt(uint32_t vector)
{
    unsigned n = log_count;
    if (n < LOG_MAX) {
        log_vector[n] = (uint8_t)vector;
        log_ppr[n] = apic_read(APIC_PPR);
        log_isr[n] = apic_read(APIC_ISR + ((vector >> 5) << 4));
        log_count = n + 1;
    }
    if (vector == 0x20)
        outb(PIC1_CMD, 0x20);           /* the PIT's IRQ 0 through the 8259: its EOI, not the APIC's */
    else if (vector != 2 && handler_eoi)
        apic_write(APIC_EOI, 0);
}

static void print_log(const char *what)
{
    kprintf("%s:", what);
    for (unsigned i = 0; i < log_count; i++)
        kprintf(" [vector %02x ppr %02x isr %08x]", log_vector[i], log_ppr[i], log_isr[i]);
    kprintf("\n");
    log_count = 0;
}

static void self_ipi(uint8_t vector) { apic_write(APIC_ICR_LOW, ICR_SELF | vector); }

static void irr_words(const char *what)
{
    kprintf("%s: irr %08x %08x %08x %08x isr %08x %08x %08x\n", what, apic_read(APIC_IRR + 0x10), apic_read(APIC_IRR + 0x20),
            apic_read(APIC_IRR + 0x30), apic_read(APIC_IRR + 0x40), apic_read(APIC_ISR + 0x10), apic_read(APIC_ISR + 0x20),
            apic_read(APIC_ISR + 0x30));
}

static void open_window(void) { __asm__ volatile("sti; nop; cli" ::: "memory"); }

static void power_on_state(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(APIC_BASE_MSR));
    kprintf("power-on: apic base msr %08x%08x\n", hi, lo);
    kprintf("power-on: id %08x version %08x tpr %08x ppr %08x ldr %08x dfr %08x svr %08x esr %08x\n",
            apic_read(APIC_ID), apic_read(APIC_VERSION), apic_read(APIC_TPR), apic_read(APIC_PPR), apic_read(APIC_LDR),
            apic_read(APIC_DFR), apic_read(APIC_SVR), apic_read(APIC_ESR));
    kprintf("power-on: lvt timer %08x thermal %08x perf %08x lint0 %08x lint1 %08x error %08x\n",
            apic_read(APIC_LVT_TIMER), apic_read(APIC_LVT_THERMAL), apic_read(APIC_LVT_PERF), apic_read(APIC_LVT_LINT0),
            apic_read(APIC_LVT_LINT1), apic_read(APIC_LVT_ERROR));
    kprintf("power-on: icr %08x %08x timer initial %08x divide %08x\n", apic_read(APIC_ICR_HIGH), apic_read(APIC_ICR_LOW),
            apic_read(APIC_TIMER_INITIAL), apic_read(APIC_TIMER_DIVIDE));
    irr_words("power-on");
}

static void priorities(void)
{
    /* Four self-IPIs with IF=0 wait in IRR; opened, they run highest class first, each after the EOI of the one before. */
    self_ipi(0x31); self_ipi(0x51); self_ipi(0x52); self_ipi(0x41);
    irr_words("four self-ipis, if=0");
    open_window();
    print_log("taken");

    /* TPR holds back its own class and lower. */
    apic_write(APIC_TPR, 0x50);
    self_ipi(0x51); self_ipi(0x61);
    open_window();
    print_log("tpr 50: taken");
    irr_words("tpr 50");
    apic_write(APIC_TPR, 0);
    open_window();
    print_log("tpr 00: taken");

    /* Without EOI the vector stays in service and holds back its class; EOI releases the next. */
    handler_eoi = 0;
    self_ipi(0x45);
    open_window();
    self_ipi(0x44); self_ipi(0x30);
    open_window();
    kprintf("no eoi: ppr %02x\n", apic_read(APIC_PPR));
    irr_words("no eoi");
    handler_eoi = 1;
    apic_write(APIC_EOI, 0);
    open_window();
    print_log("then eoi: taken");
    irr_words("after eoi");
}

static void nmi(void)
{
    apic_write(APIC_ICR_LOW, ICR_SELF | ICR_NMI);    /* with IF=0 */
    __asm__ volatile("nop" ::: "memory");
    print_log("nmi to self, if=0");
}

static void timer(void)
{
    /* One-shot: 1,000,000 counts at divide by 1 (1 ms at the 1 GHz both use); HLT until it fires. */
    apic_write(APIC_TIMER_DIVIDE, 0xB);
    apic_write(APIC_LVT_TIMER, TIMER_VECTOR);
    apic_write(APIC_TIMER_INITIAL, 1000000);
    while (log_count < 1)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    kprintf("one-shot: current count %u after the interrupt\n", apic_read(APIC_TIMER_CURRENT));
    print_log("one-shot");

    /* Periodic: 100,000 counts at divide by 16; five interrupts, the count always within the initial count. */
    apic_write(APIC_TIMER_DIVIDE, 0x3);
    apic_write(APIC_LVT_TIMER, TIMER_VECTOR | LVT_PERIODIC);
    apic_write(APIC_TIMER_INITIAL, 100000);
    int in_range = 1;
    while (log_count < 5) {
        __asm__ volatile("sti; hlt; cli" ::: "memory");
        in_range &= apic_read(APIC_TIMER_CURRENT) <= 100000;
    }
    apic_write(APIC_LVT_TIMER, TIMER_VECTOR | LVT_PERIODIC | LVT_MASKED);
    apic_write(APIC_TIMER_INITIAL, 0);
    kprintf("periodic: %u interrupts, counts within the initial count: %s, lvt %08x divide %08x\n", log_count,
            in_range ? "yes" : "no", apic_read(APIC_LVT_TIMER), apic_read(APIC_TIMER_DIVIDE));
    print_log("periodic");
}

/* The 8259's INTR reaches the processor through LINT0 (ExtINT): masked, IRQ 0 waits in the PIC; unmasked, it is taken. */
static void lint0(void)
{
    outb(PIC1_CMD, 0x11); outb(PIC2_CMD, 0x11);     /* ICW1-4: vectors 0x20 and 0x28 */
    outb(PIC1_DATA, 0x20); outb(PIC2_DATA, 0x28);
    outb(PIC1_DATA, 0x04); outb(PIC2_DATA, 0x02);
    outb(PIC1_DATA, 0x01); outb(PIC2_DATA, 0x01);
    outb(PIC1_DATA, 0xFF); outb(PIC2_DATA, 0xFF);
    apic_write(APIC_LVT_LINT0, 0x8700 | LVT_MASKED);
    outb(PIT_MODE, 0x30);                           /* channel 0, mode 0, count 1000: OUT rises once */
    outb(PIT_CH0, 1000 & 0xFF);
    outb(PIT_CH0, 1000 >> 8);
    outb(PIC1_DATA, 0xFE);                          /* IRQ 0 only */
    while (!(read_irr8259() & 1))
        ;
    open_window(); open_window();
    kprintf("lint0 masked: pic irr %02x, taken %u\n", read_irr8259(), log_count);
    apic_write(APIC_LVT_LINT0, 0x8700);             /* virtual wire again: the pending INTR goes through */
    while (log_count < 1)
        open_window();
    outb(PIC1_DATA, 0xFF);
    print_log("lint0 unmasked");
    kprintf("lint0 %08x, pic irr %02x\n", apic_read(APIC_LVT_LINT0), read_irr8259());
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    outb(PIC1_DATA, 0xFF); outb(PIC2_DATA, 0xFF);   /* nothing from the 8259s until lint0() looks */

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
    priorities();
    nmi();
    timer();
    lint0();
    kprintf("apic: done\n");
    return 0;
}
