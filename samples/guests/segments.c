/* segments.c - protected-mode segmentation as an operating system meets it (Intel SDM Vol. 3A, chapters 3 and 5),
 * printed so that the output can be compared byte for byte with qemu-system-i386:
 *   - its own GDT, then a far jump to reload CS and loads of every data segment register;
 *   - a based segment in GS (the per-CPU pattern of Linux and kvm-unit-tests), a small limit, expand-down;
 *   - the checks of segment loads (#GP, #NP, #SS with the selector as error code) and of accesses (#GP(0));
 *   - far CALL and RETF directly and through a call gate;
 *   - LTR/STR, LLDT/SLDT, LAR, LSL, VERR, VERW, ARPL, SMSW, LMSW, CLTS.
 * Everything stays in ring 0.
 */
#include "guest.h"

#define CODE      0x08
#define DATA      0x10
#define BASED     0x18
#define SMALL     0x20
#define EXPDOWN   0x28
#define EXECONLY  0x30
#define RDCODE    0x38
#define NOTPRES   0x40
#define READONLY  0x48
#define GATE      0x50
#define TSS_SEL   0x58
#define LDT_SEL   0x60
#define GDT_COUNT 13

static volatile uint64_t gdt[GDT_COUNT] __attribute__((aligned(8)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } gdtr, idtr;
static volatile uint64_t ldt[2] __attribute__((aligned(8)));
static volatile uint8_t tss[104] __attribute__((aligned(4)));
static volatile uint32_t per_cpu[64] __attribute__((aligned(16)));
static volatile uint32_t small_area[1024 + 4] __attribute__((aligned(4096)));

struct idt_gate { uint16_t offset_low, selector; uint8_t zero, type_attr; uint16_t offset_high; };
static struct idt_gate idt[32] __attribute__((aligned(8)));

volatile uint32_t recover_eip, fault_count, fault_vector, fault_error;

static uint64_t descriptor(uint32_t base, uint32_t limit, uint32_t type_s_dpl_p, uint32_t flags)
{
    return (uint64_t)(limit & 0xFFFF) | ((uint64_t)(base & 0xFFFFFF) << 16) | ((uint64_t)type_s_dpl_p << 40)
         | ((uint64_t)((limit >> 16) & 0xF) << 48) | ((uint64_t)flags << 52) | ((uint64_t)(base >> 24) << 56);
}

/* Called by the stubs: record the fault and resume at recover_eip. */
void segment_fault(uint32_t vector, uint32_t error, uint32_t *eip)
{
    fault_count++;
    fault_vector = vector;
    fault_error = error;
    *eip = recover_eip;
}

#define FAULT_STUB(n) \
    __asm__(".text\n.globl fault_stub" #n "\nfault_stub" #n ":\n    pushl $" #n "\n    jmp fault_common\n"); \
    void fault_stub##n(void);
FAULT_STUB(11)
FAULT_STUB(12)
FAULT_STUB(13)
__asm__(
    ".text\n"
    "fault_common:\n"
    "    pushal\n"
    "    cld\n"
    "    movl 32(%esp), %eax\n"      /* vector */
    "    movl 36(%esp), %ecx\n"      /* error code */
    "    leal 40(%esp), %edx\n"      /* &saved EIP */
    "    pushl %edx\n"
    "    pushl %ecx\n"
    "    pushl %eax\n"
    "    call segment_fault\n"
    "    addl $12, %esp\n"
    "    popal\n"
    "    addl $8, %esp\n"            /* vector and error code */
    "    iret\n");

static void set_gate(int vector, void (*stub)(void))
{
    uint32_t offset = (uint32_t)stub;
    idt[vector].offset_low = (uint16_t)offset;
    idt[vector].selector = CODE;
    idt[vector].type_attr = 0x8E;
    idt[vector].offset_high = (uint16_t)(offset >> 16);
}

/* Runs one instruction sequence that may fault; the handler resumes after it. */
#define TRY(text, ...) do { fault_count = 0; fault_vector = fault_error = 0; \
    __asm__ volatile("movl $1f, recover_eip\n\t" text "\n1:\n" : : __VA_ARGS__ : "memory", "eax", "cc"); } while (0)

static void report(const char *what)
{
    kprintf("%s: faults=%u vector=%u error=%x\n", what, (unsigned)fault_count, (unsigned)fault_vector, (unsigned)fault_error);
}

static uint16_t read_sel(int which)
{
    uint16_t v = 0;
    switch (which) {
    case 0: __asm__ volatile("mov %%cs, %0" : "=r"(v)); break;
    case 1: __asm__ volatile("mov %%ds, %0" : "=r"(v)); break;
    case 2: __asm__ volatile("mov %%ss, %0" : "=r"(v)); break;
    case 3: __asm__ volatile("mov %%gs, %0" : "=r"(v)); break;
    }
    return v;
}

static void setup(void)
{
    gdt[CODE / 8] = descriptor(0, 0xFFFFF, 0x9A, 0xC);
    gdt[DATA / 8] = descriptor(0, 0xFFFFF, 0x92, 0xC);
    gdt[BASED / 8] = descriptor((uint32_t)per_cpu, sizeof per_cpu - 1, 0x92, 0x4);
    gdt[SMALL / 8] = descriptor((uint32_t)small_area, 0xFFF, 0x92, 0x4);
    gdt[EXPDOWN / 8] = descriptor((uint32_t)small_area, 0xFFF, 0x96, 0x4);
    gdt[EXECONLY / 8] = descriptor(0, 0xFFFFF, 0x98, 0xC);
    gdt[RDCODE / 8] = descriptor(0, 0xFFFFF, 0x9A, 0xC);
    gdt[NOTPRES / 8] = descriptor(0, 0xFFFFF, 0x12, 0xC);
    gdt[READONLY / 8] = descriptor(0, 0xFFFFF, 0x90, 0xC);
    gdt[TSS_SEL / 8] = descriptor((uint32_t)tss, sizeof tss - 1, 0x89, 0x0);
    gdt[LDT_SEL / 8] = descriptor((uint32_t)ldt, sizeof ldt - 1, 0x82, 0x0);
    ldt[1] = descriptor((uint32_t)per_cpu, sizeof per_cpu - 1, 0x92, 0x4);
    gdtr.limit = sizeof gdt - 1;
    gdtr.base = (uint32_t)gdt;
    __asm__ volatile(
        "lgdt %0\n\t"
        "ljmp $0x08, $1f\n"
        "1:\n\t"
        "movw $0x10, %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%fs\n\t"
        "movw %%ax, %%gs\n\t"
        "movw %%ax, %%ss\n\t"
        : : "m"(gdtr) : "eax", "memory");
    set_gate(11, fault_stub11);
    set_gate(12, fault_stub12);
    set_gate(13, fault_stub13);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
    kprintf("own gdt: cs=%x ds=%x ss=%x, code descriptor accessed=%u\n", read_sel(0), read_sel(1), read_sel(2),
            (unsigned)((gdt[CODE / 8] >> 40) & 1));
}

static void bases_and_limits(void)
{
    per_cpu[3] = 0xC0FFEE;
    uint32_t v;
    __asm__ volatile("movw %1, %%gs\n\tmovl %%gs:12, %0" : "=r"(v) : "r"((uint16_t)BASED) : "memory");
    kprintf("gs-based read: %x, based descriptor accessed=%u\n", (unsigned)v, (unsigned)((gdt[BASED / 8] >> 40) & 1));

    TRY("movw %0, %%fs\n\tmovl $0x55, %%fs:0xFFC", "r"((uint16_t)SMALL));
    report("write at the end of a 4 KiB segment");
    kprintf("  stored %x\n", (unsigned)small_area[1023]);
    TRY("movw %0, %%fs\n\tmovl %%fs:0xFFE, %%eax", "r"((uint16_t)SMALL));
    report("read across the limit");
    TRY("movw %0, %%fs\n\tmovl $0x66, %%fs:0x1000", "r"((uint16_t)EXPDOWN));
    report("expand-down, above the limit");
    TRY("movw %0, %%fs\n\tmovl %%fs:0x800, %%eax", "r"((uint16_t)EXPDOWN));
    report("expand-down, below the limit");
    TRY("xorl %%eax, %%eax\n\tmovw %%ax, %%fs\n\tmovl %%fs:0, %%eax", "r"(0));
    report("use of a null fs");
    __asm__ volatile("movw %0, %%fs\n\tmovw %0, %%gs" : : "r"((uint16_t)DATA));
}

static void load_checks(void)
{
    TRY("movw %0, %%ds", "r"((uint16_t)NOTPRES));
    report("ds <- not present");
    TRY("movw %0, %%ss", "r"((uint16_t)NOTPRES));
    report("ss <- not present");
    TRY("movw %0, %%ss", "r"((uint16_t)READONLY));
    report("ss <- read-only data");
    TRY("movw %0, %%ss", "r"((uint16_t)0));
    report("ss <- null");
    TRY("movw %0, %%es", "r"((uint16_t)EXECONLY));
    report("es <- execute-only code");
    TRY("movw %0, %%es", "r"((uint16_t)RDCODE));
    report("es <- readable code");
    TRY("movw %0, %%es", "r"((uint16_t)(GDT_COUNT * 8 + 3)));
    report("es <- past the gdt limit");
    TRY("movw %0, %%es", "r"((uint16_t)TSS_SEL));
    report("es <- a tss");
    TRY("movw %0, %%es", "r"((uint16_t)(DATA | 3)));
    report("es <- data with rpl 3");
    __asm__ volatile("movw %0, %%es" : : "r"((uint16_t)DATA));
    kprintf("segment registers after: ds=%x ss=%x\n", read_sel(1), read_sel(2));
}

void far_target(void);
__asm__(".text\nfar_target:\n    movl 4(%esp), %ecx\n    movl $0xFA2, %edx\n    lret\n");

static void far_transfers(void)
{
    uint32_t pushed_cs = 0, marker = 0;
    __asm__ volatile("lcall $0x38, $far_target" : "=c"(pushed_cs), "=d"(marker) : : "memory");
    kprintf("far call: pushed cs=%x, marker %x, cs now %x\n", (unsigned)pushed_cs, (unsigned)marker, read_sel(0));
    uint32_t target = (uint32_t)far_target;
    gdt[GATE / 8] = (uint64_t)(target & 0xFFFF) | ((uint64_t)CODE << 16) | (0x8CULL << 40) | ((uint64_t)(target >> 16) << 48);
    pushed_cs = marker = 0;
    __asm__ volatile("lcall $0x50, $0" : "=c"(pushed_cs), "=d"(marker) : : "memory");
    kprintf("call gate: pushed cs=%x, marker %x\n", (unsigned)pushed_cs, (unsigned)marker);
    TRY("ljmp $0x10, $2f\n2:", "r"(0));
    report("far jump to a data segment");
}

static void system_segments(void)
{
    uint32_t tr = 0, ldtr = 0;
    __asm__ volatile("ltr %w1\n\tstr %0" : "=r"(tr) : "r"(TSS_SEL));
    kprintf("ltr/str: %x, tss type now %x\n", (unsigned)tr, (unsigned)((gdt[TSS_SEL / 8] >> 40) & 0xF));
    TRY("ltr %w0", "r"(TSS_SEL));
    report("ltr of a busy tss");
    uint32_t v = 0;
    per_cpu[5] = 0x1D7;
    __asm__ volatile("lldt %w2\n\tsldt %0\n\tmovw $0x0C, %%ax\n\tmovw %%ax, %%fs\n\tmovl %%fs:20, %1\n\tmovw $0x10, %%ax\n\tmovw %%ax, %%fs"
                     : "=r"(ldtr), "=r"(v) : "r"(LDT_SEL) : "eax", "memory");
    kprintf("lldt/sldt: %x, ldt read %x\n", (unsigned)ldtr, (unsigned)v);

    uint32_t ar = 0, limit = 0, zf_lar = 0, zf_lsl = 0, zf_verr_x = 0, zf_verw_ro = 0, zf_verw = 0, zf_bad = 0;
    __asm__ volatile("larl %k2, %0\n\tsetz %b1" : "=r"(ar), "=q"(zf_lar) : "r"((uint32_t)BASED));
    __asm__ volatile("lsll %k2, %0\n\tsetz %b1" : "=r"(limit), "=q"(zf_lsl) : "r"((uint32_t)BASED));
    __asm__ volatile("verr %w1\n\tsetz %b0" : "=q"(zf_verr_x) : "r"(EXECONLY));
    __asm__ volatile("verw %w1\n\tsetz %b0" : "=q"(zf_verw_ro) : "r"(READONLY));
    __asm__ volatile("verw %w1\n\tsetz %b0" : "=q"(zf_verw) : "r"(DATA));
    __asm__ volatile("lsll %k1, %%eax\n\tsetz %b0" : "=q"(zf_bad) : "r"((uint32_t)(GDT_COUNT * 8)) : "eax");
    kprintf("lar %x zf=%u, lsl %x zf=%u, verr execute-only zf=%u, verw read-only zf=%u, verw data zf=%u, lsl past the gdt zf=%u\n",
            (unsigned)ar, (unsigned)(zf_lar & 1), (unsigned)limit, (unsigned)(zf_lsl & 1), (unsigned)(zf_verr_x & 1),
            (unsigned)(zf_verw_ro & 1), (unsigned)(zf_verw & 1), (unsigned)(zf_bad & 1));

    uint32_t sel = 0x10, zf1 = 0, zf2 = 0;
    __asm__ volatile("arpl %w3, %w0\n\tsetz %b1\n\tarpl %w3, %w0\n\tsetz %b2" : "+r"(sel), "=q"(zf1), "=q"(zf2) : "r"(3));
    kprintf("arpl: %x zf=%u then zf=%u\n", (unsigned)(sel & 0xFFFF), (unsigned)(zf1 & 1), (unsigned)(zf2 & 1));

    uint32_t msw1 = 0, msw2 = 0, cr0 = 0;
    __asm__ volatile("movl $0xE, %%eax\n\tlmsw %%ax\n\tsmsw %0\n\tclts\n\tsmsw %1\n\txorl %%eax, %%eax\n\tlmsw %%ax\n\tmovl %%cr0, %%eax\n\tmovl %%eax, %2"
                     : "=r"(msw1), "=r"(msw2), "=m"(cr0) : : "eax");
    kprintf("lmsw/smsw/clts: %x, %x, cr0 %x\n", (unsigned)(msw1 & 0xFFFF), (unsigned)(msw2 & 0xFFFF), (unsigned)(cr0 & 0xFFFF));
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    setup();
    bases_and_limits();
    load_checks();
    far_transfers();
    system_segments();
    kprintf("segments done\n");
    return 0;
}
