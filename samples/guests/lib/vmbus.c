/* vmbus.c - the guest side of the HybridVmm VMBus (docs/enlightened-io.md). */
#include "guest.h"
#include "hv.h"
#include "vmbus.h"

#define MSG_OFFER_CHANNEL        1
#define MSG_REQUEST_OFFERS       3
#define MSG_ALL_OFFERS_DELIVERED 4
#define MSG_OPEN_CHANNEL         5
#define MSG_OPEN_RESULT          6
#define VMBUS_MESSAGE_CONNECTION 1
#define VMBUS_MESSAGE_TYPE       1
#define MSG_QUEUE                16

static struct hv_message message_page[16] __attribute__((aligned(4096)));
static volatile uint32_t event_page[1024] __attribute__((aligned(4096)));
static struct vmbus_channel channels[VMBUS_MAX_CHANNELS];
static uint32_t channel_count;
static volatile int offers_done;

/* Messages copied out of the SynIC slot by the ISR, handled in vmbus_poll(). */
static uint8_t queue[MSG_QUEUE][240];
static volatile uint32_t queue_head, queue_tail;

uint32_t vmbus_interrupts, vmbus_messages;

extern void vmbus_isr_stub(void);

/* Called from isr.S with interrupts off. */
void vmbus_isr(void);
void vmbus_isr(void)
{
    vmbus_interrupts++;
    struct hv_message *m = &message_page[VMBUS_SINT];
    while (m->type != 0) {
        if (queue_tail - queue_head < MSG_QUEUE) {
            memcpy(queue[queue_tail % MSG_QUEUE], m->payload, sizeof m->payload);
            queue_tail++;
        }
        uint8_t pending = m->flags & 1;
        m->type = 0;                            /* free the slot first ... */
        if (pending)
            wrmsr(HV_MSR_EOM, 0);               /* ... then ask for the next message */
        else
            break;
    }
    /* Event flags of the VMBus SINT: bit n = channel with relid n signalled. */
    volatile uint32_t *flags = &event_page[VMBUS_SINT * 64];
    for (int w = 0; w < 64; w++) {
        if (!flags[w])
            continue;
        uint32_t bits;
        __asm__ volatile("xchgl %0, %1" : "=r"(bits), "+m"(flags[w]) : "0"(0u) : "memory");
        for (uint32_t i = 0; i < channel_count; i++) {
            uint32_t relid = channels[i].relid;
            if (relid / 32 == (uint32_t)w && (bits & (1u << (relid % 32))))
                channels[i].signalled = 1;
        }
    }
}

static void handle(const uint8_t *msg)
{
    const uint32_t *w = (const uint32_t *)msg;
    vmbus_messages++;
    switch (w[0]) {
    case MSG_OFFER_CHANNEL:
        if (channel_count < VMBUS_MAX_CHANNELS) {
            struct vmbus_channel *c = &channels[channel_count];
            memcpy(c->interface_id, msg + 8, 16);
            memcpy(c->instance_id, msg + 24, 16);
            c->relid = w[10];
            c->connection_id = w[11];
            c->open_status = -1;
            channel_count++;
        }
        break;
    case MSG_ALL_OFFERS_DELIVERED:
        offers_done = 1;
        break;
    case MSG_OPEN_RESULT:
        for (uint32_t i = 0; i < channel_count; i++)
            if (channels[i].relid == w[2])
                channels[i].open_status = (int)w[4];
        break;
    }
}

/* Handles queued messages; halts (interrupts on) until one arrives if 'wait'. */
static void poll(int wait)
{
    for (;;) {
        cli();
        if (queue_head != queue_tail) {
            sti();
            while (queue_head != queue_tail) {
                handle(queue[queue_head % MSG_QUEUE]);
                queue_head++;
            }
            return;
        }
        if (!wait) {
            sti();
            return;
        }
        sti_hlt();
    }
}

int vmbus_init(void)
{
    if (hv_init() != 0)
        return -1;
    idt_set_gate(VMBUS_VECTOR, vmbus_isr_stub);
    wrmsr(HV_MSR_SIMP, (uint32_t)message_page | 1u);
    wrmsr(HV_MSR_SIEFP, (uint32_t)event_page | 1u);
    wrmsr(HV_MSR_SINT0 + VMBUS_SINT, VMBUS_VECTOR | HV_SINT_AUTO_EOI);   /* unmasked, vector 0x40, auto-EOI */
    wrmsr(HV_MSR_SCONTROL, 1);
    sti();
    uint32_t request[2] = { MSG_REQUEST_OFFERS, 0 };
    if (hv_post_message(VMBUS_MESSAGE_CONNECTION, VMBUS_MESSAGE_TYPE, request, sizeof request) != HV_STATUS_SUCCESS)
        return -2;
    while (!offers_done)
        poll(1);
    return 0;
}

