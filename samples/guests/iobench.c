/* iobench.c - an I/O-bound guest: prints 64 lines of 64 bytes (4 KiB) through the emulated COM1 UART,
 * polling LSR before every byte, then exits 0. Each byte costs two port intercepts, so it measures how
 * expensive an exit is under each hypervisor design (hybridvmm compare-types). */
#include "guest.h"

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    for (int line = 0; line < 64; line++) {
        char text[65];
        for (int i = 0; i < 63; i++)
            text[i] = (char)('!' + (line * 7 + i) % 94);
        text[63] = '\n';
        text[64] = 0;
        serial_write(text, 64);
    }
    return 0;
}
