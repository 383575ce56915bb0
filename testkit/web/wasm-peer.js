// The browser side of the wasm tests: the Squadlink SDK itself, compiled to wasm32
// (testkit/web-peer, built by scripts/web.sh peer), driven with the same commands and
// reporting the same events as the JavaScript reference peer (peer.js), through the same
// rig (testkit/src/browser.rs: commands from GET /poll, events to POST /event; rig.js).
//
// Commands ({"do": ...}):
//   join  {url, player, code | max_members, channels, relay_only, echo: {channel}, quiet}
//         enter (or create) a lobby; with `echo`, what arrives on that channel is sent back
//         at once (round-trip benchmarks) instead of being reported; with `quiet`, nothing
//         reads the session (no events, no messages: a game that draws no frames)
//   send  {peer, channel, size, seed}  a patterned message (peer -1: to everyone)
//   stats {peer}   the SDK's stats for the peer (reported as `stats`)
//   leave {}       close the session (it leaves the lobby and says goodbye to every peer)
//   voice {mic, mode}  start the SDK's voice (the microphone when `mic`; mode open, ptt or
//                  vad); its events are reported as `voice` {what}
//   position {peer, x, y, z}  place the peer's voice (we listen at the origin, right is +x)
//   record {seconds}  record the SDK's voice mix (stereo; reported as `recorded`: 16-bit
//                  PCM, left in `pcm`, right in `pcm_right`)
//   voice_stats {peer}, video_stats {peer}  the SDK's media stats (`voice_stats`, `video_stats`)
//   video {input}  start the SDK's video sending `camera`, `pattern` (the test pattern) or
//                  `none`; its events are reported as `video` {what}
//   frame {peer}   the next picture the SDK takes from the peer's video (`frame`: width,
//                  height, frame_id, rgba in base64; `no_frame` after 5 s without one)
// Events ({"event": ...}): ready, joining, joined {me, code}, the SDK's events as the crate reports
// them (connected {peer, path, connect_ms}, peer_joined, peer_left {reason}, error,
// closed, other), message {peer, channel, len, sum}, stats, left, exception.
import init, { WebPeer } from "./pkg/squadlink_web_peer.js";


let peer = null;

// The game's side, as an async game would have it: one loop awaiting the session's events,
// one per channel awaiting its messages (the SDK's own `next_event`/`recv`, no polling).
async function events(p) {
  for (let text; (text = await p.next_event()) !== null; ) post(JSON.parse(text));
}
async function messages(p, channel) {
  for (let m; (m = await p.recv(channel)) !== null; ) {
    const [from, bytes] = m;
    post({ event: "message", peer: from, channel, len: bytes.length, sum: fnv1a(bytes) });
  }
}

// Reports a media pipeline's events (a JSON array from the SDK) every 50 ms.
function pollEvents(take) {
  const tick = () => {
    if (!peer) return;
    for (const e of JSON.parse(take())) post(e);
    setTimeout(tick, 50);
  };
  tick();
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// Records `seconds` of the SDK's voice mix (its Web Audio output node), both channels.
async function record(seconds) {
  const node = peer.voice_output();
  if (!node) throw new Error("record: no voice output");
  const ctx = node.context;
  const tap = ctx.createScriptProcessor(4096, 2, 2);
  const left = [], right = [];
  tap.onaudioprocess = (e) => {
    left.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    right.push(new Float32Array(e.inputBuffer.getChannelData(1)));
  };
  node.connect(tap);
  tap.connect(ctx.destination);
  post({ event: "recording" });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  node.disconnect(tap);
  tap.disconnect();
  const pcm = (chunks) => {
    const n = chunks.reduce((sum, ch) => sum + ch.length, 0);
    const out = new Int16Array(n);
    let at = 0;
    for (const ch of chunks) for (const s of ch) out[at++] = Math.max(-32768, Math.min(32767, Math.round(s * 32767)));
    return base64(new Uint8Array(out.buffer));
  };
  post({ event: "recorded", rate: ctx.sampleRate, pcm: pcm(left), pcm_right: pcm(right) });
}

// Waits up to 5 s for the SDK's next picture from `from`.
async function frame(from) {
  for (let waited = 0; waited < 5000; waited += 20) {
    const f = peer.video_frame(from);
    if (f) {
      post({ event: "frame", peer: from, width: f.width, height: f.height, frame_id: f.frame_id, rgba: base64(f.rgba) });
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  post({ event: "no_frame", peer: from });
}

async function run(cmd) {
  switch (cmd.do) {
    case "join": {
      const code = cmd.code || "";
      const channels = Array.isArray(cmd.channels) ? cmd.channels.join(",") : cmd.channels;
      post({ event: "joining" });
      peer = await WebPeer.join(cmd.url, cmd.player, code, cmd.max_members || 4, channels, !!cmd.relay_only);
      post({ event: "joined", me: peer.id(), code: peer.code() });
      // `quiet`: no loop reads the session at all (a game that draws no frames).
      if (cmd.quiet) break;
      events(peer);
      const n = channels.split(",").filter((c) => c).length;
      for (let c = 0; c < n; c++) if (!cmd.echo || cmd.echo.channel !== c) messages(peer, c);
      if (cmd.echo) peer.echo(cmd.echo.channel);
      break;
    }
    case "send":
      peer.send(cmd.peer, cmd.channel, pattern(cmd.size, cmd.seed));
      break;
    case "stats":
      post({ event: "stats", peer: cmd.peer, stats: JSON.parse(peer.stats(cmd.peer)) });
      break;
    case "leave":
      if (peer) {
        const p = peer;
        peer = null;
        // Not freed: the page's loops still hold it, and end by themselves (`null`) once
        // the session has ended.
        p.leave();
      }
      post({ event: "left" });
      break;
    case "voice":
      peer.voice(!!cmd.mic, cmd.mode || "open");
      pollEvents(() => peer.voice_events());
      break;
    case "position":
      peer.voice_position(cmd.peer, cmd.x || 0, cmd.y || 0, cmd.z || 0);
      break;
    case "record":
      record(cmd.seconds).catch((e) => post({ event: "exception", message: `record: ${e}`, stack: String(e.stack) }));
      break;
    case "voice_stats":
      post({ event: "voice_stats", peer: cmd.peer, stats: JSON.parse(peer.voice_stats(cmd.peer)) });
      break;
    case "video":
      peer.video(cmd.input || "none");
      pollEvents(() => peer.video_events());
      break;
    case "video_stats":
      post({ event: "video_stats", peer: cmd.peer, stats: JSON.parse(peer.video_stats(cmd.peer)) });
      break;
    case "frame":
      frame(cmd.peer).catch((e) => post({ event: "exception", message: `frame: ${e}`, stack: String(e.stack) }));
      break;
    default:
      post({ event: "exception", message: `unknown command ${cmd.do}` });
  }
}


await init();
serveCommands(run);
