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
    default:
      post({ event: "exception", message: `unknown command ${cmd.do}` });
  }
}


await init();
serveCommands(run);
