/* vmbus.h - a small VMBus client for HybridVmm guests: channel offers, GPADLs,
 * opening channels, ring-buffer packets and signalling. See docs/enlightened-io.md. */
#ifndef VMBUS_H
#define VMBUS_H

#include <stdint.h>
#include <stddef.h>

#define VMBUS_SINT        2
#define VMBUS_VECTOR      0x40
#define VMBUS_MAX_CHANNELS 8

#define VM_PKT_DATA_INBAND 6
#define VM_PKT_COMP        11
#define VMBUS_COMPLETION_REQUESTED 1

/* The control page at the start of each ring (one direction of a channel). */
struct vmbus_ring_control {
    volatile uint32_t write_index;      /* byte offset in the data area, written by the producer */
    volatile uint32_t read_index;       /* byte offset in the data area, written by the consumer */
    volatile uint32_t interrupt_mask;   /* consumer polls: producer need not signal */
    volatile uint32_t pending_send_sz;  /* producer waits for this much room: consumer signals when it frees it */
    uint32_t reserved[1020];
};

struct vmbus_packet {                   /* the 16-byte packet descriptor */
    uint16_t type;
    uint16_t offset8;                   /* 2: the payload follows the descriptor */
    uint16_t len8;                      /* whole packet, padded, in 8-byte units */
    uint16_t flags;
    uint64_t transaction_id;
};

struct vmbus_ring {
    struct vmbus_ring_control *control;
    uint8_t *data;
    uint32_t size;                      /* bytes in the data area */
};

struct vmbus_channel {
    uint8_t interface_id[16];
    uint8_t instance_id[16];
    uint32_t relid;
    uint32_t connection_id;
    volatile int open_status;           /* -1 while the open is in flight */
    struct vmbus_ring out;              /* guest -> host */
    struct vmbus_ring in;               /* host -> guest */
    volatile int signalled;             /* set by the ISR when the host signalled */
    uint32_t signals_sent;
};

/* Enables the SynIC, asks for the offers and waits for all of them. 0 on success. */
int vmbus_init(void);
/* The offered channel with this interface GUID (in the byte order the offer carries), or NULL. */
struct vmbus_channel *vmbus_find(const uint8_t interface_id[16]);
/* Grants 'pages' pages at 'ring' (page aligned) and opens the channel: the first
 * 'out_pages' pages form the guest-to-host ring, the rest the host-to-guest one. */
int vmbus_open(struct vmbus_channel *c, void *ring, uint32_t pages, uint32_t out_pages);
/* Appends a packet and signals the host. Waits while the ring is full. 0 on success. */
int vmbus_send(struct vmbus_channel *c, uint16_t type, uint16_t flags, uint64_t txid, const void *data, uint32_t len);
/* Takes the next host-to-guest packet without waiting: its length, or -1 if none. */
int vmbus_recv(struct vmbus_channel *c, struct vmbus_packet *desc, void *buf, uint32_t cap);
/* Like vmbus_recv, but halts (interrupts on) until a packet arrives. */
int vmbus_recv_wait(struct vmbus_channel *c, struct vmbus_packet *desc, void *buf, uint32_t cap);

/* Statistics for the demo output. */
extern uint32_t vmbus_interrupts, vmbus_messages;

#endif
