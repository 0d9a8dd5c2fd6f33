#!/usr/bin/env bash
# Fetches Debian's own i386 Linux kernels (linux-image-686, and linux-image-686-pae: PAE paging and NX) and BusyBox
# (busybox-static) from the configured Debian mirror and unpacks them into samples/linux/debian/ (not committed):
# vmlinuz, config, vmlinuz-pae, busybox, VERSIONS.
# Nothing is installed on the host: the packages are downloaded and extracted with dpkg-deb.
# Needs root once, to add the i386 architecture to dpkg (dpkg --add-architecture i386) and run apt-get update.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/debian"
if [ -s "$out/vmlinuz" ] && [ -s "$out/vmlinuz-pae" ] && [ -s "$out/busybox" ]; then
  echo "fetch-debian: already present in $out ($(cat "$out/VERSIONS" 2>/dev/null | tr '\n' ' '))"
  exit 0
fi

if ! dpkg --print-foreign-architectures | grep -qx i386; then
  dpkg --add-architecture i386
  apt-get update -q >/dev/null
fi
if ! apt-cache show linux-image-686:i386 >/dev/null 2>&1; then
  apt-get update -q >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# linux-image-686 is a metapackage; the kernel is in the versioned package it depends on.
kernel_pkg="$(apt-cache depends linux-image-686:i386 | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -1)"
[ -n "$kernel_pkg" ] || { echo "fetch-debian: cannot resolve linux-image-686:i386 to a kernel package" >&2; exit 1; }
pae_pkg="$(apt-cache depends linux-image-686-pae:i386 | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -1)"
[ -n "$pae_pkg" ] || { echo "fetch-debian: cannot resolve linux-image-686-pae:i386 to a kernel package" >&2; exit 1; }
(cd "$work" && apt-get download -q "$kernel_pkg:i386" "$pae_pkg:i386" busybox-static:i386 >/dev/null 2>&1) \
  || { echo "fetch-debian: apt-get download $kernel_pkg:i386 $pae_pkg:i386 busybox-static:i386 failed" >&2; exit 1; }
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

mkdir -p "$out"
cp "$work/root/boot/vmlinuz-${kernel_pkg#linux-image-}" "$out/vmlinuz"
cp "$work/root/boot/config-${kernel_pkg#linux-image-}" "$out/config"
cp "$work/root/boot/vmlinuz-${pae_pkg#linux-image-}" "$out/vmlinuz-pae"
cp "$work/root/bin/busybox" "$out/busybox"
{
  for deb in "$work"/*.deb; do dpkg-deb --showformat='${Package} ${Version}\n' -W "$deb"; done
} > "$out/VERSIONS"
echo "fetch-debian: $(tr '\n' ';' < "$out/VERSIONS") -> $out"
