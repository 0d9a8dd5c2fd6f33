/* realmode.c - real-address mode as a kernel's trampoline uses it (SDM Vol. 3A, 10.9.2): from 32-bit protected mode
 * through a 16-bit code segment into real mode, real-mode code that works there, and back. The real-mode code prints
 * a line through COM1, takes INT 0x40 and a divide error through its own vector table (IVT), far-calls itself under
 * another CS, runs string instructions on SI/DI/CX, LOOP and JCXZ, PUSHA/POPA on a 16-bit stack, 32-bit operands and
 * addresses through the 0x66/0x67 prefixes, INS and OUTS on DI/SI/CX, ENTER and LEAVE on BP/SP, and waits with HLT for the PIT's IRQ 0 through the 8259's vector 8. It
 * writes what it saw to a results area that the protected-mode side prints. Nothing printed depends on time.
 */
#include "guest.h"

#define BLOB 0x2000     /* where the trampoline runs: linear 0x2000, real-mode CS 0x0200 */
#define RESULTS 0x1000  /* the results area: real-mode ES 0x0100 */

__asm__(
    ".section .text\n"
    ".set BLOB, 0x2000\n"
    ".set RMSEG, 0x0200\n"
    ".globl rm_start, rm_end\n"
    ".code32\n"
    "rm_start:\n"
    "    pushal\n"
    "    movl %esp, saved_esp - rm_start + BLOB\n"
    "    lidt rm_idtr - rm_start + BLOB\n"
    "    ljmp $0x18, $(pm16 - rm_start + BLOB)\n"
    ".code16\n"
    "pm16:\n"                                  /* 16-bit protected mode: a 16-bit stack, then PE off */
    "    movw $0x20, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %ss\n"
    "    movw $0x1F00, %sp\n"
    "    movl %cr0, %eax\n"
    "    andl $0xFFFFFFFE, %eax\n"
    "    movl %eax, %cr0\n"
    "    ljmp $RMSEG, $(real - rm_start)\n"
    "real:\n"
    "    movw %cs, %ax\n"
    "    movw %ax, %ds\n"
    "    xorw %ax, %ax\n"
    "    movw %ax, %ss\n"
    "    movw %ax, %fs\n"                       /* FS:0 is the vector table */
    "    movw $0x1F00, %sp\n"
    "    movw $0x0100, %ax\n"
    "    movw %ax, %es\n"                       /* ES:0 is the results area */
    "    movw $(greeting - rm_start), %si\n"
    "    movw $0x3F8, %dx\n"
    "1:  lodsb\n"
    "    testb %al, %al\n"
    "    jz 2f\n"
    "    outb %al, %dx\n"
    "    jmp 1b\n"
    "2:\n"
    /* INT 0x40 through the IVT */
    "    movw $(h40 - rm_start), %fs:0x100\n"
    "    movw $RMSEG, %fs:0x102\n"
    "    movw $0x0100, %ax\n"
    "    cmpw %ax, %ax\n"
    "    int $0x40\n"
    "    movw %ax, %es:0\n"
    /* a divide error through vector 0: the pushed IP is the DIV's */
    "    movw $(hde - rm_start), %fs:0\n"
    "    movw $RMSEG, %fs:2\n"
    "    movw $7, %ax\n"
    "    xorb %cl, %cl\n"
    "de_at:\n"
    "    divb %cl\n"
    "    movw %ax, %es:12\n"
    /* a far call to the same code under CS 0x0100 */
    "    lcall $0x0100, $(far_target - rm_start + 0x1000)\n"
    "    movw %ax, %es:14\n"
    "    movw %bx, %es:16\n"
    /* string instructions on SI, DI and CX */
    "    cld\n"
    "    movw $(src_words - rm_start), %si\n"
    "    movw $0x40, %di\n"
    "    movw $8, %cx\n"
    "    rep movsw\n"
    "    movw %si, %es:18\n"
    "    movw %di, %es:20\n"
    "    movw %cx, %es:22\n"
    "    movb $0x5A, %al\n"
    "    movw $0x60, %di\n"
    "    movw $5, %cx\n"
    "    rep stosb\n"
    "    pushw %es\n"
    "    pushw %ds\n"
    "    popw %es\n"
    "    movw $(str_a - rm_start), %si\n"
    "    movw $(str_b - rm_start), %di\n"
    "    movw $10, %cx\n"
    "    repe cmpsb\n"
    "    pushfw\n"
    "    popw %bx\n"
    "    popw %es\n"
    "    movw %cx, %es:24\n"
    "    subw $(str_a - rm_start), %si\n"
    "    movw %si, %es:26\n"
    "    movw %bx, %es:28\n"
    /* INS and OUTS walk SI/DI and count with CX too: the registers' high halves stay as they were */
    "    movl $0x12340000, %esi\n"
    "    movw $(outs_text - rm_start), %si\n"
    "    movl $0x56780000, %ecx\n"
    "    movw $(outs_end - outs_text), %cx\n"
    "    movw $0x3F8, %dx\n"
    "    rep outsb\n"
    "    movl %ecx, %es:0x70\n"
    "    subl $(outs_text - rm_start), %esi\n"
    "    movl %esi, %es:0x74\n"
    "    movl $0x9ABC0000, %edi\n"
    "    movw $0x80, %di\n"
    "    movl $0xDEF00000, %ecx\n"
    "    movw $3, %cx\n"
    "    movw $0x3FB, %dx\n"                   /* COM1's line control register reads back 0x03 */
    "    rep insb\n"
    "    movl %ecx, %es:0x78\n"
    "    movl %edi, %es:0x7C\n"
    /* ENTER and LEAVE on the 16-bit stack: only BP and SP move, the high halves stay */
    "    movl %esp, %es:0x90\n"
    "    movl $0x55550000, %ebp\n"
    "    movw $0x1234, %bp\n"
    "    enterw $6, $1\n"
    "    movl %ebp, %es:0x94\n"
    "    movl %esp, %es:0x98\n"
    "    movw (%bp), %ax\n"
    "    movw %ax, %es:0x9C\n"
    "    movw -2(%bp), %ax\n"
    "    movw %ax, %es:0x9E\n"
    "    leavew\n"
    "    movl %ebp, %es:0xA0\n"
    "    movl %esp, %es:0xA4\n"
    /* LOOP and JCXZ on CX */
    "    movw $5, %cx\n"
    "    xorw %dx, %dx\n"
    "3:  addw $3, %dx\n"
    "    loop 3b\n"
    "    movw %dx, %es:30\n"
    "    jcxz 4f\n"
    "    movw $0x0BAD, %es:32\n"
    "    jmp 5f\n"
    "4:  movw $0x600D, %es:32\n"
    "5:\n"
    /* PUSHA/POPA on the 16-bit stack */
    "    movw $0x1111, %ax\n"
    "    movw $0x2222, %cx\n"
    "    pushaw\n"
    "    movw %sp, %es:34\n"
    "    movw %sp, %bp\n"
    "    movw 6(%bp), %bx\n"
    "    movw %bx, %es:36\n"
    "    xorw %ax, %ax\n"
    "    xorw %cx, %cx\n"
    "    popaw\n"
    "    movw %ax, %es:38\n"
    "    movw %cx, %es:40\n"
    "    movw %sp, %es:42\n"
    /* 32-bit operands and a 32-bit address */
    "    movl $0x12345678, %eax\n"
    "    addl $0x11111111, %eax\n"
    "    movl %eax, %es:44\n"
    "    movl $(dword_val - rm_start), %esi\n"
    "    movl (%esi), %ebx\n"
    "    movl %ebx, %es:48\n"
    /* the PIT's IRQ 0 through the 8259 (vector 8) while halted */
    "    movw $(hirq0 - rm_start), %fs:0x20\n"
    "    movw $RMSEG, %fs:0x22\n"
    "    movw $0, %es:52\n"
    "    movb $0xFE, %al\n"
    "    outb %al, $0x21\n"
    "    movb $0x34, %al\n"
    "    outb %al, $0x43\n"
    "    movb $0xA9, %al\n"
    "    outb %al, $0x40\n"
    "    movb $0x04, %al\n"
    "    outb %al, $0x40\n"
    "    sti\n"
    "6:  hlt\n"
    "    cmpw $0, %es:52\n"
    "    je 6b\n"
    "    cli\n"
    "    movb $0xFF, %al\n"
    "    outb %al, $0x21\n"
    "    movl %cr0, %eax\n"
    "    movw %ax, %es:56\n"
    "    movw %sp, %es:58\n"
    /* back to protected mode */
    "    movl %cr0, %eax\n"
    "    orl $1, %eax\n"
    "    movl %eax, %cr0\n"
    "    ljmpl $0x08, $(back32 - rm_start + BLOB)\n"
    "h40:\n"
    "    addw $0x1111, %ax\n"
    "    movw %sp, %bp\n"
    "    movw (%bp), %bx\n"
    "    movw %bx, %es:2\n"
    "    movw 2(%bp), %bx\n"
    "    movw %bx, %es:4\n"
    "    movw 4(%bp), %bx\n"
    "    movw %bx, %es:6\n"
    "    pushfw\n"
    "    popw %bx\n"
    "    movw %bx, %es:8\n"
    "    iret\n"
    "hde:\n"
    "    movw %sp, %bp\n"
    "    movw (%bp), %bx\n"
    "    movw %bx, %es:10\n"
    "    addw $2, (%bp)\n"
    "    movw $0xBEEF, %ax\n"
    "    iret\n"
    "far_target:\n"
    "    movw %cs, %ax\n"
    "    movw %sp, %bp\n"
    "    movw 2(%bp), %bx\n"                    /* the pushed CS */
    "    lret\n"
    "hirq0:\n"
    "    pushw %ax\n"
    "    pushw %bp\n"
    "    movw %sp, %bp\n"
    "    movw 6(%bp), %ax\n"
    "    movw %ax, %es:54\n"
    "    incw %es:52\n"
    "    movb $0x20, %al\n"
    "    outb %al, $0x20\n"
    "    popw %bp\n"
    "    popw %ax\n"
    "    iret\n"
    ".code32\n"
    "back32:\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %fs\n"
    "    movw %ax, %gs\n"
    "    movw %ax, %ss\n"
    "    movl saved_esp - rm_start + BLOB, %esp\n"
    "    popal\n"
    "    ret\n"
    "    .balign 4\n"
    "saved_esp: .long 0\n"
    "rm_idtr: .word 0x3FF\n"
    "    .long 0\n"
    "dword_val: .long 0xCAFEF00D\n"
    "src_words: .word 1, 2, 3, 5, 8, 13, 21, 34\n"
    "str_a: .ascii \"realmodeXY\"\n"
    "str_b: .ascii \"realmoDeXY\"\n"
    "greeting: .asciz \"real mode: hello from CS 0x0200\\n\"\n"
    "outs_text: .ascii \"real mode: rep outsb on SI\\n\"\n"
    "outs_end:\n"
    "rm_end:\n");
