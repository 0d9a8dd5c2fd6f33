/* rings.c - a kernel and its user mode (Intel SDM Vol. 3A, 5.5-5.9 and 6.12; Vol. 1, 18.5), printed so that the
 * output can be compared byte for byte with qemu-system-i386:
 *   - a GDT with ring-0 and ring-3 segments, a TSS with ESP0 and an I/O permission bitmap, paging with user pages;
 *   - IRET to ring 3; user code prints through COM1 itself, because the bitmap opens ports 0x3F8-0x3FF;
 *   - system calls through a DPL 3 interrupt gate, on the TSS's ring-0 stack;
 *   - what ring 3 may not do: HLT, CLI, a port the bitmap closes, a DPL 0 gate, a supervisor page (#GP, #PF);
 *   - POPF in ring 3 clearing IF: no fault, no effect (Popek and Goldberg's sensitive, unprivileged instruction);
 *   - the debug registers (Vol. 3B, 17.2): their reset values and fixed bits in ring 0, #GP for MOV DR in ring 3;
 *   - SYSENTER from ring 3 and SYSEXIT back (Vol. 2B), with the MSRs written in ring 0; SYSEXIT in ring 3 is #GP;
 *   - a far CALL through a DPL 3 call gate into ring 0 (Vol. 3A, 5.8.5), two parameters copied to the ring-0 stack,
 *     and RETF 8 back to ring 3 releasing them from both stacks.
 */
#include "guest.h"

#define KCODE 0x08
#define KDATA 0x10
#define UCODE 0x1B
#define UDATA 0x23
#define TSS_SEL 0x28

static uint64_t gdt[7] __attribute__((aligned(8)));
#define CALL_GATE 0x33 /* GDT entry 6, RPL 3 */
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } gdtr, idtr;
struct idt_gate { uint16_t offset_low, selector; uint8_t zero, type_attr; uint16_t offset_high; };
static struct idt_gate idt[0x82] __attribute__((aligned(8)));
/* A 32-bit TSS (104 bytes) followed by its I/O bitmap for ports 0-0x3FF and the closing 0xFF byte. */
static volatile uint8_t tss[104 + 128 + 1] __attribute__((aligned(4)));
static uint8_t kernel_stack[4096] __attribute__((aligned(16)));
static uint8_t user_stack[4096] __attribute__((aligned(16)));
static volatile uint32_t page_directory[1024] __attribute__((aligned(4096)));
static volatile uint32_t page_tables[2][1024] __attribute__((aligned(4096)));
static volatile uint32_t secret_page[1024] __attribute__((aligned(4096)));
static uint8_t sysenter_stack[1024] __attribute__((aligned(16)));

volatile uint32_t recover_eip, fault_count, fault_vector, fault_error, fault_cs, fault_cr2;

static uint64_t segment(uint32_t type_s_dpl_p)
{
    return 0xFFFFull | ((uint64_t)type_s_dpl_p << 40) | (0xFull << 48) | (0xCull << 52);
}

/* Faults from ring 3 resume at recover_eip, still in ring 3. */
void user_fault(uint32_t vector, uint32_t error, uint32_t *frame)
{
    uint32_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    fault_count++;
    fault_vector = vector;
    fault_error = error;
    fault_cs = frame[1];
    fault_cr2 = vector == 14 ? cr2 : 0;
    frame[0] = recover_eip;
}

/* int 0x80: EAX=1 reports the frame the processor pushed; EAX=0 ends the guest. */
void system_call(uint32_t number, uint32_t *frame, uint32_t esp_in_kernel)
{
    if (number == 0) {
        kprintf("rings done\n");
        guest_exit(0);
    }
    kprintf("system call on the ring-0 stack: cs=%x eflags.if=%u esp=%s ss=%x, handler esp = esp0 - %u\n",
            (unsigned)frame[1], (unsigned)((frame[2] >> 9) & 1),
            frame[3] > (uint32_t)user_stack && frame[3] <= (uint32_t)user_stack + sizeof user_stack ? "user stack" : "?",
            (unsigned)frame[4], (unsigned)((uint32_t)kernel_stack + sizeof kernel_stack - esp_in_kernel));
}

