/* hv.h - the Hyper-V-style (TLFS) hypervisor interface for HybridVmm guests:
 * synthetic MSRs, the hypercall page, HvPostMessage / HvSignalEvent, GPADLs,
 * and the minimum of IDT handling a guest needs to take SynIC interrupts.
 * See docs/enlightened-io.md for the ABI these functions implement. */
#ifndef HV_H
#define HV_H

#include <stdint.h>

#define HV_MSR_GUEST_OS_ID 0x40000000u
#define HV_MSR_HYPERCALL   0x40000001u
#define HV_MSR_SCONTROL    0x40000080u
#define HV_MSR_SIEFP       0x40000082u
#define HV_MSR_SIMP        0x40000083u
#define HV_MSR_EOM         0x40000084u
#define HV_MSR_SINT0       0x40000090u

#define HVCALL_POST_MESSAGE 0x005Cu
#define HVCALL_SIGNAL_EVENT 0x005Du
#define HVCALL_CREATE_GPADL 0x8001u   /* HybridVmm extension (rep) */
#define HVCALL_DELETE_GPADL 0x8002u   /* HybridVmm extension (fast) */
#define HV_CONTROL_FAST     (1ull << 16)
#define HV_REP_COUNT(n)     ((uint64_t)(n) << 32)
#define HV_REP_START(n)     ((uint64_t)(n) << 48)

#define HV_STATUS_SUCCESS 0
#define HV_SINT_MASKED    (1ull << 16)
/* AutoEOI (TLFS 11.8.4): the SINT's vector leaves the local APIC's ISR as it is taken, so the handler needs no APIC EOI. */
#define HV_SINT_AUTO_EOI  (1ull << 17)

/* The SynIC message slot (HV_MESSAGE) and its header fields. */
struct hv_message {
    volatile uint32_t type;        /* 0 = HvMessageTypeNone: slot free */
    uint8_t payload_size;
    volatile uint8_t flags;        /* bit 0: MessagePending -> write EOM */
    uint16_t reserved;
    uint64_t sender;
    uint8_t payload[240];
};

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
/* Enables interrupts and halts atomically (STI's shadow covers HLT): no wake-up is lost. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

/* Sets the guest OS ID and maps the hypercall page. Returns 0 when the hypervisor offers "Hv#1". */
int hv_init(void);
uint64_t hv_hypercall(uint64_t control, uint64_t input_gpa, uint64_t output_gpa);
/* Returns the HV_STATUS. */
uint16_t hv_post_message(uint32_t connection, uint32_t type, const void *payload, uint32_t size);
uint16_t hv_signal_event(uint32_t connection, uint16_t flag);
/* Grants the root access to 'pages' 4 KiB pages at 'buffer' (page aligned) as GPADL 'id'. */
uint16_t hv_create_gpadl(uint32_t id, const void *buffer, uint32_t pages);

/* Points IDT vector 'vector' at an assembly stub (an interrupt gate) and loads the IDT. */
void idt_set_gate(uint8_t vector, void (*stub)(void));

#endif
