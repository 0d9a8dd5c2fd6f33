#!/usr/bin/env bash
# Times the same guests under qemu-system-i386 (TCG) and hybridvmm, alternating the runs, and prints the medians
# and the ratios to QEMU as a markdown table (issue 10, "efficiency").
#
# Usage: bench/compare-qemu.sh [-n RUNS] [-i COREMARK_ITERATIONS] [-g GUESTS] [--linux [DIR]] [--keep]
#   -n RUNS          runs per guest and engine (default 5); the engines take turns within each round
#   -i ITERATIONS    CoreMark's iteration count (default 1000, about 350 M instructions)
#   -g GUESTS        the rows to time, a comma-separated subset of cpu,coremark,iobench,exits,linux (default
#                    the first four; linux as with --linux, whose DIR it takes if given)
#   --linux [DIR]    add a row for Debian's Linux: the time from the start to BusyBox's first shell prompt
#                    ("# " after shell-init.sh's banner), when the run is stopped. DIR holds vmlinuz and
#                    shell.cpio.gz (default samples/linux/debian; bash samples/linux/fetch-debian.sh &&
#                    bash samples/linux/make-initramfs.sh shell-init.sh shell.cpio.gz). Slow: minutes a run
#                    under the interpreter; LINUX_LIMIT (default 900) bounds one run in seconds.
#   --keep           keep the temporary directory (the Release build and each run's output)
#
# Environment:
#   HV_TIERS   the hybridvmm tiers to time, e.g. "interp jit" (one column each, run as
#              `hybridvmm --tier T run ...`). Default: "interp jit" when the built CLI has the --tier option,
#              else one column of plain `hybridvmm run ...`. HV_TIERS=none forces that plain column.
#              A tier with ":fast" (e.g. "jit jit:fast") also passes `--boot fast`: Linux's payload unpacked on the
#              host instead of by its own decompressor in the guest (Multiboot guests boot alike either way).
#   HV_BUILD   r2r (default): `dotnet publish -p:PublishReadyToRun=true`, how a deployment ships a .NET program, so
#              that .NET's start-up JIT is not timed as the guest's; jit: a plain `dotnet build` (every method JIT-compiled
#              at its first call, which costs about 0.2 s of each run).
#   QEMU       the QEMU binary (default qemu-system-i386); DOTNET the dotnet host (default dotnet).
#
# Wall seconds come from /usr/bin/time (0.01 s resolution; for Linux, date before the start and at the prompt,
# polled every 0.05 s) and cover the whole process: the .NET runtime's start
# and JIT for hybridvmm, QEMU's start for QEMU. Every run is checked: QEMU must exit through isa-debug-exit with
# code 0 (status 1), hybridvmm with status 0, and CoreMark under hybridvmm must print "Correct operation validated.".
# The script builds the checkout it lives in (src/HybridVmm.Cli, Release; see HV_BUILD) into the temporary directory only.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
invocation="bench/compare-qemu.sh${*:+ $*}"
runs=5
iterations=1000
linux=""
keep=0
rows=(cpu coremark iobench exits)
with_linux=0
QEMU=${QEMU:-qemu-system-i386}
DOTNET=${DOTNET:-dotnet}