#define FAULT_STUB(n) \
    __asm__(".text\n.globl fault_stub" #n "\nfault_stub" #n ":\n    pushl $" #n "\n    jmp fault_common\n"); \
    void fault_stub##n(void);
FAULT_STUB(13)
FAULT_STUB(14)
__asm__(
    ".text\n"
    "fault_common:\n"
    "    pushal\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    cld\n"
    "    leal 40(%esp), %edx\n"      /* the frame: EIP, CS, EFLAGS, ESP, SS */
    "    pushl %edx\n"
    "    pushl 40(%esp)\n"           /* error code */
    "    pushl 40(%esp)\n"           /* vector */
    "    call user_fault\n"
    "    addl $12, %esp\n"
    "    movw $0x23, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    popal\n"
    "    addl $8, %esp\n"
    "    iret\n"
    ".globl syscall_stub\n"
    "syscall_stub:\n"
    "    pushal\n"
    "    movw $0x10, %cx\n"
    "    movw %cx, %ds\n"
    "    movw %cx, %es\n"
    "    cld\n"
    "    movl %esp, %ecx\n"
    "    leal 32(%esp), %edx\n"
    "    pushl %ecx\n"
    "    pushl %edx\n"
    "    pushl %eax\n"
    "    call system_call\n"
    "    addl $12, %esp\n"
    "    movw $0x23, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    popal\n"
    "    iret\n");
void syscall_stub(void);

/* SYSENTER lands here in ring 0, on the stack IA32_SYSENTER_ESP names, with IF clear; ECX and EDX are the user's
   stack and return address, which SYSEXIT takes back. */
void sysenter_report(uint32_t *saved)
{
    uint16_t cs, ss;
    uint32_t flags, esp;
    __asm__ volatile("mov %%cs, %0\n\tmov %%ss, %1\n\tpushfl\n\tpopl %2\n\tmovl %%esp, %3" : "=r"(cs), "=r"(ss), "=r"(flags), "=r"(esp));
    kprintf("sysenter: cs=%x ss=%x if=%u on the sysenter stack=%s, ecx in the user stack=%s\n", cs, ss, (unsigned)((flags >> 9) & 1),
            esp > (uint32_t)sysenter_stack && esp < (uint32_t)sysenter_stack + sizeof sysenter_stack ? "yes" : "no",
            saved[1] > (uint32_t)user_stack && saved[1] <= (uint32_t)user_stack + sizeof user_stack ? "yes" : "no");
}
__asm__(
    ".text\n"
    "sysenter_entry:\n"
    "    pushl %ecx\n"
    "    pushl %edx\n"
    "    pushl %esp\n"
    "    call sysenter_report\n"
    "    addl $4, %esp\n"
    "    popl %edx\n"
    "    popl %ecx\n"
    "    sti\n"
    "    sysexit\n");
void sysenter_entry(void);

/* The call gate's ring-0 side: the frame is EIP, CS, the two copied parameters, then the caller's ESP and SS. */
void call_gate_report(uint32_t *frame)
{
    uint16_t cs, ss;
    uint32_t esp;
    __asm__ volatile("mov %%cs, %0\n\tmov %%ss, %1\n\tmovl %%esp, %2" : "=r"(cs), "=r"(ss), "=r"(esp));
    kprintf("call gate: cs=%x ss=%x parameters %x %x, caller cs=%x ss=%x, on the ring-0 stack=%s\n", cs, ss,
            (unsigned)frame[2], (unsigned)frame[3], (unsigned)frame[1], (unsigned)frame[5],
            esp > (uint32_t)kernel_stack && esp < (uint32_t)kernel_stack + sizeof kernel_stack ? "yes" : "no");
}
__asm__(
    ".text\n"
    "call_gate_entry:\n"
    "    pushal\n"
    "    leal 32(%esp), %eax\n"
    "    pushl %eax\n"
    "    call call_gate_report\n"
    "    addl $4, %esp\n"
    "    popal\n"
    "    lret $8\n");
void call_gate_entry(void);

static void set_gate(int vector, void (*stub)(void), int dpl)
{
    uint32_t offset = (uint32_t)stub;
    idt[vector].offset_low = (uint16_t)offset;
    idt[vector].selector = KCODE;
    idt[vector].type_attr = (uint8_t)(0x8E | (dpl << 5));
    idt[vector].offset_high = (uint16_t)(offset >> 16);
}

#define TRY(text, ...) do { fault_count = 0; fault_vector = fault_error = fault_cs = fault_cr2 = 0; \
    __asm__ volatile("movl $1f, recover_eip\n\t" text "\n1:\n" : : __VA_ARGS__ : "memory", "eax", "cc"); } while (0)

