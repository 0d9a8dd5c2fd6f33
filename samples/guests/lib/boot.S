/* boot.S - Multiboot v1 header and entry stub shared by the C sample guests.
 *
 * The loader (QEMU -kernel, or HybridVmm) enters _start in 32-bit protected
 * mode with flat segments, paging off, IF=0, EAX=0x2BADB002, EBX=&multiboot_info.
 * We clear EFLAGS (DF=0 as the C ABI requires), zero .bss (the loader should
 * already have done it; doing it again is cheap and makes us independent of
 * that), switch to our own stack and call kmain(magic, mbi). If kmain returns,
 * its return value becomes the exit code.
 */
#include "multiboot.h"

#define MB_FLAGS (MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO)

    .section .multiboot, "a"
    .balign 4
    .long MULTIBOOT_HEADER_MAGIC
    .long MB_FLAGS
    .long -(MULTIBOOT_HEADER_MAGIC + MB_FLAGS)

    .section .bss
    .balign 16
stack_bottom:
    .skip 65536
stack_top:

    .text
    .globl _start
    .type _start, @function
_start:
    movl $stack_top, %esp
    movl %eax, %ebp             /* keep magic; EBX (mbi) survives rep stosb */
    pushl $0
    popfl                       /* EFLAGS = 0x2: DF=0, IF=0, no stale flags */
    movl $__bss_start, %edi     /* zero .bss (includes the stack we're on,  */
    movl $__bss_end, %ecx       /* but nothing has been pushed yet)         */
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    pushl %ebx                  /* struct multiboot_info *mbi */
    pushl %ebp                  /* uint32_t magic */
    xorl %ebp, %ebp             /* terminate frame-pointer chains */
    call kmain
    pushl %eax
    call guest_exit             /* does not return */
1:  cli
    hlt
    jmp 1b
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
