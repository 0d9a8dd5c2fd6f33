/* enlblk.c - a guest that keeps data on its synthetic disk across restarts.
 * Sector 0 holds a record: magic, boot count, a message. Each boot reads it,
 * reports what it found, writes the next record plus a pattern in sectors 1-8,
 * flushes (durable on the host before the completion), reads everything back
 * and checks it, then tries one read past the end of the disk. Its report
 * goes to the synthetic console if there is one (a second channel), else COM1. */
#include "guest.h"
#include "hv.h"
#include "vmbus.h"
#include "blk.h"
#include "synthcon.h"

/* Output goes to the synthetic console when the VM has one, else to COM1. */
static int use_con;
#define out(...) (use_con ? synthcon_printf(__VA_ARGS__) : kprintf(__VA_ARGS__))

struct record {
    char magic[8];
    uint32_t boots;
    char message[64];
};

static uint8_t sector[BLK_SECTOR];
static uint8_t pattern[BLK_MAX_SECTORS * BLK_SECTOR];
static uint8_t check[BLK_MAX_SECTORS * BLK_SECTOR];

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    if (vmbus_init() != 0 || blk_init() != BLK_OK) {
        kprintf("enlblk: no synthetic disk\n");
        return 2;
    }
    use_con = synthcon_init() == 0;
    out("enlblk: disk of %u sectors\n", (uint32_t)blk_capacity);

    if (blk_read(0, 1, sector) != BLK_OK)
        return 3;
    struct record *r = (struct record *)sector;
    uint32_t boots = 0;
    if (memcmp(r->magic, "HVMMDISK", 8) == 0) {
        boots = r->boots;
        out("enlblk: found record: boot %u wrote '%s'\n", boots, r->message);
    } else {
        out("enlblk: blank disk\n");
    }

    uint32_t sum = 0;
    if (boots > 0) {
        /* The pattern the previous boot left in sectors 1-8 must still be there. */
        if (blk_read(1, BLK_MAX_SECTORS, check) != BLK_OK)
            return 4;
        for (int i = 0; i < (int)sizeof check; i++)
            if (check[i] != (uint8_t)(i * 7 + boots))
                sum++;
        out("enlblk: previous pattern %s\n", sum == 0 ? "intact" : "CORRUPT");
    }

    boots++;
    memset(sector, 0, sizeof sector);
    memcpy(r->magic, "HVMMDISK", 8);
    r->boots = boots;
    ksnprintf(r->message, sizeof r->message, "hello from boot %u", boots);
    for (int i = 0; i < (int)sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 7 + boots);
    int s1 = blk_write(0, 1, sector);
    int s2 = blk_write(1, BLK_MAX_SECTORS, pattern);
    int s3 = blk_flush();
    out("enlblk: wrote boot %u record and pattern: %d %d, flush %d\n", boots, s1, s2, s3);

    memset(check, 0, sizeof check);
    int s4 = blk_read(1, BLK_MAX_SECTORS, check);
    out("enlblk: read back %s\n", s4 == BLK_OK && memcmp(check, pattern, sizeof pattern) == 0 ? "matches" : "DIFFERS");

    int s5 = blk_read(blk_capacity, 1, check);
    int s6 = blk_write(blk_capacity - 1, 2, pattern);
    out("enlblk: read past the end -> status %d, write across the end -> status %d\n", s5, s6);
    if (use_con)
        synthcon_flush();
    return sum == 0 && s1 == 0 && s2 == 0 && s3 == 0 && s4 == 0 && s5 == BLK_OUT_OF_RANGE && s6 == BLK_OUT_OF_RANGE ? 0 : 1;
}