die() { echo "compare-qemu.sh: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
        -n) [ $# -ge 2 ] || die "-n needs a number of runs"
            [[ "$2" =~ ^[1-9][0-9]{0,2}$ ]] || die "-n '$2' is not a number of runs from 1 to 999"
            runs=$2; shift 2 ;;
        -i) [ $# -ge 2 ] || die "-i needs an iteration count"
            [[ "$2" =~ ^[1-9][0-9]{0,8}$ ]] || die "-i '$2' is not an iteration count from 1 to 999999999"
            iterations=$2; shift 2 ;;
        --linux)
            with_linux=1
            if [ $# -ge 2 ] && [[ "$2" != -* ]]; then linux=$2; shift 2; else shift; fi ;;
        -g) [ $# -ge 2 ] || die "-g needs a list of guests"
            rows=()
            IFS=, read -r -a wanted <<< "$2"
            for g in "${wanted[@]}"; do
                case "$g" in
                    cpu|coremark|iobench|exits) rows+=("$g") ;;
                    linux) with_linux=1 ;;
                    *) die "-g: '$g' is not one of cpu, coremark, iobench, exits, linux" ;;
                esac
            done
            [ ${#rows[@]} -gt 0 ] || [ "$with_linux" -eq 1 ] || die "-g needs at least one guest"
            shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare-qemu.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ "$with_linux" -eq 1 ] && [ -z "$linux" ]; then linux="$repo/samples/linux/debian"; fi

command -v "$QEMU" >/dev/null || die "$QEMU is not installed (Debian package qemu-system-x86)"
command -v "$DOTNET" >/dev/null || die "$DOTNET is not installed"
[ -x /usr/bin/time ] || die "/usr/bin/time is not installed (Debian package time)"
guests="$repo/samples/guests/bin"
for g in cpu coremark iobench exits; do
    [ -f "$guests/$g.elf" ] || die "$guests/$g.elf is missing (make -C samples/guests)"
done
if [ -n "$linux" ]; then
    for f in vmlinuz shell.cpio.gz; do
        [ -f "$linux/$f" ] || die "$linux/$f is missing (bash samples/linux/fetch-debian.sh && bash samples/linux/make-initramfs.sh shell-init.sh shell.cpio.gz)"
    done
    linux_limit=${LINUX_LIMIT:-900}
    [[ "$linux_limit" =~ ^[1-9][0-9]{0,5}$ ]] || die "LINUX_LIMIT '$linux_limit' is not a number of seconds"
fi

for t in ${HV_TIERS:-}; do
    case "$t" in interp|jit|none|interp:fast|jit:fast|none:fast) ;; *) die "HV_TIERS: '$t' is not a tier (interp, jit, or none, each optionally with :fast)" ;; esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/compare-qemu.XXXXXX")
bg_pid=""   # a Linux run in progress, stopped if the script ends early
cleanup() {
    if [ -n "$bg_pid" ]; then kill "$bg_pid" 2>/dev/null || true; fi
    if [ "$keep" -eq 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

case "${HV_BUILD:-r2r}" in
    r2r) rid="linux-$(uname -m | sed 's/^x86_64$/x64/; s/^aarch64$/arm64/')"
         echo "publishing src/HybridVmm.Cli (Release, ReadyToRun for $rid) into $tmp/hv ..." >&2
         build=("$DOTNET" publish "$repo/src/HybridVmm.Cli" -c Release -r "$rid" --self-contained false -p:PublishReadyToRun=true) ;;
    jit) echo "building src/HybridVmm.Cli (Release) into $tmp/hv ..." >&2
         build=("$DOTNET" build "$repo/src/HybridVmm.Cli" -c Release) ;;
    *) die "HV_BUILD: '$HV_BUILD' is not r2r or jit" ;;
esac
if ! "${build[@]}" -o "$tmp/hv" -nologo -v quiet > "$tmp/build.log" 2>&1; then
    cat "$tmp/build.log" >&2
    die "the Release build failed (log above)"
fi
hv=("$DOTNET" "$tmp/hv/hybridvmm.dll")

tiers=${HV_TIERS:-}
if [ -z "$tiers" ]; then
    if "${hv[@]}" --help 2>/dev/null | grep -q -- '--tier'; then tiers="interp jit"
    else tiers="none"; echo "note: this hybridvmm has no --tier option; timing plain 'hybridvmm run' (HV_TIERS chooses)" >&2; fi
fi

engines=(qemu)
for t in $tiers; do engines+=("$t"); done

# One timed run: run ENGINE GUEST ROUND; appends the wall seconds to $tmp/times/GUEST.ENGINE.
run() {
    local engine=$1 guest=$2 round=$3 out="$tmp/out/$2.$1.$3" status=0 cmd=()
    local image qemu_args=() hv_args=() expect_qemu=1 serial=null
    case "$guest" in
        cpu|iobench|exits) image="$guests/$guest.elf" ;;
        coremark) image="$guests/coremark.elf"; qemu_args=(-append "$iterations"); hv_args=(--append "$iterations") ;;
        linux)
            image="$linux/vmlinuz"
            qemu_args=(-initrd "$linux/shell.cpio.gz" -m 128 -append "console=ttyS0 cryptomgr.notests")
            hv_args=(--initrd "$linux/shell.cpio.gz" --memory 128M --append "console=ttyS0 cryptomgr.notests")
            serial=stdio ;;   # the prompt must be seen
    esac
    if [ "${engine#*:}" = fast ]; then hv_args+=(--boot fast); fi
    case "${engine%%:*}" in
        qemu) cmd=("$QEMU" -kernel "$image" -serial "$serial" -monitor none -display none -no-reboot
                   -device isa-debug-exit,iobase=0xf4,iosize=0x04 "${qemu_args[@]}") ;;
        none) cmd=("${hv[@]}" run "$image" "${hv_args[@]}") ;;
        *)    cmd=("${hv[@]}" --tier "${engine%%:*}" run "$image" "${hv_args[@]}") ;;
    esac
    if [ "$guest" = linux ]; then
        run_to_prompt "$out" "${cmd[@]}"
    else
        /usr/bin/time -f %e -o "$out.time" "${cmd[@]}" > "$out" 2> "$out.err" < /dev/null || status=$?
    fi
    if [ "$guest" = linux ]; then
        :   # stopped at the prompt: no status to check
    elif [ "$engine" = qemu ]; then
        [ "$status" -eq "$expect_qemu" ] || die "$guest under QEMU exited with status $status (expected $expect_qemu): ${cmd[*]}"
    else
        [ "$status" -eq 0 ] || { cat "$out.err" >&2; die "$guest under hybridvmm ($engine) exited with status $status: ${cmd[*]}"; }
        if [ "$guest" = coremark ] && ! grep -q '^Correct operation validated\.' "$out"; then
            cat "$out" >&2
            die "CoreMark under hybridvmm ($engine) did not validate"
        fi
    fi
    tail -n 1 "$out.time" >> "$tmp/times/$guest.$engine"
    printf '  %-8s round %d  %-6s %6.2f s\n' "$guest" "$round" "$engine" "$(tail -n 1 "$out.time")" >&2
}

