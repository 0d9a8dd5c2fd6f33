/* paging.c - 32-bit paging as a kernel uses it (Intel SDM Vol. 3A, chapter 4), printed so that the output can be
 * compared byte for byte with qemu-system-i386:
 *   - identity-mapped low memory, then CR0.PG;
 *   - demand paging from a #PF handler (CR2, the error code, retry of the faulting instruction);
 *   - the accessed and dirty bits, CR0.WP, 4 MiB pages (CR4.PSE) and a reserved bit in a 4 MiB PDE;
 *   - INVLPG and CR3 reloads after changing an entry;
 *   - code patched through a second mapping of its page, and run through both;
 *   - instruction fetches from a page that is not present, and an instruction that straddles into one.
 * Everything stays in ring 0 (user-mode checks come with privilege levels).
 */
#include "guest.h"

#define P   0x001u
#define RW  0x002u
#define US  0x004u
#define A   0x020u
#define D   0x040u
#define PS  0x080u

#define WINDOW      0x40000000u     /* 4 MiB of linear addresses served by window_table */
#define LARGE       0x40400000u     /* a 4 MiB page */
#define IDENTITY_MB 8u

/* volatile: the processor writes the accessed and dirty bits behind the compiler's back. */
static volatile uint32_t page_directory[1024] __attribute__((aligned(4096)));
static uint32_t identity_tables[IDENTITY_MB / 4][1024] __attribute__((aligned(4096)));
static volatile uint32_t window_table[1024] __attribute__((aligned(4096)));
static volatile uint8_t frames[8][4096] __attribute__((aligned(4096)));

