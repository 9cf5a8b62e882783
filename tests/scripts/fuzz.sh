#!/usr/bin/env bash
# A short fuzz run of every cargo-fuzz target in tests/fuzz: event parsing
# and validation, manifest parsing, subscription matching, the config file.
#
#   tests/scripts/fuzz.sh                        # 60 s per target
#   FUZZ_SECONDS=600 tests/scripts/fuzz.sh event # one target, longer
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (`cargo install cargo-fuzz --locked`); CI has neither, so this
# runs by hand. Builds go to target/fuzz, the growing corpus to
# target/fuzz/corpus/<target> (seeded from tests/fuzz/seeds/<target>).
#
# A crash stops the run and leaves the input in target/fuzz/artifacts/<target>/.
# Copy it to tests/fuzz/regressions/<target>/ and fix the bug: from then on
# `cargo test -p hookbox-tests --test hostile fuzz` replays it on stable.
# Environment: FUZZ_SECONDS (60), FUZZ_TOOLCHAIN (nightly),
# FUZZ_SANITIZER (none: the targets are safe Rust, so panics and failed
# checks are what is looked for; `address` to add ASan).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
sanitizer="${FUZZ_SANITIZER:-none}"
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=(event manifest subscription config)
fi

if ! cargo fuzz --version > /dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
if ! rustup run "$toolchain" rustc --version > /dev/null 2>&1; then
    echo "fuzz.sh: toolchain '$toolchain' is missing: rustup toolchain install $toolchain" >&2
    exit 2
fi

work="$root/target/fuzz"
fuzz_dir="$root/tests/fuzz"
cd "$root"
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    inputs=("$corpus" "$fuzz_dir/seeds/$target")
    [[ -d "$fuzz_dir/regressions/$target" ]] && inputs+=("$fuzz_dir/regressions/$target")
    echo "fuzz.sh: $target for ${seconds}s" >&2
    cargo "+$toolchain" fuzz run \
        --fuzz-dir "$fuzz_dir" \
        --target-dir "$work/build" \
        --sanitizer "$sanitizer" \
        "$target" "${inputs[@]}" -- \
        -max_total_time="$seconds" \
        -max_len=65536 \
        -timeout=10 \
        -artifact_prefix="$artifacts/"
done
echo "fuzz.sh: no crash in ${targets[*]}" >&2
