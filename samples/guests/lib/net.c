/* net.c - the guest side of the synthetic NIC (docs/enlightened-io.md). */
#include "guest.h"
#include "vmbus.h"
#include "net.h"

#define OP_SEND 1
#define OP_RECEIVE 2
#define OP_GET_MAC 3

static const uint8_t nic_guid[16] = {       /* f8615163-df3e-46c5-913f-f2d2f965ed0e */
    0x63, 0x51, 0x61, 0xf8, 0x3e, 0xdf, 0xc5, 0x46, 0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e };

static uint8_t ring[16 * 4096] __attribute__((aligned(4096)));
static struct vmbus_channel *chan;
static struct { uint32_t op, length; uint8_t frame[NET_MAX_FRAME]; } packet;
uint8_t net_mac[6];

int net_init(void)
{
    chan = vmbus_find(nic_guid);
    if (!chan || vmbus_open(chan, ring, 16, 8) != 0)
        return -1;
    packet.op = OP_GET_MAC;
    if (vmbus_send(chan, VM_PKT_DATA_INBAND, VMBUS_COMPLETION_REQUESTED, 1, &packet, 4) != 0)
        return -2;
    struct vmbus_packet d;
    for (;;) {
        int n = vmbus_recv_wait(chan, &d, &packet, sizeof packet);
        if (n >= 12 && d.type == VM_PKT_COMP && d.transaction_id == 1) {
            memcpy(net_mac, (uint8_t *)&packet + 4, 6);
            return packet.op;                   /* the completion's status */
        }
    }
}

int net_send(const void *frame, uint32_t length)
{
    if (length < 14 || length > NET_MAX_FRAME)
        return -1;
    packet.op = OP_SEND;
    packet.length = length;
    memcpy(packet.frame, frame, length);
    return vmbus_send(chan, VM_PKT_DATA_INBAND, 0, 0, &packet, 8 + length);
}

static int take(int n, void *frame, uint32_t cap)
{
    if (n < 8 || packet.op != OP_RECEIVE)
        return -2;
    uint32_t len = packet.length < cap ? packet.length : cap;
    memcpy(frame, packet.frame, len);
    return (int)len;
}

int net_recv(void *frame, uint32_t cap)
{
    struct vmbus_packet d;
    for (;;) {
        int n = vmbus_recv(chan, &d, &packet, sizeof packet);
        if (n < 0)
            return -1;
        int len = take(n, frame, cap);
        if (len >= 0)
            return len;
    }
}

int net_recv_wait(void *frame, uint32_t cap)
{
    struct vmbus_packet d;
    for (;;) {
        int n = vmbus_recv_wait(chan, &d, &packet, sizeof packet);
        int len = take(n, frame, cap);
        if (len >= 0)
            return len;
    }
}