# run_to_prompt OUT COMMAND...: starts COMMAND, stops it at BusyBox's first prompt, writes the seconds to OUT.time.
run_to_prompt() {
    local out=$1 start now pid
    shift
    : > "$out"   # exists before the first poll
    start=$(date +%s.%N)
    "$@" >> "$out" 2> "$out.err" < /dev/null &
    pid=$!
    bg_pid=$pid
    until grep -q '^shell: BusyBox' "$out" && grep -q '^# ' "$out"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || true
            tail -n 5 "$out" "$out.err" >&2
            die "Linux ended before its shell prompt: $*"
        fi
        if awk -v s="$start" -v n="$(date +%s.%N)" -v l="$linux_limit" 'BEGIN { exit !(n - s > l) }'; then
            kill "$pid"; wait "$pid" 2>/dev/null || true
            die "no shell prompt within LINUX_LIMIT=$linux_limit s: $*"
        fi
        sleep 0.05
    done
    now=$(date +%s.%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    bg_pid=""
    awk -v s="$start" -v n="$now" 'BEGIN { printf "%.2f\n", n - s }' > "$out.time"
}

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mkdir -p "$tmp/out" "$tmp/times"
if [ -n "$linux" ]; then rows+=(linux); fi
for guest in "${rows[@]}"; do
    for round in $(seq 1 "$runs"); do
        for engine in "${engines[@]}"; do run "$engine" "$guest" "$round"; done
    done
done

label() {
    case "$1" in
        qemu) echo "qemu-system-i386 (TCG)" ;;
        none) echo "hybridvmm run" ;;
        none:fast) echo "hybridvmm run --boot fast" ;;
        *:fast) echo "hybridvmm --tier ${1%%:*} run --boot fast" ;;
        *) echo "hybridvmm --tier $1" ;;
    esac
}
describe() {
    case "$1" in
        cpu) echo "cpu.elf (CPU-bound sample)" ;;
        coremark) echo "coremark.elf, $iterations iterations" ;;
        iobench) echo "iobench.elf (output-heavy: 4 KiB through COM1)" ;;
        exits) echo "exits.elf (exit-bound: 200,000 port intercepts)" ;;
        linux) echo "Debian Linux 6.1 boot to the shell prompt" ;;
    esac
}

echo
echo "\`${HV_BUILD:+HV_BUILD=$HV_BUILD }${HV_TIERS:+HV_TIERS=\"$HV_TIERS\" }$invocation\` at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'):"
echo "median wall seconds of $runs alternating runs, whole process; $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); $("$QEMU" --version | head -n 1); .NET $("$DOTNET" --version)."
echo
header="| guest | $(label qemu) |"
rule="|---|---|"
for t in $tiers; do header+=" $(label "$t") | ratio |"; rule+="---|---|"; done
echo "$header"
echo "$rule"
for guest in "${rows[@]}"; do
    q=$(median "$tmp/times/$guest.qemu")
    line="| $(describe "$guest") | $q |"
    for t in $tiers; do
        m=$(median "$tmp/times/$guest.$t")
        line+=" $m | $(awk -v a="$m" -v b="$q" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else printf "n/a" }') |"
    done
    echo "$line"
done
