/* blk.c - the guest side of the synthetic block device (docs/enlightened-io.md). */
#include "guest.h"
#include "vmbus.h"
#include "blk.h"

#define OP_READ 1
#define OP_WRITE 2
#define OP_FLUSH 3
#define OP_GET_INFO 4

static const uint8_t disk_guid[16] = {      /* ba6163d9-04a1-4d29-b605-72e2ffb1dc7f */
    0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f };

static uint8_t ring[16 * 4096] __attribute__((aligned(4096)));
static struct vmbus_channel *chan;
static struct { uint32_t op, count; uint64_t sector; uint8_t data[BLK_MAX_SECTORS * BLK_SECTOR]; } request;
static struct { uint32_t status, count; uint64_t value; uint8_t data[BLK_MAX_SECTORS * BLK_SECTOR]; } response;
static uint64_t next_tag = 1;
uint64_t blk_capacity;

/* Sends one request and waits for the completion with the same transaction ID. */
static int transact(uint32_t op, uint64_t sector, uint32_t count, uint32_t data_bytes)
{
    uint64_t tag = next_tag++;
    request.op = op;
    request.count = count;
    request.sector = sector;
    if (vmbus_send(chan, VM_PKT_DATA_INBAND, VMBUS_COMPLETION_REQUESTED, tag, &request, 16 + data_bytes) != 0)
        return -1;
    struct vmbus_packet d;
    for (;;) {
        int n = vmbus_recv_wait(chan, &d, &response, sizeof response);
        if (n >= 16 && d.type == VM_PKT_COMP && d.transaction_id == tag)
            return (int)response.status;
    }
}

int blk_init(void)
{
    chan = vmbus_find(disk_guid);
    if (!chan || vmbus_open(chan, ring, 16, 8) != 0)
        return -1;
    int status = transact(OP_GET_INFO, 0, 0, 0);
    blk_capacity = response.value;
    return status;
}

int blk_read(uint64_t sector, uint32_t count, void *buf)
{
    if (count > BLK_MAX_SECTORS)
        return BLK_BAD_REQUEST;
    int status = transact(OP_READ, sector, count, 0);
    if (status == BLK_OK)
        memcpy(buf, response.data, count * BLK_SECTOR);
    return status;
}

int blk_write(uint64_t sector, uint32_t count, const void *buf)
{
    if (count > BLK_MAX_SECTORS)
        return BLK_BAD_REQUEST;
    memcpy(request.data, buf, count * BLK_SECTOR);
    return transact(OP_WRITE, sector, count, count * BLK_SECTOR);
}

int blk_flush(void)
{
    return transact(OP_FLUSH, 0, 0, 0);
}
