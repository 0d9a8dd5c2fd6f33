#!/usr/bin/env bash
# Builds samples/linux/debian/initramfs.cpio.gz: BusyBox (from fetch-debian.sh) as /bin/busybox and init.sh as /init,
# in the "newc" cpio format the kernel unpacks, with fixed timestamps and owners so that the archive is reproducible.
# make-initramfs.sh INIT ARCHIVE packs another /init instead, e.g. shell-init.sh into debian/shell.cpio.gz (a relative
# INIT is taken from this directory, a relative ARCHIVE is put in debian/).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/debian"
init="${1:-init.sh}"; [[ "$init" = /* ]] || init="$here/$init"
archive="${2:-initramfs.cpio.gz}"; [[ "$archive" = /* ]] || archive="$out/$archive"
[ -r "$init" ] || { echo "make-initramfs: cannot read $init" >&2; exit 66; }
[ -s "$out/busybox" ] || bash "$here/fetch-debian.sh"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/dev"
cp "$out/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$init" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n > "$archive"
echo "make-initramfs: $archive ($(stat -c %s "$archive") bytes)"
