/* exits.c - an exit-bound guest: 100,000 reads of COM1's line status register and 100,000 writes to the POST
 * port 0x80, each one a port intercept, then one line of output. It times the round trip of an intercept
 * (guest -> kernel -> root worker -> reply -> resume): `hybridvmm bench --guest exits` reports its median and
 * 99th percentile, and bench/compare-qemu.sh runs it beside QEMU. */
#include "guest.h"

#define ROUNDS 100000

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    uint32_t ready = 0;
    for (uint32_t i = 0; i < ROUNDS; i++) {
        ready += (inb(0x3FD) >> 5) & 1; /* LSR.THRE: the transmitter is always ready */
        outb(0x80, (uint8_t)i);
    }
    kprintf("exits: %u reads of COM1's LSR (THRE set in %u), %u writes to port 0x80\n", ROUNDS, ready, ROUNDS);
    return 0;
}
