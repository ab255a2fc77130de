#!/usr/bin/env bash
# Assembles the file tree of berth's runtime images from one built `berth` binary, the same way
# in the Dockerfile's builder stage and for `scripts/build-images.sh --prebuilt`:
#   OUT/rootfs/   owned by root: /usr/local/bin/berth; when the binary is dynamically linked,
#                 exactly the loader and libraries `ldd` names (glibc: libc, libm, libgcc_s,
#                 ld-linux; since glibc 2.34 the files/dns name services live in libc itself);
#                 /etc/ssl/certs/ca-certificates.crt; /etc/passwd, /etc/group (root and
#                 berth 65532:65532); /etc/nsswitch.conf (hosts: files dns); /tmp (1777)
#                 and an empty /var/lib; /usr/sbin/nft and the libraries it loads, listed in
#                 /usr/lib/berth/host-guard.files, from which berth builds its host guard's
#                 image on each engine (README, "Security model"); NFT overrides where nft is
#                 read (default: the first on PATH), NFT=none leaves it out
#   OUT/datadir/berth/  empty: copied into /var/lib, so /var/lib/berth is owned by 65532:65532
# CA_BUNDLE overrides where the CA certificates are read (default /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

if [[ $# -ne 2 || "$1" == "-h" || "$1" == "--help" ]]; then
    echo "usage: deploy/docker/assemble-rootfs.sh BINARY OUT"
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && exit 0
    exit 2
fi
binary="$1"
out="$2"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

if [[ ! -f "$binary" || ! -x "$binary" ]]; then
    echo "error: $binary is not an executable file" >&2
    exit 1
fi
if [[ ! -s "$ca_bundle" ]]; then
    echo "error: no CA certificates at $ca_bundle (Debian: apt-get install -y ca-certificates)" >&2
    exit 1
fi

rm -rf "$out/rootfs" "$out/datadir"
root="$out/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/var/lib" "$out/datadir/berth"
install -m 0755 "$binary" "$root/usr/local/bin/berth"
install -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
install -d -m 1777 "$root/tmp"

# The libraries a dynamically linked binary needs, at the paths the loader looks for them.
# ldd prints "name => /path (addr)" per library and "/path/ld-linux… (addr)" for the loader;
# a static binary gets "not a dynamic executable" / "statically linked" and needs nothing.
ldd_out="$(LC_ALL=C ldd "$binary" 2>&1 || true)"
if [[ "$ldd_out" == *"not found"* ]]; then
    echo "error: $binary needs libraries this machine lacks:" >&2
    echo "$ldd_out" >&2
    exit 1
fi
libs=0
while read -r lib; do
    [[ -n "$lib" ]] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
    libs=$((libs + 1))
done < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$ldd_out" | sort -u)

# The host guard's files: nft and what it loads, at their paths (libc and the loader are shared
# with berth's), listed for berth, which has no ldd to ask inside the image.
nft="${NFT:-$(command -v nft || echo /usr/sbin/nft)}"
if [[ "$nft" != none ]]; then
    if [[ ! -x "$nft" ]]; then
        echo "error: no nft at $nft for the host guard (Debian: apt-get install -y nftables; NFT=none leaves it out)" >&2
        exit 1
    fi
    mkdir -p "$root/usr/sbin" "$root/usr/lib/berth"
    install -m 0755 "$(readlink -f "$nft")" "$root/usr/sbin/nft"
    echo /usr/sbin/nft >"$root/usr/lib/berth/host-guard.files"
    while read -r lib; do
        [[ -n "$lib" ]] || continue
        mkdir -p "$root$(dirname "$lib")"
        [[ -e "$root$lib" ]] || cp -L "$lib" "$root$lib"
        echo "$lib" >>"$root/usr/lib/berth/host-guard.files"
    done < <(LC_ALL=C ldd "$nft" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u)
    chmod 0644 "$root/usr/lib/berth/host-guard.files"
fi

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
berth:x:65532:65532:berth:/var/lib/berth:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
berth:x:65532:
GROUP
# Without this file glibc asks DNS before /etc/hosts; containers expect the files first.
cat >"$root/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"

echo "assembled $out/rootfs: berth + $libs shared libraries + CA certificates"
