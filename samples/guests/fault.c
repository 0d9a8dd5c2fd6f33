/* fault.c - prints a line, then raises a divide error (#DE, vector 0) on purpose.
 *
 * There is no IDT, so the exception cannot be handled: HybridVmm reports the
 * fault and stops the guest; QEMU (whose IDTR still holds the BIOS real-mode
 * IVT) ends in a triple fault, which with -no-reboot shuts the VM down. The
 * "not reached" line must never appear.
 */
#include "guest.h"

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    kprintf("fault: about to divide by zero\n");
    uint32_t eax = 1234, edx = 0, zero = 0;
    /* An asm div with a zero register operand: the compiler can neither
     * fold nor drop it. */
    __asm__ volatile("divl %2" : "+a"(eax), "+d"(edx) : "r"(zero) : "cc");
    kprintf("fault: not reached (quotient %u)\n", eax);
    return 1;
}
