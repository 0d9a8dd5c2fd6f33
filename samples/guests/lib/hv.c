/* hv.c - hypercalls and the IDT for enlightened HybridVmm guests (TLFS 3, 11). */
#include "guest.h"
#include "hv.h"

static uint8_t hypercall_page[4096] __attribute__((aligned(4096)));
static uint8_t input_page[4096] __attribute__((aligned(4096)));
static uint32_t hypercall_entry;

struct idt_gate { uint16_t offset_low, selector; uint8_t zero, type_attr; uint16_t offset_high; };
static struct idt_gate idt[256] __attribute__((aligned(8)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } idtr;

static void cpuid(uint32_t leaf, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

int hv_init(void)
{
    uint32_t r[4];
    cpuid(1, r);
    if (!(r[2] & (1u << 31)))
        return -1;                              /* no hypervisor */
    cpuid(0x40000001u, r);
    if (r[0] != 0x31237648u)                    /* "Hv#1" */
        return -2;
    /* Guest OS ID (TLFS 3.13): an open-source OS, vendor-specific bits. Must be set first. */
    wrmsr(HV_MSR_GUEST_OS_ID, 0x8100000000000001ull);
    wrmsr(HV_MSR_HYPERCALL, (uint32_t)hypercall_page | 1u);
    hypercall_entry = (uint32_t)hypercall_page;
    return (rdmsr(HV_MSR_HYPERCALL) & 1) ? 0 : -3;
}

/* 32-bit convention: EDX:EAX control, EBX:ECX input GPA, EDI:ESI output GPA; result in EDX:EAX. */
uint64_t hv_hypercall(uint64_t control, uint64_t input_gpa, uint64_t output_gpa)
{
    uint32_t lo = (uint32_t)control, hi = (uint32_t)(control >> 32);
    __asm__ volatile("call *%[entry]"
                     : "+a"(lo), "+d"(hi)
                     : [entry] "m"(hypercall_entry), "b"((uint32_t)(input_gpa >> 32)), "c"((uint32_t)input_gpa),
                       "D"((uint32_t)(output_gpa >> 32)), "S"((uint32_t)output_gpa)
                     : "memory", "cc");
    return ((uint64_t)hi << 32) | lo;
}

uint16_t hv_post_message(uint32_t connection, uint32_t type, const void *payload, uint32_t size)
{
    uint32_t *in = (uint32_t *)input_page;
    in[0] = connection;
    in[1] = 0;
    in[2] = type;
    in[3] = size;
    memcpy(input_page + 16, payload, size);
    return (uint16_t)hv_hypercall(HVCALL_POST_MESSAGE, (uint32_t)input_page, 0);
}

uint16_t hv_signal_event(uint32_t connection, uint16_t flag)
{
    /* Fast call: the 8 input bytes (ConnectionId, FlagNumber, Reserved) travel in EBX:ECX. */
    return (uint16_t)hv_hypercall(HVCALL_SIGNAL_EVENT | HV_CONTROL_FAST,
                                  ((uint64_t)flag << 32) | connection, 0);
}

uint16_t hv_create_gpadl(uint32_t id, const void *buffer, uint32_t pages)
{
    uint32_t *in = (uint32_t *)input_page;
    uint64_t *pfn = (uint64_t *)(input_page + 8);
    in[0] = id;
    in[1] = pages;
    for (uint32_t i = 0; i < pages; i++)
        pfn[i] = ((uint32_t)buffer >> 12) + i;
    /* A rep call may return early with reps completed < count: continue from there (TLFS 3.7). */
    uint32_t done = 0;
    for (;;) {
        uint64_t result = hv_hypercall(HVCALL_CREATE_GPADL | HV_REP_COUNT(pages) | HV_REP_START(done),
                                       (uint32_t)input_page, 0);
        uint16_t status = (uint16_t)result;
        done = (uint32_t)(result >> 32) & 0xFFF;
        if (status != HV_STATUS_SUCCESS || done >= pages)
            return status;
    }
}

void idt_set_gate(uint8_t vector, void (*stub)(void))
{
    uint32_t offset = (uint32_t)stub;
    idt[vector].offset_low = (uint16_t)offset;
    idt[vector].selector = 0x08;                /* the Multiboot flat code segment */
    idt[vector].zero = 0;
    idt[vector].type_attr = 0x8E;               /* present, DPL 0, 32-bit interrupt gate */
    idt[vector].offset_high = (uint16_t)(offset >> 16);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
}