static void report(const char *what)
{
    kprintf("%s: faults=%u vector=%u error=%x cs=%x cr2=%x\n", what, (unsigned)fault_count, (unsigned)fault_vector,
            (unsigned)fault_error, (unsigned)fault_cs, (unsigned)fault_cr2);
}

/* Ring 3. */
static void __attribute__((noinline, used)) user_main(void)
{
    uint16_t cs, ss;
    __asm__ volatile("mov %%cs, %0\n\tmov %%ss, %1" : "=r"(cs), "=r"(ss));
    kprintf("ring 3: cs=%x ss=%x, printing through the ports the i/o bitmap opens\n", cs, ss);
    __asm__ volatile("movl $1, %%eax\n\tint $0x80" : : : "eax", "memory");
    TRY("hlt", "r"(0));
    report("hlt");
    TRY("cli", "r"(0));
    report("cli");
    TRY("inb $0x61, %%al", "r"(0));
    report("in from a port the bitmap closes");
    TRY("int $0x81", "r"(0));
    report("int through a dpl 0 gate");
    TRY("movl %0, %%eax\n\tmovl (%%eax), %%eax", "r"((uint32_t)secret_page));
    report("read of a supervisor page");
    TRY("movl %%dr7, %%eax", "r"(0));
    report("mov from dr7");
    uint32_t before, after;
    __asm__ volatile("pushfl\n\tpopl %0\n\tpushl $0x002\n\tpopfl\n\tpushfl\n\tpopl %1" : "=r"(before), "=r"(after) : : "cc");
    kprintf("popf clearing if in ring 3: if before=%u after=%u, no fault\n", (unsigned)((before >> 9) & 1), (unsigned)((after >> 9) & 1));
    uint16_t cs_after, ss_after;
    uint32_t flags_after;
    __asm__ volatile("movl %%esp, %%ecx\n\tmovl $2f, %%edx\n\tsysenter\n2:\n\t"
                     "mov %%cs, %0\n\tmov %%ss, %1\n\tpushfl\n\tpopl %2"
                     : "=r"(cs_after), "=r"(ss_after), "=r"(flags_after) : : "ecx", "edx", "memory");
    kprintf("after sysexit: cs=%x ss=%x if=%u\n", cs_after, ss_after, (unsigned)((flags_after >> 9) & 1));
    TRY("sysexit", "r"(0));
    report("sysexit in ring 3");
    uint32_t esp_before, esp_after;
    uint16_t cs_back;
    __asm__ volatile("movl %%esp, %0\n\tpushl $0x2222\n\tpushl $0x1111\n\tlcall $0x33, $0\n\tmovl %%esp, %1\n\tmov %%cs, %2"
                     : "=&r"(esp_before), "=&r"(esp_after), "=&r"(cs_back) : : "memory");
    kprintf("after retf 8: cs=%x, both parameters released: %s\n", cs_back, esp_after == esp_before ? "yes" : "no");
    __asm__ volatile("xorl %%eax, %%eax\n\tint $0x80" : : : "eax", "memory");
}

