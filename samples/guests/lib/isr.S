/* isr.S - the interrupt stub for the VMBus SINT: saves the registers, calls
 * vmbus_isr() (C, cdecl) and returns with IRET. */
    .text
    .globl vmbus_isr_stub
    .type vmbus_isr_stub, @function
vmbus_isr_stub:
    pushal
    cld
    call vmbus_isr
    popal
    iret
    .size vmbus_isr_stub, . - vmbus_isr_stub

    .section .note.GNU-stack, "", @progbits
