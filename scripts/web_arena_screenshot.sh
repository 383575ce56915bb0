#!/usr/bin/env bash
# The web arena and a native arena in one lobby (issue 16 §4.5). A matchmaker on a free
# loopback port; player 1 is the native `arena` under Xvfb (it creates the lobby: red);
# player 2 is the web arena (Bevy on WebGL2, Squadlink in wasm32) in headless Chromium with
# software WebGL (SwiftShader): it joins by code (blue). Both move by themselves, both talk
# (open mic: speech from espeak-ng, the browser's through Chromium's fake capture) and both
# send the test pattern as video. Chromium's screenshot (taken through DevTools after the
# page has played a while) must show the native player's red square beside its own blue
# one, the yellow speaking frame (the native player's voice, played and measured by the
# SDK's Web Audio) and the native player's video tile; the native screenshot likewise the
# browser player's square, speaking frame and video (its canvas-drawn test pattern).
# Usage: scripts/web_arena_screenshot.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
source scripts/env.sh
source scripts/steps.sh

out=${1:-$CARGO_TARGET_DIR/web-arena-screenshots}
mkdir -p "$out"
rm -f "$out"/*.png
bash scripts/web.sh arena --no-serve
site="${WASM_TARGET_DIR:-$HOME/.cache/squadlink/wasm-target}/web-arena"
bin=$CARGO_TARGET_DIR/debug
# From the test command, the native arena and the matchmaker are the workspace build's
# (see arena_screenshot.sh): only the page screenshooter is built here.
if [ "${SQUADLINK_WORKSPACE_BUILT:-0}" = 1 ] && [ -x "$bin/arena" ] && [ -x "$bin/squadlink-matchmaker" ]; then
  step "web arena: building the page screenshooter" \
    cargo build --locked -q -p squadlink-testkit --bin page_screenshot
else
  step "web arena: building the native arena, the matchmaker and the page screenshooter" \
    cargo build --locked -q -p squadlink-bevy-examples --bin arena -p squadlink-matchmaker -p squadlink-testkit --bin page_screenshot
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}
mm_port=$(free_port)
"$bin/squadlink-matchmaker" --listen "127.0.0.1:$mm_port" 2>"$out/matchmaker.log" &
pids=("$!")
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port "$mm_port"
url="ws://127.0.0.1:$mm_port/v1"

web_port=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$site" "$web_port" >"$out/http.log" 2>&1 &
pids+=("$!")
wait_port "$web_port"

# Speech for both players' microphones, long enough to last past both screenshots (the
# native player plays it once; Chromium's fake capture loops it). sox takes out every pause
# longer than 50 ms: the sentence ends and the repeats' joins left 0.4 s of silence every
# 8 s, longer than the speaking frame's 300 ms hangover, so a screenshot landing there
# showed no frame (it did once in CI). Without them the frame stays on while the voice flows.
step "web arena: making a speech fixture (espeak-ng, sox)" bash -c "
  espeak-ng -s 160 -g 0 -w '$out/speech-22k.wav' 'squadlink carries voices between the browser and the native arena while the squares move around and the players talk without a pause' &&
  sox '$out/speech-22k.wav' -r 48000 -c 1 -b 16 '$out/speech.wav' silence 1 0.02 1% -1 0.05 1% gain -n -3 repeat 5"

echo "== player 1 (native) creates a lobby"
xvfb-run -a -s "-screen 0 1024x768x24" "$bin/arena" --matchmaker "$url" --autopilot \
  --voice-input "$out/speech.wav" --open-mic --test-pattern \
  --screenshot "$out/native.png" --exit-after 18 >"$out/native.out" 2>"$out/native.log" &
native=$!
pids+=("$native")
code=""
for _ in $(seq 300); do
  code=$(sed -n 's/^LOBBY //p' "$out/native.out" | head -n1)
  [ -n "$code" ] && break
  sleep 0.1
done
if [ -z "$code" ]; then
  echo "the native arena did not enter a lobby; its log:"; tail -20 "$out/native.log"; exit 1
fi
# Both screenshots while the other player still plays: the browser's 20 s after its page
# opened (its wasm compiles first), then it stays 15 s more; the native one 18 s after the
# browser connected, and it plays 2 s more.
echo "== player 2 (browser) joins lobby $code; screenshot after 20 s"
page="http://127.0.0.1:$web_port/?matchmaker=$url&lobby=$code&autopilot=1&mic=open&video=pattern"
"$bin/page_screenshot" "$page" "$out/browser.png" --wait 20 --hold 15 --size 800x600 \
  --chromium-flag --autoplay-policy=no-user-gesture-required \
  --chromium-flag --use-fake-ui-for-media-stream \
  --chromium-flag --use-fake-device-for-media-stream \
  --chromium-flag "--use-file-for-fake-audio-capture=$out/speech.wav"
wait "$native"
echo "== the web arena's time to interactive (its page clock, from opening the page):"
sed -n 's/.*web_arena milestone: \([^%]* ms\).*/  \1/p' "$out/browser.log"

