#!/usr/bin/env python3
"""Writes tiny-vmlinux.xz: a bzImage payload as Linux's build makes one (scripts/xz_wrap.sh: XZ with CRC32, the x86
BCJ filter and LZMA2; then the unpacked size appended, little-endian), holding a tiny vmlinux: an ELF32 i386
executable with one PT_LOAD segment at physical 0x1000000 and a PT_NOTE owned by "Linux". Its code reads
type_of_loader from the zero page (ESI + 0x210) and writes it to the debug-exit port, so a correct hand-over exits 255.
LinuxFastBootTests reads the file; run this script only to change it."""
import lzma, struct

code = bytes([0x8A, 0x86, 0x10, 0x02, 0x00, 0x00,  # mov al, [esi+0x210]
              0xE6, 0xF4,                          # out 0xF4, al
              0xF4])                               # hlt
note = struct.pack('<III', 6, 4, 0x100) + b'Linux\0\0\0' + struct.pack('<I', 1)
elf = bytearray(0x1000 + len(code))
elf[0:16] = b'\x7fELF\x01\x01\x01' + bytes(9)
struct.pack_into('<HHIIIIIHHHHHH', elf, 16, 2, 3, 1, 0x1000000, 52, 0, 0, 52, 32, 2, 40, 0, 0)
struct.pack_into('<8I', elf, 52, 1, 0x1000, 0xC1000000, 0x1000000, len(code), 0x2000, 5, 0x1000)
struct.pack_into('<8I', elf, 84, 4, 0x100, 0xC1000100, 0x1000100, len(note), len(note), 4, 4)
elf[0x100:0x100 + len(note)] = note
elf[0x1000:] = code
xz = lzma.compress(bytes(elf), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                   filters=[{'id': lzma.FILTER_X86}, {'id': lzma.FILTER_LZMA2, 'dict_size': 1 << 20}])
open('tiny-vmlinux.xz', 'wb').write(xz + struct.pack('<I', len(elf)))
