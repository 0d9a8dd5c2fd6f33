/* provision.c - a template for rapid provisioning.
 * It builds 256 KiB of "warm state" (the expensive part of booting), then asks the host to freeze it as a
 * template by writing to the provisioning port. Each clone resumes right after that write, reads its own
 * identity from the same port, touches a few pages of its own and prints a per-clone checksum.
 * Under QEMU the port is unclaimed (reads return all ones), so this guest is not compared with QEMU. */
#include "guest.h"

#define PROVISION_PORT 0x5F0
#define ENTRIES 65536

static uint32_t table[ENTRIES];

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    serial_init();
    uint32_t x = 2463534242u;
    for (uint32_t i = 0; i < ENTRIES; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        table[i] = x;
    }
    kprintf("template: warm state ready (%u entries)\n", (unsigned)ENTRIES);

    outl(PROVISION_PORT, 1);            /* freeze me here as a template */
    uint32_t id = inl(PROVISION_PORT);  /* each clone sees its own identity */

    uint32_t sum = 0;
    for (uint32_t i = 0; i < 1024; i++) {
        table[(id * 1024 + i) % ENTRIES] ^= id;
        sum = (sum << 1 | sum >> 31) ^ table[(id * 7919 + i * 13) % ENTRIES];
    }
    kprintf("clone %u: checksum %08x\n", (unsigned)id, (unsigned)sum);
    return 0;
}
