/* tasks.c - hardware task switching (Intel SDM Vol. 3A, 8.3), printed so that the output can be compared byte for
 * byte with qemu-system-i386:
 *   - a far JMP to a TSS descriptor, and back: the busy flags move, the link and NT stay clear;
 *   - a far CALL through a task gate in the GDT and IRET back: NT and the back link, the caller stays busy;
 *   - #GP through a task gate in the IDT: the error code on the handler task's stack, the faulting task resumed by IRET;
 *   - INT n through a task gate; CR0.TS set by every switch;
 *   - the checks before a switch: a busy TSS, a TSS that is not present, one whose limit is too small, a gate DPL.
 * Linux's i386 kernel handles a double fault through a task gate in the same way.
 */
#include "guest.h"

#define KCODE 0x08
#define KDATA 0x10
#define TSS_MAIN 0x18
#define TSS_WORKER 0x20
#define TSS_HANDLER 0x28
#define GATE_WORKER 0x30     /* a task gate in the GDT naming TSS_WORKER */
#define TSS_ABSENT 0x38
#define TSS_SHORT 0x40
#define GATE_DPL0 0x4B       /* a DPL 0 task gate, reached with RPL 3 */

struct tss32 {
    uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
    uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint32_t es, cs, ss, ds, fs, gs, ldt;
    uint16_t trap, iomap;
} __attribute__((packed));