struct vmbus_channel *vmbus_find(const uint8_t interface_id[16])
{
    for (uint32_t i = 0; i < channel_count; i++)
        if (memcmp(channels[i].interface_id, interface_id, 16) == 0)
            return &channels[i];
    return NULL;
}

int vmbus_open(struct vmbus_channel *c, void *ring, uint32_t pages, uint32_t out_pages)
{
    uint32_t gpadl = 0x100 + c->relid;
    if (hv_create_gpadl(gpadl, ring, pages) != HV_STATUS_SUCCESS)
        return -1;
    uint8_t *base = ring;
    memset(base, 0, pages * 4096u);
    c->out.control = (struct vmbus_ring_control *)base;
    c->out.data = base + 4096;
    c->out.size = (out_pages - 1) * 4096u;
    c->in.control = (struct vmbus_ring_control *)(base + out_pages * 4096u);
    c->in.data = base + (out_pages + 1) * 4096u;
    c->in.size = (pages - out_pages - 1) * 4096u;
    uint32_t open[6] = { MSG_OPEN_CHANNEL, 0, c->relid, c->relid, gpadl, out_pages };
    c->open_status = -1;
    if (hv_post_message(VMBUS_MESSAGE_CONNECTION, VMBUS_MESSAGE_TYPE, open, sizeof open) != HV_STATUS_SUCCESS)
        return -2;
    while (c->open_status < 0)
        poll(1);
    return c->open_status;
}

static void copy_in(struct vmbus_ring *r, uint32_t at, const void *src, uint32_t n)
{
    uint32_t first = n < r->size - at ? n : r->size - at;
    memcpy(r->data + at, src, first);
    memcpy(r->data, (const uint8_t *)src + first, n - first);
}

static void copy_out(struct vmbus_ring *r, uint32_t at, void *dst, uint32_t n)
{
    uint32_t first = n < r->size - at ? n : r->size - at;
    memcpy(dst, r->data + at, first);
    memcpy((uint8_t *)dst + first, r->data, n - first);
}

int vmbus_send(struct vmbus_channel *c, uint16_t type, uint16_t flags, uint64_t txid, const void *data, uint32_t len)
{
    struct vmbus_ring *r = &c->out;
    uint32_t total = 16 + ((len + 7) & ~7u);
    if (total + 8 > r->size)
        return -1;
    for (;;) {
        uint32_t w = r->control->write_index, rd = r->control->read_index;
        uint32_t used = (w - rd + r->size) % r->size;
        if (total + 8 <= r->size - used)
            break;
        /* Full: ask to be signalled once the host has made room, then sleep. */
        r->control->pending_send_sz = total + 8;
        hv_signal_event(c->connection_id, 0);
        cli();
        if (!c->signalled)
            sti_hlt();
        else
            sti();
        c->signalled = 0;
    }
    uint32_t w = r->control->write_index;
    struct vmbus_packet d = { type, 2, (uint16_t)(total / 8), flags, txid };
    copy_in(r, w, &d, sizeof d);
    copy_in(r, (w + 16) % r->size, data, len);
    uint64_t zero = 0;
    if (total - 16 > len)
        copy_in(r, (w + 16 + len) % r->size, &zero, total - 16 - len);
    __asm__ volatile("" ::: "memory");
    r->control->write_index = (w + total) % r->size;
    if (!r->control->interrupt_mask) {
        hv_signal_event(c->connection_id, 0);
        c->signals_sent++;
    }
    return 0;
}

int vmbus_recv(struct vmbus_channel *c, struct vmbus_packet *desc, void *buf, uint32_t cap)
{
    struct vmbus_ring *r = &c->in;
    uint32_t w = r->control->write_index, rd = r->control->read_index;
    if (w == rd)
        return -1;
    copy_out(r, rd, desc, sizeof *desc);
    uint32_t total = desc->len8 * 8u;
    uint32_t len = total - 16;
    copy_out(r, (rd + 16) % r->size, buf, len < cap ? len : cap);
    __asm__ volatile("" ::: "memory");
    r->control->read_index = (rd + total) % r->size;
    return (int)len;
}

int vmbus_recv_wait(struct vmbus_channel *c, struct vmbus_packet *desc, void *buf, uint32_t cap)
{
    for (;;) {
        int n = vmbus_recv(c, desc, buf, cap);
        if (n >= 0)
            return n;
        cli();
        if (!c->signalled && c->in.control->write_index == c->in.control->read_index)
            sti_hlt();
        else
            sti();
        c->signalled = 0;
    }
}
