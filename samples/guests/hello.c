/* hello.c - the smallest C guest: greets, echoes its Multiboot command line, exits 0. */
#include "guest.h"

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    kprintf("Hello from a HybridVmm guest!\n");
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        kprintf("bad multiboot magic %08x\n", magic);
        return 1;
    }
    const char *cmdline = "";
    if ((mbi->flags & MULTIBOOT_INFO_CMDLINE) && mbi->cmdline)
        cmdline = (const char *)(uintptr_t)mbi->cmdline;
    kprintf("cmdline: [%s]\n", cmdline);
    kprintf("bye\n");
    return 0;
}
