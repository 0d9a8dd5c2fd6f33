#!/bin/busybox sh
# /init of the interactive initramfs (make-initramfs.sh shell-init.sh shell.cpio.gz): mounts proc, sys, dev and tmp,
# then runs a BusyBox shell on the console (ttyS0) as its controlling terminal, so that Ctrl-C and job control work.
# When the shell exits, Linux resets the machine through the keyboard controller and the VM stops with status 0.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
export PS1='# ' HOME=/root PATH=/bin
mkdir -p /root
cd /root
echo "shell: BusyBox $(busybox | head -1 | cut -d' ' -f2) on Linux $(uname -r); 'exit' reboots, which ends the VM"
setsid cttyhack sh
echo "shell: the shell exited"
reboot -f
