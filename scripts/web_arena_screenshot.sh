#!/usr/bin/env bash
# The web arena and a native arena in one lobby (issue 16 §4.5). A matchmaker on a free
# loopback port; player 1 is the native `arena` under Xvfb (it creates the lobby: red);
# player 2 is the web arena (Bevy on WebGL2, Squadlink in wasm32) in headless Chromium with
# software WebGL (SwiftShader): it joins by code (blue). Both move by themselves. Chromium's
# screenshot (taken through DevTools after the page has played a while) must show the native
# player's red square beside its own blue one, and the native screenshot the browser
# player's blue square.
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
step "web arena: building the native arena, the matchmaker and the page screenshooter" \
  cargo build --locked -q -p squadlink-bevy-examples --bin arena -p squadlink-matchmaker -p squadlink-testkit --bin page_screenshot
bin=$CARGO_TARGET_DIR/debug

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

echo "== player 1 (native) creates a lobby"
xvfb-run -a -s "-screen 0 1024x768x24" "$bin/arena" --matchmaker "$url" --autopilot \
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
page="http://127.0.0.1:$web_port/?matchmaker=$url&lobby=$code&autopilot=1"
"$bin/page_screenshot" "$page" "$out/browser.png" --wait 20 --hold 15 --size 800x600
wait "$native"
echo "== the web arena's time to interactive (its page clock, from opening the page):"
sed -n 's/.*web_arena milestone: \([^%]* ms\).*/  \1/p' "$out/browser.log"

echo "== checking the screenshots (Debian's python3, with python3-pil)"
/usr/bin/python3 - "$out" <<'PY'
import sys
from PIL import Image
RED, BLUE = (242, 51, 51), (51, 115, 242)
def count(img, rgb, tol=14):
    return sum(1 for p in img.getdata() if all(abs(a - b) <= tol for a, b in zip(p[:3], rgb)))
ok = True
for name in ("browser", "native"):
    path = f"{sys.argv[1]}/{name}.png"
    img = Image.open(path).convert("RGB")
    red, blue = count(img, RED), count(img, BLUE)
    seen = red > 2000 and blue > 2000
    print(f"{path}: {img.size[0]}x{img.size[1]}, red (native player) {red} px, blue (browser player) {blue} px -> {'both squares visible' if seen else 'MISSING A SQUARE'}")
    ok &= seen
if not ok:
    print(f"(the page's console is in {sys.argv[1]}/browser.log)")
sys.exit(0 if ok else 1)
PY