struct idt_gate { uint16_t offset_low, selector; uint8_t zero, type_attr; uint16_t offset_high; };
static struct idt_gate idt[32] __attribute__((aligned(8)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } idtr;

/* What the #PF handler saw, and what it does about it. */
static volatile uint32_t fault_count, fault_cr2, fault_error, fault_eip;
enum fix { FIX_MAP, FIX_WRITABLE, FIX_CLEAR_RESERVED, FIX_MAP_RET };
static volatile enum fix fix_action;
static volatile uint32_t fix_frame;     /* the physical page FIX_MAP maps */

static inline uint32_t read_cr0(void) { uint32_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline void write_cr0(uint32_t v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline uint32_t read_cr3(void) { uint32_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint32_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline uint32_t read_cr4(void) { uint32_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr4(uint32_t v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }
static inline void invlpg(uint32_t linear) { __asm__ volatile("invlpg (%0)" : : "r"(linear) : "memory"); }
static inline uint32_t peek(uint32_t linear) { return *(volatile uint32_t *)linear; }
static inline void poke(uint32_t linear, uint32_t v) { *(volatile uint32_t *)linear = v; }

static volatile uint32_t *window_pte(uint32_t linear) { return &window_table[(linear >> 12) & 1023]; }

/* Called by the stub with the fault's CR2, error code and EIP. */
void page_fault(uint32_t cr2, uint32_t error, uint32_t eip)
{
    fault_count++;
    fault_cr2 = cr2;
    fault_error = error;
    fault_eip = eip;
    switch (fix_action) {
    case FIX_MAP:
    case FIX_MAP_RET:
        *window_pte(cr2) = fix_frame | P | RW;
        break;
    case FIX_WRITABLE:
        *window_pte(cr2) |= RW;
        break;
    case FIX_CLEAR_RESERVED:
        page_directory[cr2 >> 22] &= ~(1u << 21);
        break;
    }
    invlpg(cr2);
}

/* The #PF entry: the CPU pushed EFLAGS, CS, EIP and the error code. */
__asm__(
    ".text\n"
    ".globl pf_stub\n"
    "pf_stub:\n"
    "    pushal\n"
    "    cld\n"
    "    pushl 36(%esp)\n"        /* EIP */
    "    pushl 36(%esp)\n"        /* the error code (the stack moved by 4) */
    "    movl %cr2, %eax\n"
    "    pushl %eax\n"
    "    call page_fault\n"
    "    addl $12, %esp\n"
    "    popal\n"
    "    addl $4, %esp\n"         /* drop the error code */
    "    iret\n");
void pf_stub(void);

static void install_idt(void)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    uint32_t offset = (uint32_t)pf_stub;
    idt[14].offset_low = (uint16_t)offset;
    idt[14].selector = cs;           /* whatever flat code segment the loader gave us */
    idt[14].type_attr = 0x8E;        /* present, DPL 0, 32-bit interrupt gate */
    idt[14].offset_high = (uint16_t)(offset >> 16);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

static void report(const char *what)
{
    kprintf("%s: faults=%u cr2=%08x error=%x\n", what, (unsigned)fault_count, (unsigned)fault_cr2, (unsigned)fault_error);
    fault_count = 0;
    fault_cr2 = fault_error = 0;
}

static void setup_paging(void)
{
    for (uint32_t t = 0; t < IDENTITY_MB / 4; t++) {
        for (uint32_t i = 0; i < 1024; i++) {
            identity_tables[t][i] = ((t * 1024 + i) << 12) | P | RW;
        }
        page_directory[t] = (uint32_t)identity_tables[t] | P | RW;
    }
    page_directory[WINDOW >> 22] = (uint32_t)window_table | P | RW;
    write_cr3((uint32_t)page_directory);
    write_cr0(read_cr0() | 0x80000000u);
    kprintf("paging on: cr0.pg=%u cr3=%s\n", read_cr0() >> 31, read_cr3() == (uint32_t)page_directory ? "page_directory" : "?");
}

static void demand_paging(void)
{
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 1024; j++) ((volatile uint32_t *)frames[i])[j] = 0x1000u * (uint32_t)i + (uint32_t)j;
    }
    fix_action = FIX_MAP;
    fix_frame = (uint32_t)frames[1];
    uint32_t v = peek(WINDOW + 0x3010);
    report("read of a page not present");
    kprintf("  value %x, pte a=%u d=%u, pde a=%u\n", (unsigned)v, !!(*window_pte(WINDOW + 0x3000) & A),
            !!(*window_pte(WINDOW + 0x3000) & D), !!(page_directory[WINDOW >> 22] & A));

    fix_frame = (uint32_t)frames[2];
    poke(WINDOW + 0x5ffc, 0xCAFE);
    report("write to a page not present");
    kprintf("  frame word %x, pte a=%u d=%u\n", (unsigned)((volatile uint32_t *)frames[2])[1023], !!(*window_pte(WINDOW + 0x5000) & A),
            !!(*window_pte(WINDOW + 0x5000) & D));

    poke(WINDOW + 0x3014, 0xBEEF);
    report("write through a translation cached by a read");
    kprintf("  pte d=%u\n", !!(*window_pte(WINDOW + 0x3000) & D));

    /* A fault at the page-table level sets the PDE's accessed bit on the way (it was used). */
    page_directory[WINDOW >> 22] &= ~A;
    write_cr3(read_cr3());
    fix_frame = (uint32_t)frames[3];
    v = peek(WINDOW + 0x7000);
    report("pte not present, pde accessed bit clear");
    kprintf("  value %x, pde a=%u\n", (unsigned)v, !!(page_directory[WINDOW >> 22] & A));
}

static void write_protect(void)
{
    *window_pte(WINDOW + 0x9000) = (uint32_t)frames[4] | P;   /* read-only */
    invlpg(WINDOW + 0x9000);
    poke(WINDOW + 0x9000, 0x11);
    report("supervisor write to a read-only page, cr0.wp=0");
    kprintf("  frame word %x\n", (unsigned)((volatile uint32_t *)frames[4])[0]);

    write_cr0(read_cr0() | 0x10000u);
    fix_action = FIX_WRITABLE;
    poke(WINDOW + 0x9004, 0x22);
    report("supervisor write to a read-only page, cr0.wp=1");
    kprintf("  frame word %x, pte rw=%u d=%u\n", (unsigned)((volatile uint32_t *)frames[4])[1], !!(*window_pte(WINDOW + 0x9000) & RW),
            !!(*window_pte(WINDOW + 0x9000) & D));
    write_cr0(read_cr0() & ~0x10000u);
}

static void large_pages(void)
{
    write_cr4(read_cr4() | 0x10u);                               /* CR4.PSE */
    page_directory[LARGE >> 22] = 0x00000000u | P | RW | PS;     /* the first 4 MiB of physical memory */
    invlpg(LARGE);
    uint32_t through_large = peek(LARGE + (uint32_t)frames[3]);
    kprintf("4 MiB page: value %x, pde a=%u d=%u\n", (unsigned)through_large, !!(page_directory[LARGE >> 22] & A),
            !!(page_directory[LARGE >> 22] & D));
    poke(LARGE + (uint32_t)frames[3] + 8, 0x4444);
    kprintf("  after a write: pde d=%u, frame word %x\n", !!(page_directory[LARGE >> 22] & D), (unsigned)((volatile uint32_t *)frames[3])[2]);

    /* Bit 21 is reserved in a 4 MiB PDE whatever PSE-36 gives (SDM table 4-4 with MAXPHYADDR 32 or 36). */
    page_directory[LARGE >> 22] |= 1u << 21;
    invlpg(LARGE);
    fix_action = FIX_CLEAR_RESERVED;
    uint32_t v = peek(LARGE + (uint32_t)frames[3] + 4);
    /* The SDM sets P with RSVD (error 9: the entry was present); QEMU 7.2's TCG reports RSVD alone (8). */
    report("reserved bit 21 in a 4 MiB pde");
    kprintf("  value %x\n", (unsigned)v);

    write_cr4(read_cr4() & ~0x10u);
    page_directory[LARGE >> 22] = 0;
    invlpg(LARGE);
}

static void tlb_maintenance(void)
{
    *window_pte(WINDOW + 0xA000) = (uint32_t)frames[0] | P | RW;
    invlpg(WINDOW + 0xA000);
    uint32_t before = peek(WINDOW + 0xA000);
    *window_pte(WINDOW + 0xA000) = (uint32_t)frames[1] | P | RW;
    invlpg(WINDOW + 0xA000);
    uint32_t after_invlpg = peek(WINDOW + 0xA000);
    *window_pte(WINDOW + 0xA000) = (uint32_t)frames[2] | P | RW;
    write_cr3(read_cr3());
    uint32_t after_cr3 = peek(WINDOW + 0xA000);
    kprintf("tlb: %x, after invlpg %x, after a cr3 reload %x\n", (unsigned)before, (unsigned)after_invlpg, (unsigned)after_cr3);
}

/* Returns 1 from the copy patched to return 2 through its alias. */
static int __attribute__((noinline, aligned(4096), section(".text.alias"))) alias_code(void)
{
    int r;
    __asm__ volatile("movl $1, %0" : "=r"(r));
    return r;
}

static void aliased_code(void)
{
    uint32_t code = (uint32_t)alias_code & ~0xFFFu;
    *window_pte(WINDOW + 0xB000) = code | P | RW;
    *window_pte(WINDOW + 0xC000) = code | P | RW;
    invlpg(WINDOW + 0xB000);
    invlpg(WINDOW + 0xC000);
    uint32_t offset = (uint32_t)alias_code - code;
    int (*via_b)(void) = (int (*)(void))(WINDOW + 0xB000 + offset);
    int (*via_c)(void) = (int (*)(void))(WINDOW + 0xC000 + offset);
    int first = via_b();
    /* Find the movl $1 (B8+r imm32) and patch its immediate through the other mapping. */
    volatile uint8_t *bytes = (volatile uint8_t *)(WINDOW + 0xC000 + offset);
    int patched = 0;
    for (int i = 0; i < 16 && !patched; i++) {
        if ((bytes[i] & 0xF8) == 0xB8 && bytes[i + 1] == 1 && bytes[i + 2] == 0) {
            bytes[i + 1] = 2;
            patched = 1;
        }
    }
    int second = via_b();
    int third = via_c();
    int direct = alias_code();
    kprintf("aliased code: %d then %d through one mapping, %d through the other, %d at home (patched=%d)\n",
            first, second, third, direct, patched);
}

static void fetch_faults(void)
{
    /* A call into a page that is not present: the handler maps a page holding RET there. */
    frames[5][0x120] = 0xC3;
    fix_action = FIX_MAP_RET;
    fix_frame = (uint32_t)frames[5];
    void (*target)(void) = (void (*)(void))(WINDOW + 0xD120);
    target();
    report("call into a page not present");
    kprintf("  eip at the fault %08x\n", (unsigned)fault_eip);

    /* mov eax, imm32 starting 2 bytes before the end of a present page: the rest is on a page not present. */
    frames[6][0xFFE] = 0xB8;
    frames[6][0xFFF] = 0x78;
    frames[7][0] = 0x56; frames[7][1] = 0x34; frames[7][2] = 0x12; frames[7][3] = 0xC3; /* ...imm32 then RET */
    *window_pte(WINDOW + 0xE000) = (uint32_t)frames[6] | P | RW;
    *window_pte(WINDOW + 0xF000) = 0;
    invlpg(WINDOW + 0xE000);
    invlpg(WINDOW + 0xF000);
    fix_action = FIX_MAP;
    fix_frame = (uint32_t)frames[7];
    uint32_t (*straddle)(void) = (uint32_t (*)(void))(WINDOW + 0xEFFE);
    uint32_t v = straddle();
    report("instruction straddling into a page not present");
    kprintf("  eip at the fault %08x, eax %x\n", (unsigned)fault_eip, (unsigned)v);
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    install_idt();
    setup_paging();
    demand_paging();
    write_protect();
    large_pages();
    tlb_maintenance();
    aliased_code();
    fetch_faults();
    kprintf("paging done\n");
    return 0;
}