extern char rm_start[], rm_end[];

static uint64_t gdt[5] __attribute__((aligned(8))) = {
    0,
    0x00CF9A000000FFFFull, /* 0x08: 32-bit code, flat */
    0x00CF92000000FFFFull, /* 0x10: 32-bit data, flat */
    0x00009A000000FFFFull, /* 0x18: 16-bit code, base 0, limit 64 KiB */
    0x000092000000FFFFull, /* 0x20: 16-bit data, base 0, limit 64 KiB */
};
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } gdtr, idtr_saved;

static uint16_t result(unsigned offset) { return *(volatile uint16_t *)(uintptr_t)(RESULTS + offset); }
static uint32_t result32(unsigned offset) { return *(volatile uint32_t *)(uintptr_t)(RESULTS + offset); }

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    gdtr.limit = sizeof gdt - 1;
    gdtr.base = (uint32_t)gdt;
    __asm__ volatile("lgdt %0\n"
                     "ljmp $0x08, $1f\n"
                     "1: movw $0x10, %%ax\n"
                     "movw %%ax, %%ds\n movw %%ax, %%es\n movw %%ax, %%fs\n movw %%ax, %%gs\n movw %%ax, %%ss\n"
                     : : "m"(gdtr) : "eax", "memory");
    __asm__ volatile("sidt %0" : "=m"(idtr_saved));
    volatile uint8_t *results = (volatile uint8_t *)(uintptr_t)RESULTS;
    for (int i = 0; i < 0x100; i++) results[i] = 0;
    volatile uint8_t *blob = (volatile uint8_t *)(uintptr_t)BLOB;
    for (int i = 0; i < rm_end - rm_start; i++) blob[i] = (uint8_t)rm_start[i];
    kprintf("protected mode: entering real mode through a 16-bit code segment\n");
    ((void (*)(void))(uintptr_t)BLOB)();
    __asm__ volatile("lidt %0" : : "m"(idtr_saved));
    kprintf("protected mode: back\n");
    kprintf("int 0x40: ax %04x, pushed ip %04x cs %04x flags %04x, flags in handler %04x\n",
            result(0), result(2), result(4), result(6), result(8));
    kprintf("divide error: pushed ip %04x (the div), ax after %04x\n", result(10), result(12));
    kprintf("far call: cs in callee %04x, pushed cs %04x\n", result(14), result(16));
    kprintf("rep movsw: si %04x di %04x cx %04x; copied", result(18), result(20), result(22));
    for (unsigned i = 0; i < 8; i++) kprintf(" %u", result(0x40 + 2 * i));
    kprintf("\nrep stosb: %02x %02x %02x %02x %02x %02x\n", results[0x60], results[0x61], results[0x62], results[0x63],
            results[0x64], results[0x65]);
    kprintf("repe cmpsb: cx %04x, stopped after %u bytes, flags %04x\n", result(24), result(26), result(28) & 0x8D5);
    kprintf("rep outsb: ecx %08x esi %08x; rep insb: ecx %08x edi %08x, read %02x %02x %02x\n", result32(0x70), result32(0x74),
            result32(0x78), result32(0x7C), results[0x80], results[0x81], results[0x82]);
    kprintf("enter on a 16-bit stack: esp %08x before, ebp %08x esp %08x after, [bp] %04x [bp-2] %04x; leave: ebp %08x esp %08x\n",
            result32(0x90), result32(0x94), result32(0x98), result(0x9C), result(0x9E), result32(0xA0), result32(0xA4));
    kprintf("loop: dx %04x, jcxz %04x\n", result(30), result(32));
    kprintf("pusha: sp %04x, stored sp %04x; popa: ax %04x cx %04x sp %04x\n", result(34), result(36), result(38), result(40),
            result(42));
    kprintf("32-bit operands: eax %08x, [esi] %08x\n", result32(44), result32(48));
    kprintf("irq 0 while halted: taken %s, pushed cs %04x\n", result(52) ? "yes" : "no", result(54));
    kprintf("cr0.pe in real mode %u, sp at the end %04x\n", result(56) & 1, result(58));
    return 0;
}
