/* synthcon.c - the guest side of the synthetic console (docs/enlightened-io.md). */
#include <stdarg.h>
#include "guest.h"
#include "vmbus.h"
#include "synthcon.h"

#define OP_WRITE 1
#define OP_INPUT 2

static const uint8_t console_guid[16] = {   /* 9d5a6c2e-0b1f-4c3e-8a77-636f6e736f6c, as .NET lays it out */
    0x2e, 0x6c, 0x5a, 0x9d, 0x1f, 0x0b, 0x3e, 0x4c, 0x8a, 0x77, 0x63, 0x6f, 0x6e, 0x73, 0x6f, 0x6c };

static uint8_t ring[8 * 4096] __attribute__((aligned(4096)));
static struct vmbus_channel *chan;
static struct { uint32_t op, length; char bytes[SYNTHCON_BATCH]; } batch;
static uint8_t packet[4096 + 8];
uint32_t synthcon_batches;

int synthcon_init(void)
{
    chan = vmbus_find(console_guid);
    if (!chan)
        return -1;
    return vmbus_open(chan, ring, 8, 4);       /* 4 pages each way: 12 KiB of data per ring */
}

void synthcon_flush(void)
{
    if (!chan || batch.length == 0)
        return;
    batch.op = OP_WRITE;
    vmbus_send(chan, VM_PKT_DATA_INBAND, 0, 0, &batch, 8 + batch.length);
    synthcon_batches++;
    batch.length = 0;
}

void synthcon_write(const char *s, size_t n)
{
    while (n > 0) {
        size_t room = SYNTHCON_BATCH - batch.length;
        size_t take = n < room ? n : room;
        memcpy(batch.bytes + batch.length, s, take);
        batch.length += take;
        s += take;
        n -= take;
        if (batch.length == SYNTHCON_BATCH)
            synthcon_flush();
    }
}

size_t synthcon_read(char *buf, size_t cap)
{
    size_t got = 0;
    struct vmbus_packet d;
    while (chan && got < cap) {
        int n = vmbus_recv(chan, &d, packet, sizeof packet);
        if (n < 0)
            break;
        uint32_t *w = (uint32_t *)packet;
        if (d.type == VM_PKT_DATA_INBAND && n >= 8 && w[0] == OP_INPUT) {
            uint32_t len = w[1] < cap - got ? w[1] : (uint32_t)(cap - got);
            memcpy(buf + got, packet + 8, len);
            got += len;
        }
    }
    return got;
}

int synthcon_printf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    synthcon_write(buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
    return n;
}
