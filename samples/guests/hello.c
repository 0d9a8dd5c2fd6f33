/* hello.c - the smallest C guest: greets and exits 0.
 * It prints nothing that differs between machines (the command line, for one, carries the kernel's path
 * under QEMU and GRUB), so its output must match QEMU's byte for byte. bootinfo.c prints the boot data. */
#include "guest.h"

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    kprintf("Hello from a HybridVmm guest!\n");
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        kprintf("bad multiboot magic %08x\n", magic);
        return 1;
    }
    (void)mbi;
    kprintf("bye\n");
    return 0;
}
