; asmhello.asm - a hand-written NASM guest that shares no code with lib/.
; Shows that HybridVmm runs any Multiboot v1 kernel, not just our C ones.
;
; Multiboot header by hand, COM1 init, message output with `rep outsb` (each
; byte only after LSR.THRE is set) and with a classic `out dx, al` loop, then
; exit code 0 through the isa-debug-exit port 0xF4.
; Build: nasm -f elf32 asmhello.asm && ld -m elf_i386 -T lib/guest.ld ...

MB_MAGIC    equ 0x1BADB002
MB_FLAGS    equ 0x00000003          ; page-align modules | want memory info
COM1        equ 0x3F8
EXIT_PORT   equ 0xF4

bits 32

section .multiboot
align 4
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)

section .bss
align 16
stack:  resb 4096
stack_top:

section .rodata
banner:     db "asmhello: hand-written NASM guest, multiboot magic "
banner_len  equ $ - banner
tail:       db "rep outsb says hi, out-dx loop says bye", 10
tail_len    equ $ - tail
hexdigits:  db "0123456789abcdef"

section .text
global _start
_start:
    mov esp, stack_top
    cld
    mov ebp, eax                    ; keep the loader's magic

    ; --- 16550 init: no IRQs, 115200 8N1, FIFOs on ---
    mov dx, COM1 + 1
    xor al, al
    out dx, al                      ; IER = 0
    mov dx, COM1 + 3
    mov al, 0x80
    out dx, al                      ; LCR: DLAB = 1
    mov dx, COM1
    mov al, 1
    out dx, al                      ; divisor low (does not print)
    inc dx
    xor al, al
    out dx, al                      ; divisor high
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al                      ; LCR: 8N1, DLAB = 0
    dec dx
    mov al, 0xC7
    out dx, al                      ; FCR
    mov dx, COM1 + 4
    mov al, 0x03
    out dx, al                      ; MCR: DTR | RTS

    ; --- banner: one `outsb` per byte once THRE is set ---
    mov esi, banner
    mov ecx, banner_len
    call write_outsb

    ; --- the magic as 8 hex digits, through a loop of `out dx, al` ---
    mov ebx, ebp
    mov ecx, 8
.hex:
    rol ebx, 4
    mov eax, ebx
    and eax, 0xF
    mov al, [hexdigits + eax]
    call putc
    loop .hex
    mov al, 10
    call putc

    ; --- the tail line: `rep outsb` in chunks of up to 16 bytes; THRE=1
    ;     means the (enabled) 16-byte transmit FIFO is empty ---
    mov esi, tail
    mov ebx, tail_len
.chunk:
    call wait_thre
    mov ecx, 16
    cmp ebx, ecx
    cmovb ecx, ebx
    sub ebx, ecx
    mov dx, COM1
    rep outsb
    test ebx, ebx
    jnz .chunk

    ; --- exit(0) ---
    call wait_thre
    mov dx, EXIT_PORT
    xor eax, eax
    out dx, eax
.halt:
    cli
    hlt
    jmp .halt

; putc: AL = byte
putc:
    push eax
    call wait_thre
    pop eax
    mov dx, COM1
    out dx, al
    ret

; write_outsb: ESI = bytes, ECX = count; outsb one byte at a time
write_outsb:
    jecxz .done
.next:
    call wait_thre
    mov dx, COM1
    outsb
    loop .next
.done:
    ret

; wait_thre: spin until the transmit holding register is empty (clobbers AL, DX)
wait_thre:
    mov dx, COM1 + 5
.poll:
    in al, dx
    test al, 0x20
    jz .poll
    ret
