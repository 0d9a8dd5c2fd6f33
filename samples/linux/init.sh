#!/bin/busybox sh
# /init of the BusyBox initramfs: a few user-space steps whose output QEMU and HybridVmm must print alike, then a
# reboot, which Linux performs through the keyboard controller's reset line: the VM stops with exit status 0.
/bin/busybox mkdir -p /proc /sys /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t tmpfs tmpfs /tmp
echo "init: hello from BusyBox $(/bin/busybox | /bin/busybox head -1 | /bin/busybox cut -d' ' -f2) on Linux $(/bin/busybox uname -r)"
echo "init: cpus=$(/bin/busybox nproc) mounts=$(/bin/busybox wc -l < /proc/mounts)"
echo "abc def ghi" > /tmp/file
echo "init: pipeline: $(/bin/busybox cat /tmp/file | /bin/busybox tr a-z A-Z | /bin/busybox wc -w) words"
( echo "init: child $$ ran" ) ; wait
echo "init: done"
/bin/busybox reboot -f
