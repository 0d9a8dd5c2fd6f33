#!/usr/bin/env bash
# Rebuilds vendor/xterm/ (xterm.js, xterm.css, LICENSE) from the npm tarball named in vendor/xterm/VERSION.
# The files are committed: building and testing hybridvmm never needs the network; only this script does.
#
#   ./fetch-xterm.sh           fetch the tarball with `npm pack`, check its sha512 against VERSION, extract the files
#   ./fetch-xterm.sh --check   the same, but only compare the committed files with the tarball's (exit 1 if they differ)
#
# To move to another version: change version, tarball and integrity in VERSION (from `npm view @xterm/xterm@X dist`),
# run this script, and check the dashboard tests (DashboardTests) still pass.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="$here/xterm"
mode="${1:-fetch}"
case "$mode" in
    fetch|--check) ;;
    *) echo "usage: $0 [--check]" >&2; exit 64 ;;
esac

value() { sed -n "s/^$1=//p" "$target/VERSION"; }
package="$(value package)"
version="$(value version)"
tarball="$(value tarball)"
integrity="$(value integrity)"
if [[ -z "$package" || -z "$version" || -z "$tarball" || "$integrity" != sha512-* ]]; then
    echo "$target/VERSION needs package, version, tarball and a sha512- integrity" >&2
    exit 78
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package@$version" >/dev/null)
file="$(ls "$work"/*.tgz)"

# npm's dist.integrity is "sha512-" and the base64 of the tarball's SHA-512 (the Subresource Integrity form).
actual="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$file")"
if [[ "$actual" != "$integrity" ]]; then
    echo "integrity mismatch for $package@$version ($tarball):" >&2
    echo "  expected $integrity" >&2
    echo "  got      $actual" >&2
    exit 1
fi

mkdir -p "$work/x"
tar -xzf "$file" -C "$work/x" package/lib/xterm.js package/css/xterm.css package/LICENSE
declare -A from=([xterm.js]=lib/xterm.js [xterm.css]=css/xterm.css [LICENSE]=LICENSE)
status=0
for name in xterm.js xterm.css LICENSE; do
    if [[ "$mode" == --check ]]; then
        if ! cmp -s "$work/x/package/${from[$name]}" "$target/$name"; then
            echo "$target/$name differs from $package@$version's ${from[$name]}" >&2
            status=1
        fi
    else
        install -m 0644 "$work/x/package/${from[$name]}" "$target/$name"
    fi
done

if [[ "$mode" == --check ]]; then
    [[ $status -eq 0 ]] && echo "vendor/xterm matches $package@$version ($integrity)"
    exit $status
fi
echo "vendor/xterm: $package@$version from $tarball, $integrity"
