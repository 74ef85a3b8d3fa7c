#!/usr/bin/env bash
# A real Asterisk for the integration tests, built offline from a source tarball and cached.
#
#   scripts/asterisk.sh build          build and install (once per tarball); prints the prefix
#   scripts/asterisk.sh prefix         print the cached prefix if built, else exit 1
#   scripts/asterisk.sh config DIR     write a test config (ARI, dialplan, sounds) into DIR
#
# Env: ASTERISK_SRC   the tarball (default ../shared/asterisk/asterisk-23.4.1.tar.gz if present)
#      ASTERISK_CACHE where builds are cached (default ~/.cache/asr-gateway/asterisk)
#      ASTERISK_PREFIX an Asterisk install of your own: `build` and `prefix` just print it
#      JOBS           make -j (default: the number of cores)
# `config` also reads HTTP_PORT (8088), ARI_USER (asrgw), ARI_PASS (change-me), RTP_START and
# RTP_END (10000-19999), and
# FIXTURES (a folder of 16 kHz WAVs installed as 8 kHz `.wav` and 16 kHz `.wav16` sounds).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

default_src="$repo/../shared/asterisk/asterisk-23.4.1.tar.gz"
ASTERISK_SRC="${ASTERISK_SRC:-}"
[ -n "$ASTERISK_SRC" ] || { [ -f "$default_src" ] && ASTERISK_SRC="$(cd "$(dirname "$default_src")" && pwd)/$(basename "$default_src")"; } || true
CACHE="${ASTERISK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/asr-gateway/asterisk}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

# What the tests use: ARI and Stasis, the three externalMedia transports, playback of
# WAV sounds, DTMF, and the dialplan functions of `config`.
MODULES="res_ari res_ari_model res_ari_applications res_ari_asterisk res_ari_bridges
  res_ari_channels res_ari_endpoints res_ari_events res_ari_playbacks res_ari_recordings
  res_ari_sounds res_ari_device_states res_ari_mailboxes
  res_stasis res_stasis_answer res_stasis_playback res_stasis_recording res_stasis_snoop
  res_stasis_device_state res_stasis_mailbox res_mwi_external
  res_http_websocket res_websocket_client res_audiosocket res_rtp_asterisk
  res_timing_timerfd res_sorcery_config res_sorcery_memory res_sorcery_astdb
  res_format_attr_opus res_musiconhold
  chan_rtp chan_audiosocket chan_websocket chan_bridge_media
  bridge_simple bridge_softmix bridge_holding bridge_builtin_features bridge_native_rtp
  app_playback app_stasis app_senddtmf app_verbose app_exec app_echo
  codec_ulaw codec_alaw codec_a_mu codec_resample format_wav format_pcm format_sln
  func_logic func_channel func_strings func_global pbx_config"

die() { echo "asterisk.sh: $*" >&2; exit 1; }
# Exit code 3: there is no source to build from (the tests skip, saying so).
no_source() { echo "asterisk.sh: $*" >&2; exit 3; }

# The install folder for this tarball (by content, so a new tarball builds anew).
install_dir() {
  [ -n "$ASTERISK_SRC" ] || no_source "no Asterisk source: set ASTERISK_SRC to an asterisk-*.tar.gz (../shared/asterisk/asterisk-23.4.1.tar.gz is not here)"
  [ -f "$ASTERISK_SRC" ] || no_source "ASTERISK_SRC=$ASTERISK_SRC is not a file"
  local sum
  sum="$(sha256sum "$ASTERISK_SRC" | cut -c1-12)"
  echo "$CACHE/$(basename "$ASTERISK_SRC" .tar.gz)-$sum"
}

deps() {
  local pkgs="build-essential pkg-config libjansson-dev libxml2-dev libsqlite3-dev uuid-dev libedit-dev libssl-dev libncurses-dev sox"
  local missing=()
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "asterisk.sh: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    die "missing build packages; run: sudo apt-get install -y ${missing[*]}"
  fi
}

build() {
  if [ -n "${ASTERISK_PREFIX:-}" ]; then
    [ -x "$ASTERISK_PREFIX/sbin/asterisk" ] || die "ASTERISK_PREFIX=$ASTERISK_PREFIX has no sbin/asterisk"
    echo "$ASTERISK_PREFIX"; return
  fi
  local dir; dir="$(install_dir)"
  if [ -f "$dir/.installed" ]; then echo "$dir/install"; return; fi
  deps
  mkdir -p "$dir"
  # One build at a time (two test binaries may ask at once).
  exec 9>"$dir/.lock"
  flock 9
  if [ -f "$dir/.installed" ]; then echo "$dir/install"; return; fi
  local log="$dir/build.log" began=$SECONDS
  echo "asterisk.sh: building $(basename "$ASTERISK_SRC") into $dir (a few minutes; log $log)" >&2
  rm -rf "$dir/src" "$dir/install"
  mkdir -p "$dir/src"
  tar -xzf "$ASTERISK_SRC" -C "$dir/src" --strip-components=1
  (
    cd "$dir/src"
    ./configure --prefix="$dir/install" --without-pjproject-bundled --without-pjproject \
      --with-jansson-bundled=no --with-libedit --disable-xmldoc
    make menuselect.makeopts
    local ms=menuselect/menuselect c m
    for c in ADDONS APPS BRIDGES CDR CEL CHANNELS CODECS FORMATS FUNCS PBX RES TESTS \
             CORE_SOUNDS MOH EXTRA_SOUNDS; do
      $ms --disable-category "MENUSELECT_$c" menuselect.makeopts
    done
    for m in $MODULES; do $ms --enable "$m" menuselect.makeopts || echo "no module $m"; done
    make -j"$JOBS" NOISY_BUILD=
    make install
  ) >"$log" 2>&1 || { tail -30 "$log" >&2; die "build failed; see $log"; }
  rm -rf "$dir/src"
  touch "$dir/.installed"
  echo "asterisk.sh: built in $((SECONDS - began)) s" >&2
  echo "$dir/install"
}

