#!/usr/bin/env bash
# Debian's Linux to an interactive BusyBox shell on COM1, in one command: fetches the kernel and BusyBox if needed,
# packs shell-init.sh as /init (debian/shell.cpio.gz), and boots it with this terminal as the serial console.
# Ctrl-A x quits, Ctrl-A h lists the keys; 'exit' in the shell reboots, which ends the VM. Extra arguments go to
# 'hybridvmm run' (e.g. --serial-input FILE to type a script instead).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ -s "$here/debian/vmlinuz" ] && [ -s "$here/debian/busybox" ] || bash "$here/fetch-debian.sh"
bash "$here/make-initramfs.sh" shell-init.sh shell.cpio.gz > /dev/null
exec dotnet run -c Release --project "$here/../../src/HybridVmm.Cli" -- run "$here/debian/vmlinuz" \
    --initrd "$here/debian/shell.cpio.gz" --memory 128M --append "console=ttyS0 cryptomgr.notests" "$@"
