/* wild.c - a misbehaving guest for the isolation demo: after a greeting it
 * writes to guest-physical 0xF0000000, far above any RAM HybridVmm gives it.
 *
 * HybridVmm's second-level page table has no mapping there, so the write is
 * refused and the guest is stopped; other guests and the host are unaffected.
 * QEMU ignores the write (unassigned memory), so under QEMU the guest goes on,
 * prints "wild: write was not stopped" and exits with code 3. Not compared
 * with QEMU.
 */
#include "guest.h"

#define WILD_ADDRESS 0xF0000000u

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    kprintf("wild: writing to guest-physical %08x\n", WILD_ADDRESS);
    volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)WILD_ADDRESS;
    *p = 0xDEADBEEFu;
    kprintf("wild: write was not stopped (read back %08x)\n", *p);
    return 3;
}