echo "== checking the screenshots (Debian's python3, with python3-pil)"
/usr/bin/python3 - "$out" <<'PY'
import sys
from PIL import Image
RED, BLUE, SPEAKING = (242, 51, 51), (51, 115, 242), (255, 255, 153)
def count(img, rgb, tol=14):
    return sum(1 for p in img.getdata() if all(abs(a - b) <= tol for a, b in zip(p[:3], rgb)))
ok = True
for name, other in (("browser", "native"), ("native", "browser")):
    path = f"{sys.argv[1]}/{name}.png"
    img = Image.open(path).convert("RGB")
    red, blue = count(img, RED), count(img, BLUE)
    seen = red > 2000 and blue > 2000
    print(f"{path}: {img.size[0]}x{img.size[1]}, red (native player) {red} px, blue (browser player) {blue} px -> {'both squares visible' if seen else 'MISSING A SQUARE'}")
    ok &= seen
    # Both talk, so both frames show: look for the one around the other player's square
    # (within 16 px of its edges).
    other_rgb = BLUE if other == "browser" else RED
    w = img.size[0]
    px = list(img.getdata())
    at = [(i % w, i // w) for i, p in enumerate(px) if all(abs(a - b) <= 14 for a, b in zip(p, other_rgb))]
    ring = 0
    if at:
        # The square's centre (medians: a few pixels of the overlay's text do not move
        # it) and half its side (it is most of those pixels).
        cx, cy = sorted(x for x, _ in at)[len(at) // 2], sorted(y for _, y in at)[len(at) // 2]
        half = int(len(at) ** 0.5 / 2) + 16
        x0, x1, y0, y1 = cx - half, cx + half, cy - half, cy + half
        ring = sum(1 for i, p in enumerate(px)
                   if x0 <= i % w <= x1 and y0 <= i // w <= y1
                   and all(abs(a - b) <= 8 for a, b in zip(p, SPEAKING)))
    talking = ring > 300
    print(f"{path}: speaking frame around the {other} player's square {ring} px -> {f'the {other} player is heard speaking' if talking else 'NO SPEAKING FRAME'}")
    ok &= talking
    # The test pattern's bars: cyan (0, g, b) and magenta (r, 0, b), g ≈ b and r ≈ b
    # (the browser's canvas capture shifts greens by up to ~20 levels).
    cyan = sum(1 for r, g, b in px if r < 40 and g > 100 and b > 100 and abs(g - b) < 32)
    magenta = sum(1 for r, g, b in px if g < 40 and r > 100 and b > 100 and abs(r - b) < 32)
    video = cyan > 300 and magenta > 300
    print(f"{path}: video tile cyan {cyan} px, magenta {magenta} px -> {f'the {other} player video visible' if video else 'NO VIDEO TILE'}")
    ok &= video
if not ok:
    print(f"(the page's console is in {sys.argv[1]}/browser.log)")
sys.exit(0 if ok else 1)
PY