__asm__(".text\nuser_entry:\n    movw $0x23, %ax\n    movw %ax, %ds\n    movw %ax, %es\n    call user_main\n1:  jmp 1b\n");
void user_entry(void);

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    /* Ring 3 runs with IF=1. Under QEMU the firmware leaves the PIT's IRQ 0 unmasked at the 8259 (vector 8, which
       this IDT has no gate for), so a timer tick at a random instruction would change the output. Mask both PICs. */
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    gdt[1] = segment(0x9A);
    gdt[2] = segment(0x92);
    gdt[3] = segment(0xFA);
    gdt[4] = segment(0xF2);
    uint32_t tss_base = (uint32_t)tss, tss_limit = sizeof tss - 1;
    gdt[5] = (uint64_t)(tss_limit & 0xFFFF) | ((uint64_t)(tss_base & 0xFFFFFF) << 16) | (0x89ull << 40) | ((uint64_t)(tss_base >> 24) << 56);
    *(volatile uint32_t *)(tss + 4) = (uint32_t)kernel_stack + sizeof kernel_stack;   /* ESP0 */
    *(volatile uint32_t *)(tss + 8) = KDATA;                                          /* SS0 */
    *(volatile uint16_t *)(tss + 0x66) = 104;                                         /* I/O bitmap offset */
    for (unsigned i = 0; i <= 128; i++) tss[104 + i] = i == 0x3F8 / 8 ? 0x00 : 0xFF;
    uint32_t gate_target = (uint32_t)call_gate_entry;
    gdt[6] = (gate_target & 0xFFFF) | ((uint64_t)KCODE << 16) | (2ull << 32) | (0xECull << 40) | ((uint64_t)(gate_target >> 16) << 48);
    gdtr.limit = sizeof gdt - 1;
    gdtr.base = (uint32_t)gdt;
    set_gate(13, fault_stub13, 0);
    set_gate(14, fault_stub14, 0);
    set_gate(0x80, syscall_stub, 3);
    set_gate(0x81, syscall_stub, 0);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    /* Paging: the first 8 MiB identity-mapped, user-accessible, except the secret page (supervisor only). */
    for (uint32_t t = 0; t < 2; t++) {
        for (uint32_t i = 0; i < 1024; i++) page_tables[t][i] = ((t * 1024 + i) << 12) | 7;
        page_directory[t] = (uint32_t)page_tables[t] | 7;
    }
    uint32_t secret = (uint32_t)secret_page >> 12;
    page_tables[secret / 1024][secret % 1024] = (secret << 12) | 3;
    __asm__ volatile(
        "lgdt %0\n\t"
        "lidt %1\n\t"
        "ljmp $0x08, $1f\n"
        "1:\n\t"
        "movw $0x10, %%ax\n\tmovw %%ax, %%ds\n\tmovw %%ax, %%es\n\tmovw %%ax, %%ss\n\tmovw %%ax, %%fs\n\tmovw %%ax, %%gs\n\t"
        "movw $0x28, %%ax\n\tltr %%ax\n\t"
        "movl %2, %%cr3\n\t"
        "movl %%cr0, %%eax\n\torl $0x80000000, %%eax\n\tmovl %%eax, %%cr0\n\t"
        : : "m"(gdtr), "m"(idtr), "r"(page_directory) : "eax", "memory");
    uint32_t dr6, dr7, dr0, dr3, dr4, dr5;
    __asm__ volatile("mov %%dr6, %0\n\tmov %%dr7, %1" : "=r"(dr6), "=r"(dr7));
    kprintf("debug registers at boot: dr6=%x dr7=%x\n", (unsigned)dr6, (unsigned)dr7);
    /* Breakpoint fields without an enable bit (L0-G3 clear), so that nothing fires; then the fixed bits as read back. */
    __asm__ volatile("mov %0, %%dr0\n\tmov %1, %%dr3\n\tmov %2, %%dr7\n\tmov %3, %%dr6"
                     : : "r"(0x12345678u), "r"(0xCAFEF00Du), "r"(0xFFFF0300u), "r"(0x0000E00Fu));
    __asm__ volatile("mov %%dr0, %0\n\tmov %%dr3, %1\n\tmov %%dr6, %2\n\tmov %%dr7, %3\n\tmov %%dr4, %4\n\tmov %%dr5, %5"
                     : "=r"(dr0), "=r"(dr3), "=r"(dr6), "=r"(dr7), "=r"(dr4), "=r"(dr5));
    kprintf("after writes: dr0=%x dr3=%x dr6=%x dr7=%x dr4=%x dr5=%x\n", (unsigned)dr0, (unsigned)dr3, (unsigned)dr6,
            (unsigned)dr7, (unsigned)dr4, (unsigned)dr5);
    __asm__ volatile("mov %0, %%dr7" : : "r"(0x400u));
    /* SYSENTER_CS names the ring-0 code segment; SS is the next descriptor, and SYSEXIT's CS and SS the two after. */
    __asm__ volatile("wrmsr" : : "c"(0x174), "a"(KCODE), "d"(0));
    __asm__ volatile("wrmsr" : : "c"(0x175), "a"((uint32_t)sysenter_stack + sizeof sysenter_stack), "d"(0));
    __asm__ volatile("wrmsr" : : "c"(0x176), "a"((uint32_t)sysenter_entry), "d"(0));
    kprintf("kernel: gdt, tss with esp0 and an i/o bitmap, paging with user pages; iret to ring 3\n");
    __asm__ volatile(
        "pushl $0x23\n\t"
        "pushl %0\n\t"
        "pushl $0x202\n\t"
        "pushl $0x1B\n\t"
        "pushl $user_entry\n\t"
        "iret" : : "r"((uint32_t)user_stack + sizeof user_stack) : "memory");
    return 1;
}
