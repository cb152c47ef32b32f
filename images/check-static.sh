#!/usr/bin/env bash
# Builds the two binaries the container image ships, vmi-orchestrator and
# vmi-step, as release binaries for x86_64-unknown-linux-musl (what
# images/Containerfile builds), checks that each is statically linked (no
# program interpreter, no shared library needed) and that it starts, and
# prints its size.
#
# Build output goes to $CARGO_TARGET_DIR when set (CI sets one outside the
# checkout), else to cargo's default target/.
#
# What it needs and installs when missing (as root, on Debian or Ubuntu):
#   - the Rust standard library for the musl target (`rustup target add`);
#   - musl-gcc (Debian's musl-tools): ring compiles C and assembly, and the
#     host's glibc compiler is not a musl one;
#   - readelf (binutils), for the check.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
packages=(vmi-orchestrator vmi-step-runner)
binaries=(vmi-orchestrator vmi-step)

say() { echo "check-static: $*" >&2; }
die() { say "$*"; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed; install Rust with rustup first"

apt_updated=
apt_install() {
    if ! command -v apt-get >/dev/null || [[ $(id -u) != 0 ]]; then
        die "$1 is missing and cannot be installed here (needs root and apt-get): install the package '$2' and run again"
    fi
    say "installing $2 (for $1)"
    if [[ -z $apt_updated ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

# The musl standard library: there when rustc's library directory for the
# target holds libstd.
libdir=$(rustc --print target-libdir --target "$target" 2>/dev/null || true)
if ! compgen -G "$libdir/libstd-*.rlib" >/dev/null; then
    command -v rustup >/dev/null ||
        die "the Rust standard library for $target is missing and rustup is not installed to add it"
    say "adding the Rust target $target"
    rustup target add "$target"
fi

# A C compiler for musl, for ring's C and assembly. cc-rs looks for
# x86_64-linux-musl-gcc, then musl-gcc; a caller's CC_x86_64_unknown_linux_musl
# wins over both.
if [[ -z ${CC_x86_64_unknown_linux_musl:-} ]] &&
    ! command -v x86_64-linux-musl-gcc >/dev/null && ! command -v musl-gcc >/dev/null; then
    apt_install "musl-gcc (a C compiler for $target)" musl-tools
    command -v musl-gcc >/dev/null || die "musl-tools installed but musl-gcc is not on PATH"
fi
command -v readelf >/dev/null || apt_install readelf binutils

started=$(date +%s)
package_args=()
for p in "${packages[@]}"; do package_args+=(-p "$p"); done
say "cargo build --release --locked --target $target ${package_args[*]}"
cargo build --release --locked --target "$target" "${package_args[@]}"
say "built in $(($(date +%s) - started)) s"

out="${CARGO_TARGET_DIR:-target}/$target/release"
failed=0
for name in "${binaries[@]}"; do
    bin="$out/$name"
    [[ -f $bin ]] || die "$bin was not built"
    # A dynamically linked program names its loader (PT_INTERP, shown as
    # "Requesting program interpreter") and its libraries (DT_NEEDED). Rust's
    # musl target links static-pie by default: such a binary has a dynamic
    # section for its own relocations, but neither of these.
    interp=$(readelf --program-headers --wide "$bin" | grep -F 'program interpreter' || true)
    needed=$(readelf --dynamic --wide "$bin" | grep -F '(NEEDED)' || true)
    if [[ -n $interp || -n $needed ]]; then
        say "FAIL: $bin is not statically linked:"
        [[ -z $interp ]] || echo "  $interp" >&2
        [[ -z $needed ]] || echo "$needed" >&2
        failed=1
        continue
    fi
    # It must start on its own: a static binary needs no loader and no libc.
    if [[ $(uname -m) == x86_64 ]]; then
        version=$("$bin" --version) || { say "FAIL: $bin --version exited non-zero"; failed=1; continue; }
    else
        version="(not run: this machine is $(uname -m))"
    fi
    size=$(stat -c %s "$bin")
    awk -v n="$name" -v s="$size" -v v="$version" \
        'BEGIN { printf "check-static: %-17s static, %5.1f MiB  %s\n", n, s / 1048576, v }'
done
((failed == 0)) || die "not every binary is statically linked (see above)"
say "ok: ${binaries[*]} are static $target binaries in $out"
