#!/usr/bin/env bash
# Runs two `arena` players under Xvfb (software Vulkan through Mesa's lavapipe). They meet
# through a matchmaker started here on a free loopback port, move by themselves for a few
# seconds, and each saves a screenshot through Bevy's screenshot API. Both squares, red
# (first player) and blue (second), must be visible in both screenshots. Player 2 talks
# (speech from espeak-ng as its microphone, open mic): player 1's screenshot must show the
# yellow speaking frame around the blue square. Player 2 also sends the test pattern as its
# video: player 1's screenshot must show it (the pattern's cyan and magenta bars).
# Usage: scripts/arena_screenshot.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
source scripts/env.sh

out=${1:-$CARGO_TARGET_DIR/arena-screenshots}
mkdir -p "$out"
rm -f "$out"/player-*.png
bin=$CARGO_TARGET_DIR/debug
# Run from the test command, the workspace's test build has made both (with the features
# the whole workspace unifies); building them here by package would unify others and
# compile Bevy again (about 13 minutes cold).
if [ "${SQUADLINK_WORKSPACE_BUILT:-0}" = 1 ] && [ -x "$bin/arena" ] && [ -x "$bin/squadlink-matchmaker" ]; then
  echo "== arena and the matchmaker: the workspace build's"
else
  echo "== building arena and the matchmaker"
  cargo build --locked -q -p squadlink-bevy-examples --bin arena
  cargo build --locked -q -p squadlink-matchmaker
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/squadlink-matchmaker" --listen "127.0.0.1:$port" 2>"$out/matchmaker.log" &
mm=$!
pids=("$mm")
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
url="ws://127.0.0.1:$port/v1"
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done

echo "== making a speech fixture (espeak-ng, sox)"
espeak-ng -s 160 -g 0 -w "$out/speech-22k.wav" \
  "squadlink carries voices across the arena while the squares move around and around and the players talk and talk without a pause because this is a test of the speaking frame and it should stay on"
# Pauses longer than 50 ms taken out (as in web_arena_screenshot.sh): the frame's 300 ms
# hangover then bridges every gap, wherever the screenshot lands.
sox "$out/speech-22k.wav" -r 48000 -c 1 -b 16 "$out/speech.wav" silence 1 0.02 1% -1 0.05 1% gain -n -3

echo "== player 1 creates a lobby"
xvfb-run -a -s "-screen 0 1024x768x24" "$bin/arena" --matchmaker "$url" --autopilot \
  --screenshot "$out/player-1.png" --exit-after 4 >"$out/player-1.out" 2>"$out/player-1.log" &
pids+=("$!")
code=""
for _ in $(seq 300); do
  code=$(sed -n 's/^LOBBY //p' "$out/player-1.out" | head -n1)
  [ -n "$code" ] && break
  sleep 0.1
done
if [ -z "$code" ]; then
  echo "player 1 did not enter a lobby; its log:"; tail -20 "$out/player-1.log"; exit 1
fi
echo "== player 2 joins lobby $code"
xvfb-run -a -s "-screen 0 1024x768x24" "$bin/arena" --matchmaker "$url" --autopilot --lobby "$code" \
  --voice-input "$out/speech.wav" --open-mic --test-pattern --screenshot "$out/player-2.png" --exit-after 4 >"$out/player-2.out" 2>"$out/player-2.log" &
pids+=("$!")
for pid in "${pids[@]:1}"; do wait "$pid"; done

echo "== checking the screenshots (Debian's python3, with python3-pil)"
/usr/bin/python3 - "$out" <<'PY'
import sys
from PIL import Image
RED, BLUE, SPEAKING = (242, 51, 51), (51, 115, 242), (255, 255, 153)
def count(img, rgb, tol=14):
    return sum(1 for p in img.getdata() if all(abs(a - b) <= tol for a, b in zip(p[:3], rgb)))
ok = True
for n in (1, 2):
    path = f"{sys.argv[1]}/player-{n}.png"
    img = Image.open(path).convert("RGB")
    red, blue = count(img, RED), count(img, BLUE)
    seen = red > 2000 and blue > 2000
    print(f"{path}: {img.size[0]}x{img.size[1]}, red square {red} px, blue square {blue} px -> {'both squares visible' if seen else 'MISSING A SQUARE'}")
    ok &= seen
    if n == 1:
        ring = count(img, SPEAKING, tol=8)
        talking = ring > 800
        print(f"{path}: speaking frame {ring} px -> {'player 2 is speaking' if talking else 'NO SPEAKING FRAME'}")
        ok &= talking
        # The test pattern's bars, shaded towards the bottom: cyan (0, g, b) and magenta
        # (r, 0, b) with g ≈ b and r ≈ b; nothing else in the arena has those colours.
        px = list(img.getdata())
        cyan = sum(1 for r, g, b in px if r < 40 and g > 100 and b > 100 and abs(g - b) < 24)
        magenta = sum(1 for r, g, b in px if g < 40 and r > 100 and b > 100 and abs(r - b) < 24)
        video = cyan > 300 and magenta > 300
        print(f"{path}: video tile cyan {cyan} px, magenta {magenta} px -> {'player 2 video visible' if video else 'NO VIDEO TILE'}")
        ok &= video
sys.exit(0 if ok else 1)
PY