prefix() {
  if [ -n "${ASTERISK_PREFIX:-}" ]; then echo "$ASTERISK_PREFIX"; return; fi
  local dir; dir="$(install_dir)"
  [ -f "$dir/.installed" ] || die "not built yet: run scripts/asterisk.sh build"
  echo "$dir/install"
}

config() {
  local run="${1:?usage: asterisk.sh config DIR}" prefix
  prefix="$(prefix)"
  mkdir -p "$run"/{etc,log,run,spool,lib,db,sounds}
  run="$(cd "$run" && pwd)"
  local etc="$run/etc" port="${HTTP_PORT:-8088}" user="${ARI_USER:-asrgw}" pass="${ARI_PASS:-change-me}"
  cat >"$etc/asterisk.conf" <<EOF
[directories]
astetcdir => $etc
astmoddir => $prefix/lib/asterisk/modules
astvarlibdir => $run/lib
astdbdir => $run/db
astkeydir => $run/lib
astdatadir => $run/lib
astagidir => $run/lib/agi-bin
astspooldir => $run/spool
astrundir => $run/run
astlogdir => $run/log
astsbindir => $prefix/sbin
[options]
verbose = 3
maxload = 0
EOF
  printf '[modules]\nautoload = yes\n' >"$etc/modules.conf"
  printf '[general]\ndateformat = %%F %%T.%%3q\n[logfiles]\nfull => notice,warning,error,verbose,dtmf\n' >"$etc/logger.conf"
  printf '[general]\nenabled = yes\nbindaddr = 127.0.0.1\nbindport = %s\n' "$port" >"$etc/http.conf"
  printf '[general]\nenabled = yes\npretty = no\n[%s]\ntype = user\nread_only = no\npassword = %s\n' "$user" "$pass" >"$etc/ari.conf"
  # Below the ports the tests give the gateway (20000 and up).
  printf '[general]\nrtpstart = %s\nrtpend = %s\n' "${RTP_START:-10000}" "${RTP_END:-19999}" >"$etc/rtp.conf"
  printf '[general]\nenabled = no\n' >"$etc/manager.conf"
  printf '[general]\nenable = no\n' >"$etc/cdr.conf"
  # Calls are ARI-originated Local channels: ;1 is the call under test, ;2 its far end.
  # Channel variables set by the originator: PLAY_FILE, PLAY_DELAY, PLAY_TAIL, DTMF, HOLD_TAIL.
  cat >"$etc/extensions.conf" <<EOF
[globals]
SOUNDS = $run/sounds

; Stasis mode: the call enters the gateway's app, then logs what it handed back.
[asr-stasis]
exten => s,1,Answer()
 same => n,Stasis(asrgw)
 same => n,Verbose(1,ASRGW-RESULT call=\${UNIQUEID} status=\${ASR_STATUS} error=\${ASR_ERROR} transcript=\${ASR_TRANSCRIPT} stasis=\${STASISSTATUS})
 same => n,Hangup()

; The far end: waits, plays a sound, optionally sends DTMF, then keeps sending silence
; for PLAY_TAIL seconds and hangs up. Like a real caller's RTP, its media never stops:
; Asterisk completes a snoop's hang-up only when a frame passes through the snooped
; channel (the audiohook detaches in the media path), so a Local channel left in Wait()
; would keep a hung-up snoop alive until the call ends.
[asr-play]
exten => s,1,Answer()
 same => n,Wait(\${IF(\$["\${PLAY_DELAY}" = ""]?1:\${PLAY_DELAY})})
 same => n,Playback(\${SOUNDS}/\${PLAY_FILE})
 same => n,ExecIf(\$["\${DTMF}" != ""]?SendDTMF(\${DTMF},250,250))
 same => n,Set(LEFT=\${IF(\$["\${PLAY_TAIL}" = ""]?3:\${PLAY_TAIL})})
 same => n(tail),GotoIf(\$[\${LEFT} <= 0]?done)
 same => n,Playback(\${SOUNDS}/silence-1s)
 same => n,Set(LEFT=\$[\${LEFT} - 1])
 same => n,Goto(tail)
 same => n(done),Hangup()

; Listen mode: the call stays in the dialplan (the gateway taps it from outside), and
; may say something itself (PLAY_FILE2), heard on its far end.
[asr-hold]
exten => s,1,Answer()
 same => n,Wait(\${IF(\$["\${PLAY_DELAY}" = ""]?1:\${PLAY_DELAY})})
 same => n,ExecIf(\$["\${PLAY_FILE2}" != ""]?Playback(\${SOUNDS}/\${PLAY_FILE2}))
 same => n,Wait(\${IF(\$["\${HOLD_TAIL}" = ""]?20:\${HOLD_TAIL})})
 same => n,Hangup()
EOF
  sox -n -r 8000 -c 1 -b 16 "$run/sounds/silence-1s.wav" trim 0 1
  local w n
  for w in ${FIXTURES:+"$FIXTURES"/*.wav}; do
    n="$(basename "$w" .wav)"
    sox "$w" -r 8000 -c 1 -b 16 "$run/sounds/$n.wav"
    sox "$w" -r 16000 -c 1 -b 16 -t wav "$run/sounds/$n.wav16"
  done
  echo "$run"
}

case "${1:-}" in
  build) build ;;
  prefix) prefix ;;
  config) shift; config "$@" ;;
  *) echo "usage: $0 build | prefix | config DIR" >&2; exit 2 ;;
esac