static uint64_t gdt[10] __attribute__((aligned(8)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } gdtr, idtr;
static uint64_t idt[0x41] __attribute__((aligned(8)));
static volatile struct tss32 tss_main, tss_worker, tss_handler;
static uint8_t worker_stack[4096] __attribute__((aligned(16)));
static uint8_t handler_stack[4096] __attribute__((aligned(16)));

volatile uint32_t recover_eip, fault_count, fault_vector, fault_error;

static uint64_t segment(uint32_t access)
{
    return 0xFFFFull | ((uint64_t)access << 40) | (0xFull << 48) | (0xCull << 52);
}

static uint64_t tss_descriptor(volatile struct tss32 *tss, uint32_t limit, uint32_t access)
{
    uint32_t base = (uint32_t)tss;
    return (uint64_t)(limit & 0xFFFF) | ((uint64_t)(base & 0xFFFFFF) << 16) | ((uint64_t)access << 40) | ((uint64_t)(base >> 24) << 56);
}

static uint64_t task_gate(uint16_t tss_selector, int dpl)
{
    return ((uint64_t)tss_selector << 16) | ((uint64_t)(0x85 | (dpl << 5)) << 40);
}

static uint64_t interrupt_gate(void (*stub)(void))
{
    uint32_t offset = (uint32_t)stub;
    return (offset & 0xFFFF) | ((uint64_t)KCODE << 16) | (0x8Eull << 40) | ((uint64_t)(offset >> 16) << 48);
}

static unsigned busy(uint16_t selector) { return (unsigned)((gdt[selector >> 3] >> 41) & 1); }
static unsigned task_register(void) { uint16_t tr; __asm__ volatile("str %0" : "=r"(tr)); return tr; }
static unsigned nested(void) { uint32_t f; __asm__ volatile("pushfl\n\tpopl %0" : "=r"(f)); return (f >> 14) & 1; }
static unsigned cr0_ts(void) { uint32_t c; __asm__ volatile("movl %%cr0, %0" : "=r"(c)); return (c >> 3) & 1; }

/* An ordinary #GP/#NP/#TS handler (interrupt gate): record, resume at recover_eip. */
void fault(uint32_t vector, uint32_t error, uint32_t *frame)
{
    fault_count++;
    fault_vector = vector;
    fault_error = error;
    frame[0] = recover_eip;
}

#define FAULT_STUB(n) \
    __asm__(".text\n.globl fault_stub" #n "\nfault_stub" #n ":\n    pushl $" #n "\n    jmp fault_common\n"); \
    void fault_stub##n(void);
FAULT_STUB(10)
FAULT_STUB(11)
FAULT_STUB(13)
__asm__(
    ".text\n"
    "fault_common:\n"
    "    pushal\n"
    "    leal 40(%esp), %edx\n"
    "    pushl %edx\n"
    "    pushl 40(%esp)\n"
    "    pushl 40(%esp)\n"
    "    call fault\n"
    "    addl $12, %esp\n"
    "    popal\n"
    "    addl $8, %esp\n"
    "    iret\n");

#define TRY(text, ...) do { fault_count = 0; fault_vector = fault_error = 0; \
    __asm__ volatile("movl $1f, recover_eip\n\t" text "\n1:\n" : : __VA_ARGS__ : "memory", "eax", "cc"); } while (0)

static void report(const char *what)
{
    kprintf("%s: faults=%u vector=%u error=%x\n", what, (unsigned)fault_count, (unsigned)fault_vector, (unsigned)fault_error);
}

/* The worker task: entered by JMP (returns by JMP) or by CALL (returns by IRET). */
void worker_body(uint32_t how)
{
    kprintf("worker: tr=%x nt=%u link=%x busy main=%u worker=%u ts=%u esi=%x\n", task_register(), nested(),
            (unsigned)tss_worker.link, busy(TSS_MAIN), busy(TSS_WORKER), cr0_ts(), (unsigned)how);
    __asm__ volatile("clts");
}

__asm__(
    ".text\n"
    "worker_jmp_entry:\n"
    "    pushl %esi\n"
    "    call worker_body\n"
    "    addl $4, %esp\n"
    "    ljmp $0x18, $0\n"            /* back to the main task, which resumes after its own JMP */
    "worker_call_entry:\n"
    "    pushl %esi\n"
    "    call worker_body\n"
    "    addl $4, %esp\n"
    "    iret\n"                      /* NT=1: a task return to the caller */
    "    jmp worker_call_entry\n"     /* a second CALL resumes here */
    /* The #GP handler task: the error code is on its stack; skip the faulting 2-byte instruction, return. */
    "handler_entry:\n"
    "    popl %eax\n"
    "    pushl %eax\n"
    "    call gp_task\n"
    "    addl $4, %esp\n"
    "    iret\n"
    "    jmp handler_entry\n"
    /* The INT 0x40 task: no error code. */
    "int_entry:\n"
    "    call int_task\n"
    "    iret\n"
    "    jmp int_entry\n");
void int_entry(void);
void worker_jmp_entry(void);
void worker_call_entry(void);
void handler_entry(void);

void gp_task(uint32_t error)
{
    kprintf("#gp task: tr=%x nt=%u link=%x error=%x busy main=%u handler=%u, faulting eip+%u\n", task_register(), nested(),
            (unsigned)tss_handler.link, (unsigned)error, busy(TSS_MAIN), busy(TSS_HANDLER),
            (unsigned)(tss_main.eip - (uint32_t)recover_eip));
    tss_main.eip += 2;
}

void int_task(void)
{
    kprintf("int 0x40 task: tr=%x nt=%u link=%x busy main=%u handler=%u\n", task_register(), nested(),
            (unsigned)tss_handler.link, busy(TSS_MAIN), busy(TSS_HANDLER));
}

static void prepare(volatile struct tss32 *tss, void (*entry)(void), uint8_t *stack, uint32_t esi)
{
    uint32_t cr3;
    __asm__ volatile("movl %%cr3, %0" : "=r"(cr3));
    tss->cr3 = cr3;
    tss->eip = (uint32_t)entry;
    tss->eflags = 0x2;
    tss->esp = (uint32_t)stack + 4096;
    tss->esi = esi;
    tss->cs = KCODE;
    tss->es = tss->ss = tss->ds = tss->fs = tss->gs = KDATA;
    tss->iomap = sizeof(struct tss32);
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    outb(0x21, 0xFF); /* no timer tick under QEMU's firmware: the output must not depend on it */
    outb(0xA1, 0xFF);
    gdt[1] = segment(0x9A);
    gdt[2] = segment(0x92);
    gdt[TSS_MAIN >> 3] = tss_descriptor(&tss_main, sizeof tss_main - 1, 0x89);
    gdt[TSS_WORKER >> 3] = tss_descriptor(&tss_worker, sizeof tss_worker - 1, 0x89);
    gdt[TSS_HANDLER >> 3] = tss_descriptor(&tss_handler, sizeof tss_handler - 1, 0x89);
    gdt[GATE_WORKER >> 3] = task_gate(TSS_WORKER, 0);
    gdt[TSS_ABSENT >> 3] = tss_descriptor(&tss_worker, sizeof tss_worker - 1, 0x09);
    gdt[TSS_SHORT >> 3] = tss_descriptor(&tss_worker, 0x50, 0x89);
    gdt[GATE_DPL0 >> 3] = task_gate(TSS_WORKER, 0);
    gdtr.limit = sizeof gdt - 1;
    gdtr.base = (uint32_t)gdt;
    idt[10] = interrupt_gate(fault_stub10);
    idt[11] = interrupt_gate(fault_stub11);
    idt[13] = interrupt_gate(fault_stub13);
    idt[0x40] = task_gate(TSS_HANDLER, 0);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile(
        "lgdt %0\n\tlidt %1\n\tljmp $0x08, $1f\n1:\n\t"
        "movw $0x10, %%ax\n\tmovw %%ax, %%ds\n\tmovw %%ax, %%es\n\tmovw %%ax, %%ss\n\tmovw %%ax, %%fs\n\tmovw %%ax, %%gs\n\t"
        "movw $0x18, %%ax\n\tltr %%ax"
        : : "m"(gdtr), "m"(idtr) : "eax", "memory");
    kprintf("main: tr=%x busy main=%u worker=%u nt=%u\n", task_register(), busy(TSS_MAIN), busy(TSS_WORKER), nested());

    prepare(&tss_worker, worker_jmp_entry, worker_stack, 0x1111);
    uint32_t kept = 0;
    __asm__ volatile("movl $0xCAFE, %%ebx\n\tljmp $0x20, $0\n\tmovl %%ebx, %0" : "=r"(kept) : : "ebx", "esi", "memory");
    kprintf("main after jmp back: tr=%x ebx kept=%x busy main=%u worker=%u nt=%u ts=%u link=%x\n", task_register(),
            (unsigned)kept, busy(TSS_MAIN), busy(TSS_WORKER), nested(), cr0_ts(), (unsigned)tss_main.link);
    __asm__ volatile("clts");

    prepare(&tss_worker, worker_call_entry, worker_stack, 0x2222);
    __asm__ volatile("lcall $0x30, $0" : : : "memory");
    kprintf("main after call and iret: tr=%x busy main=%u worker=%u nt=%u worker eflags.nt=%u ts=%u\n", task_register(),
            busy(TSS_MAIN), busy(TSS_WORKER), nested(), (unsigned)((tss_worker.eflags >> 14) & 1), cr0_ts());
    __asm__ volatile("clts");
    tss_worker.esi = 0x3333;
    __asm__ volatile("lcall $0x20, $0" : : : "memory");
    kprintf("main after a second call: worker resumed, busy worker=%u\n", busy(TSS_WORKER));

    TRY("ljmp $0x18, $0", "r"(0));
    report("jmp to the busy current tss");
    TRY("ljmp $0x38, $0", "r"(0));
    report("jmp to a tss that is not present");
    TRY("ljmp $0x40, $0", "r"(0));
    report("jmp to a tss with limit 0x50");
    TRY("ljmp $0x4B, $0", "r"(0));
    report("jmp through a dpl 0 task gate with rpl 3");

    prepare(&tss_handler, handler_entry, handler_stack, 0);
    idt[13] = task_gate(TSS_HANDLER, 0);
    __asm__ volatile("movl $1f, recover_eip\n1:\n\tmovl %0, %%eax\n\tmovl %%eax, %%es\n\t" : : "r"(0x1234u) : "eax", "memory");
    kprintf("main after #gp through a task gate: tr=%x busy handler=%u es=%x\n", task_register(), busy(TSS_HANDLER),
            (unsigned)({ uint16_t es; __asm__ volatile("mov %%es, %0" : "=r"(es)); es; }));
    __asm__ volatile("clts");
    prepare(&tss_handler, int_entry, handler_stack, 0);
    __asm__ volatile("int $0x40" : : : "memory");
    kprintf("main after int 0x40 through a task gate: tr=%x nt=%u\n", task_register(), nested());
    kprintf("tasks done\n");
    return 0;
}
