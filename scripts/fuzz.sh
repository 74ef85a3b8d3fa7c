#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) one after another.
#
#   scripts/fuzz.sh short [TARGET...]   each target for FUZZ_SECONDS (default 20) seconds
#   scripts/fuzz.sh long  [TARGET...]   each target for FUZZ_RUNS (default 10,000,000) inputs
#
# Stable Rust: libFuzzer without a sanitizer (`--sanitizer none`), release build without
# debug assertions (see benches/README.md, Fuzzing). Every run is bounded: -rss_limit_mb and
# -timeout per input.
# The working corpus grows in fuzz/corpus/TARGET (seeded from the committed fuzz/seeds/TARGET),
# crashes land in fuzz/artifacts/TARGET, logs in fuzz/logs; all three are gitignored.
# Exits non-zero if any target crashes, times out or runs out of memory.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
shift || true
all_targets=(rtp session audiosocket ws_media ari_event command)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
case "$mode" in
  short) limit=(-max_total_time="${FUZZ_SECONDS:-20}") ;;
  long) limit=(-runs="${FUZZ_RUNS:-10000000}") ;;
  *) echo "usage: $0 short|long [TARGET...]   (targets: ${all_targets[*]})" >&2; exit 2 ;;
esac
rss_mb="${FUZZ_RSS_MB:-2048}"
timeout_s="${FUZZ_TIMEOUT_S:-10}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  if ! cargo install cargo-fuzz --locked; then
    echo "fuzz: cannot install cargo-fuzz. Install it, then run this again:" >&2
    echo "  cargo install cargo-fuzz --locked" >&2
    exit 1
  fi
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "fuzz: libFuzzer needs a C++ compiler. Install it, then run this again:" >&2
  echo "  apt-get install -y g++" >&2
  exit 1
fi

build=(cargo fuzz build --sanitizer none --release)
echo "fuzz: ${build[*]}"
"${build[@]}"

bin_dir="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
mkdir -p fuzz/logs
failed=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target" artifacts="fuzz/artifacts/$target" log="fuzz/logs/$target-$mode.log"
  mkdir -p "$corpus" "$artifacts"
  run=("$bin_dir/$target" "$corpus" "fuzz/seeds/$target" "${limit[@]}"
    -rss_limit_mb="$rss_mb" -timeout="$timeout_s"
    -max_len=8192 -print_final_stats=1 -artifact_prefix="$artifacts/")
  echo "fuzz: ${run[*]}"
  started=$(date +%s)
  rc=0
  "${run[@]}" >"$log" 2>&1 || rc=$?
  wall=$(($(date +%s) - started))
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  echo "fuzz: $target: $(stat number_of_executed_units) inputs, $(stat average_exec_per_sec) exec/s," \
    "${wall} s, peak RSS $(stat peak_rss_mb) MB, exit $rc (log $log)"
  if [ "$rc" != 0 ]; then
    failed+=("$target")
    grep -E "^(==[0-9]+== ERROR|SUMMARY|thread '.*' panicked)|Test unit written" "$log" | head -5 >&2 || true
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (reproduce: fuzz/target/.../TARGET fuzz/artifacts/TARGET/<file>)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash, timeout or out-of-memory"
