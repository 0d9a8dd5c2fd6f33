#!/usr/bin/env bash
# Builds samples/linux/debian/initramfs.cpio.gz: BusyBox (from fetch-debian.sh) as /bin/busybox and init.sh as /init,
# in the "newc" cpio format the kernel unpacks, with fixed timestamps and owners so that the archive is reproducible.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/debian"
[ -s "$out/busybox" ] || bash "$here/fetch-debian.sh"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/dev"
cp "$out/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init.sh" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n > "$out/initramfs.cpio.gz"
echo "make-initramfs: $out/initramfs.cpio.gz ($(stat -c %s "$out/initramfs.cpio.gz") bytes)"
