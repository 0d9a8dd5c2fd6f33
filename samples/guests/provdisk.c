/* provdisk.c - a template for rapid provisioning with a disk.
 * The template freezes itself at the provisioning port before it touches VMBus, so every clone brings up
 * its own channels. Each clone reads its identity, reads sector 0 of the shared base image, writes its own
 * record to sector 1 and flushes, then reads sector 1 back. With copy-on-write overlays each clone sees
 * only its own write, and the base image never changes. */
#include "guest.h"
#include "hv.h"
#include "vmbus.h"
#include "blk.h"

#define PROVISION_PORT 0x5F0

static char sector[BLK_SECTOR];

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    kprintf("provdisk: template ready\n");
    outl(PROVISION_PORT, 1);                 /* freeze me here as a template */
    uint32_t id = inl(PROVISION_PORT);

    if (vmbus_init() != 0 || blk_init() != BLK_OK) {
        kprintf("clone %u: no synthetic disk\n", (unsigned)id);
        return 2;
    }
    if (blk_read(0, 1, sector) != BLK_OK)
        return 3;
    sector[63] = 0;
    kprintf("clone %u: base says '%s'\n", (unsigned)id, sector);

    memset(sector, 0, sizeof sector);
    ksnprintf(sector, 64, "written by clone %u", (unsigned)id);
    int w = blk_write(1, 1, sector);
    int f = blk_flush();
    memset(sector, 0, sizeof sector);
    int r = blk_read(1, 1, sector);
    kprintf("clone %u: write %d flush %d read %d: sector 1 says '%s'\n", (unsigned)id, w, f, r, sector);
    return 0;
}
