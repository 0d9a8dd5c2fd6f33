#!/usr/bin/env bash
# Rebuilds the CoreMark guest and its QEMU reference outputs:
#   1. checks that EEMBC's sources are unmodified (md5sum -c coremark.md5, CoreMark's own `make check`);
#   2. builds ../bin/coremark.elf (reproducible: the same bytes as the committed ELF with gcc 12.2.0/binutils 2.40);
#   3. runs it under qemu-system-i386 for the performance run (seeds 0,0,0x66) and the validation run
#      (seeds 0x3415,0x3415,0x66) -> ../bin/coremark.qemu.txt and ../bin/coremark.validation.qemu.txt;
#   4. fails unless both runs exit with code 0 and print "Correct operation validated.".
#
# Usage: rebuild.sh [--vendor COREMARK_GIT_DIR] [--iterations N]
#   --vendor DIR     first copy the vendored files afresh from a clone (or bare git dir) of
#                    github.com/eembc/coremark at the commit named in SOURCE
#   --iterations N   the default iteration count built into the ELF (default 100, as committed; the
#                    tests expect 100)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
guests=$(dirname "$here")
commit=$(awk '$1 == "commit" { print $2 }' "$here/SOURCE")
files="core_list_join.c core_main.c core_matrix.c core_state.c core_util.c coremark.h coremark.md5 LICENSE.md README.md"
vendor=""
iterations=100

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --vendor) [ $# -ge 2 ] || { echo "rebuild.sh: --vendor needs a directory" >&2; exit 2; }; vendor=$2; shift 2 ;;
        --iterations)
            [ $# -ge 2 ] || { echo "rebuild.sh: --iterations needs a number" >&2; exit 2; }
            [[ "$2" =~ ^[1-9][0-9]{0,8}$ ]] || { echo "rebuild.sh: --iterations '$2' is not a count from 1 to 999999999" >&2; exit 2; }
            iterations=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "rebuild.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

if [ -n "$vendor" ]; then
    git --git-dir="$vendor/.git" rev-parse --verify -q "$commit^{commit}" >/dev/null 2>&1 && gitdir="$vendor/.git" \
        || { git --git-dir="$vendor" rev-parse --verify -q "$commit^{commit}" >/dev/null 2>&1 && gitdir="$vendor"; } \
        || { echo "rebuild.sh: $vendor is not a CoreMark git repository holding commit $commit" >&2; exit 1; }
    for f in $files; do git --git-dir="$gitdir" show "$commit:$f" > "$here/$f"; done
    echo "vendored $files from $commit"
fi

(cd "$here" && md5sum --quiet -c coremark.md5) || { echo "rebuild.sh: CoreMark's sources were modified (see above)" >&2; exit 1; }
echo "coremark.md5: the benchmark sources are unmodified"

for tool in gcc make qemu-system-i386; do
    command -v "$tool" >/dev/null || { echo "rebuild.sh: $tool is not installed (apt-get install gcc-multilib make qemu-system-x86)" >&2; exit 1; }
done
rm -f "$guests/bin/coremark.elf" "$guests"/obj/coremark/*.o
make -s -C "$guests" bin/coremark.elf COREMARK_ITERATIONS="$iterations"

run() { # run OUTPUT [APPEND]
    local out=$1 status=0
    shift
    (cd "$guests" && timeout 60 qemu-system-i386 -kernel bin/coremark.elf -serial stdio -monitor none -display none \
        -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 "$@" > "bin/$out") || status=$?
    # QEMU exits with (code << 1) | 1: 1 is the guest's exit code 0.
    [ "$status" -eq 1 ] || { echo "rebuild.sh: qemu-system-i386 exited with status $status for bin/$out" >&2; exit 1; }
    grep -q '^Correct operation validated\.' "$guests/bin/$out" \
        || { echo "rebuild.sh: bin/$out lacks 'Correct operation validated.':" >&2; cat "$guests/bin/$out" >&2; exit 1; }
    echo "bin/$out:"
    grep -E '^(seedcrc|\[0\]crc)' "$guests/bin/$out" | sed 's/^/  /'
}
run coremark.qemu.txt
run coremark.validation.qemu.txt -append "0x3415 0x3415 0x66 $iterations"
