// A Squadlink peer in plain browser JavaScript, written from docs/wire.md and
// docs/protocol.md alone: the browser's own WebSocket and RTCPeerConnection, no SDP munging.
// It is the browser side of Squadlink's browser tests (testkit/src/browser.rs drives it):
// it takes commands from GET /poll and reports what happens to POST /event.
//
// Commands ({"do": ...}):
//   join     {url, player, code | max_members, channels, media, wire, lifetime_ms,
//             relay_only, check}  join (or create) a lobby and connect to its members
//   send     {peer, channel, size, seed}  a patterned message on a channel
//   describe {peer}   transceivers, m-lines, SCTP limit and the candidate pair in use
//   refuse   {peer, reason, message}  a `refused` signal
//   leave    {}       leave the lobby politely and close every connection
//   close    {}       close every connection and the matchmaker link at once
//   mic      {}       send the microphone (getUserMedia) on every connection
//   record   {peer, seconds}  record the peer's audio (reported as `recorded`, 16-bit PCM)
//   echo     {on}     send back whatever arrives on unreliable channels
//   rtt      {peer, channel, count}  sequential 64-byte round trips (reported as `rtt`)
//   camera   {}       send the camera likewise
// Events ({"event": ...}): ready, joined, connected, message, channel_error,
// channel_close, bye, peer_left, refused, offer, offered, answer, ice, pc, channel_open,
// local_candidate, track, media, described,
// mm_error, mm_closed, exception.
"use strict";

const WIRE_VERSION = "1";
const PING = 1, PONG = 2, BYE = 4;
const WHOLE = 0, FRAGMENT = 1;
const BODY = 16384;


const KINDS = {
  unreliable: { ordered: false, lifetime: true, framing: "none" },
  unreliable_sequenced: { ordered: false, lifetime: true, framing: "sequenced" },
  reliable_ordered: { ordered: true, lifetime: false, framing: "reliable" },
  reliable_unordered: { ordered: false, lifetime: false, framing: "reliable" },
};

const state = {
  ws: null, me: null, code: null, opts: null, iceServers: [],
  rid: 1, peers: new Map(), members: new Map(), media: [],
  // Echo what arrives on unreliable channels (a round-trip partner), and the reply a
  // round-trip measurement waits for.
  echo: false, awaitingReply: null,
};

function mm(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}
function signal(to, data) { mm({ type: "signal", to, data }); }

function fingerprint(sdp) {
  const m = /a=fingerprint:([^\r\n]+)/.exec(sdp);
  return m ? m[1].trim() : null;
}
function mlines(sdp) {
  return sdp.split(/\r?\n/).filter((l) => l.startsWith("m=")).map((l) => l.slice(2).split(" ")[0]);
}

// One connection to one peer (section 2 of wire.md).
class Conn {
  constructor(peer, offerer) {
    this.peer = peer;
    this.offerer = offerer;
    this.remoteFingerprint = null;
    this.pending = [];
    this.opened = 0;
    this.announced = false;
    this.closed = false;
    this.seqOut = new Map();
    this.seqIn = new Map();
    this.partial = new Map();
    this.nextId = 1;
    this.pingSeq = 0;
    this.pc = new RTCPeerConnection({
      iceServers: state.iceServers,
      iceTransportPolicy: state.opts.relay_only ? "relay" : "all",
    });
    const kinds = state.opts.channels.split(",");
    const lifetime = state.opts.lifetime_ms || 500;
    this.channels = kinds.map((k, i) => this.channel(`squadlink-${i}`, i, KINDS[k] || KINDS.unreliable, lifetime, k));
    this.control = this.channel("squadlink-control", kinds.length, KINDS.unreliable, lifetime, "control");
    this.pc.onicecandidate = (e) => {
      if (e.candidate) {
        post({ event: "local_candidate", peer, candidate: e.candidate.candidate });
        signal(peer, {
          kind: "candidate",
          candidate: e.candidate.candidate,
          sdp_mid: e.candidate.sdpMid,
          sdp_mline_index: e.candidate.sdpMLineIndex,
          username_fragment: e.candidate.usernameFragment,
        });
      } else {
        signal(peer, { kind: "end_of_candidates" });
      }
    };
    this.pc.oniceconnectionstatechange = () => post({ event: "ice", peer, state: this.pc.iceConnectionState });
    this.pc.onconnectionstatechange = () => post({ event: "pc", peer, state: this.pc.connectionState });
    this.pc.ontrack = (e) => {
      post({ event: "track", peer, kind: e.track.kind });
    };
    for (const track of state.media) this.pc.addTrack(track);
    if (offerer && state.opts.media) {
      if (!state.media.some((t) => t.kind === "audio")) this.pc.addTransceiver("audio", { direction: "sendrecv" });
      if (!state.media.some((t) => t.kind === "video")) this.pc.addTransceiver("video", { direction: "sendrecv" });
    }
    this.pinger = setInterval(() => this.ping(), 500);
  }

  channel(label, id, kind, lifetime, name) {
    const init = { negotiated: true, id, ordered: kind.ordered };
    if (kind.lifetime) init.maxPacketLifeTime = lifetime;
    const dc = this.pc.createDataChannel(label, init);
    dc.binaryType = "arraybuffer";
    dc.onopen = () => {
      if (this.opened === 0) post({ event: "channel_open", peer: this.peer, channel: id });
      this.opened++;
      this.ping();
      this.maybeAnnounce();
    };
    dc.onerror = (e) => post({ event: "channel_error", peer: this.peer, channel: id, error: String(e.error && e.error.message) });
    dc.onclose = () => post({ event: "channel_close", peer: this.peer, channel: id });
    dc.onmessage = (e) => this.received(id, name, kind, new Uint8Array(e.data));
    return dc;
  }

  maybeAnnounce() {
    if (!this.announced && this.opened === this.channels.length + 1 && this.heard) {
      this.announced = true;
      post({ event: "connected", peer: this.peer });
    }
  }

  async offer() {
    await this.pc.setLocalDescription();
    signal(this.peer, { kind: "offer", sdp: this.pc.localDescription.sdp });
    post({ event: "offered", peer: this.peer });
  }

  async onOffer(sdp) {
    this.remoteFingerprint = fingerprint(sdp);
    post({ event: "offer", peer: this.peer, mlines: mlines(sdp) });
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    await this.flushCandidates();
    await this.pc.setLocalDescription();
    signal(this.peer, { kind: "answer", sdp: this.pc.localDescription.sdp });
  }

  async onAnswer(sdp) {
    post({ event: "answer", peer: this.peer });
    this.remoteFingerprint = fingerprint(sdp);
    await this.pc.setRemoteDescription({ type: "answer", sdp });
    await this.flushCandidates();
  }

  async onCandidate(c) {
    const init = { candidate: c.candidate, sdpMid: c.sdp_mid, sdpMLineIndex: c.sdp_mline_index, usernameFragment: c.username_fragment };
    if (!this.pc.remoteDescription) {
      this.pending.push(init);
      return;
    }
    await this.pc.addIceCandidate(init).catch((e) => console.log("candidate refused", e));
  }

  async flushCandidates() {
    const pending = this.pending;
    this.pending = [];
    for (const c of pending) await this.pc.addIceCandidate(c).catch((e) => console.log("candidate refused", e));
  }

  ping() {
    if (this.control.readyState !== "open") return;
    const f = new DataView(new ArrayBuffer(13));
    f.setUint8(0, PING);
    f.setUint32(1, this.pingSeq++);
    f.setBigUint64(5, BigInt(Math.round(performance.now() * 1000)));
    this.control.send(f.buffer);
  }

  received(id, name, kind, bytes) {
    if (name === "control") {
      this.heard = true;
      this.maybeAnnounce();
      if (bytes[0] === PING && bytes.length >= 13) {
        const pong = bytes.slice(0, 13);
        pong[0] = PONG;
        this.control.send(pong);
      } else if (bytes[0] === BYE) {
        // The peer is leaving: close every channel (each end then sees it close).
        post({ event: "bye", peer: this.peer });
        for (const dc of this.channels.concat([this.control])) dc.close();
      }
      return;
    }
    if (kind.framing === "none") {
      if (state.awaitingReply) {
        const done = state.awaitingReply;
        state.awaitingReply = null;
        done();
        return;
      }
      if (state.echo) {
        this.channels[id].send(bytes);
        return;
      }
    }
    let payload = bytes;
    if (kind.framing === "sequenced") {
      if (bytes.length < 4) return;
      const seq = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0);
      const last = this.seqIn.get(id);
      if (last !== undefined && ((seq - last) >>> 0) >= 0x80000000) return;
      if (last !== undefined && seq === last) return;
      this.seqIn.set(id, seq);
      payload = bytes.subarray(4);
    } else if (kind.framing === "reliable") {
      if (bytes[0] === WHOLE) {
        payload = bytes.subarray(1);
      } else if (bytes[0] === FRAGMENT && bytes.length >= 9) {
        const v = new DataView(bytes.buffer, bytes.byteOffset);
        const msg = v.getUint32(1), index = v.getUint16(5), count = v.getUint16(7);
        const key = `${id}/${msg}`;
        let p = this.partial.get(key);
        if (!p) {
          p = { parts: new Array(count), got: 0 };
          this.partial.set(key, p);
        }
        if (index >= count || p.parts[index]) return;
        p.parts[index] = bytes.slice(9);
        if (++p.got < count) return;
        this.partial.delete(key);
        const total = p.parts.reduce((n, part) => n + part.length, 0);
        payload = new Uint8Array(total);
        let at = 0;
        for (const part of p.parts) {
          payload.set(part, at);
          at += part.length;
        }
      } else {
        return;
      }
    }
    post({ event: "message", peer: this.peer, channel: id, len: payload.length, sum: fnv1a(payload) });
  }

  send(channel, bytes) {
    const dc = this.channels[channel];
    const kind = KINDS[state.opts.channels.split(",")[channel]];
    if (kind.framing === "none") {
      dc.send(bytes);
    } else if (kind.framing === "sequenced") {
      const seq = (this.seqOut.get(channel) || 0) + 1;
      this.seqOut.set(channel, seq);
      const f = new Uint8Array(4 + bytes.length);
      new DataView(f.buffer).setUint32(0, seq);
      f.set(bytes, 4);
      dc.send(f);
    } else if (bytes.length <= BODY) {
      const f = new Uint8Array(1 + bytes.length);
      f[0] = WHOLE;
      f.set(bytes, 1);
      dc.send(f);
    } else {
      const id = this.nextId++;
      const count = Math.ceil(bytes.length / BODY);
      for (let i = 0; i < count; i++) {
        const body = bytes.subarray(i * BODY, Math.min(bytes.length, (i + 1) * BODY));
        const f = new Uint8Array(9 + body.length);
        const v = new DataView(f.buffer);
        v.setUint8(0, FRAGMENT);
        v.setUint32(1, id);
        v.setUint16(5, i);
        v.setUint16(7, count);
        f.set(body, 9);
        dc.send(f);
      }
    }
  }

  async describe() {
    let path = null;
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        const local = pair && stats.get(pair.localCandidateId);
        const remote = pair && stats.get(pair.remoteCandidateId);
        path = { local: local && local.candidateType, remote: remote && remote.candidateType };
      }
    });
    let rtp = {};
    stats.forEach((s) => {
      if (s.type === "inbound-rtp") rtp[s.kind] = { packets: s.packetsReceived, frames: s.framesDecoded, width: s.frameWidth, height: s.frameHeight, codec: s.codecId && stats.get(s.codecId) ? stats.get(s.codecId).mimeType : null };
    });
    return {
      peer: this.peer,
      transceivers: this.pc.getTransceivers().map((t) => ({ kind: t.receiver.track.kind, mid: t.mid, direction: t.direction, current: t.currentDirection })),
      local_mlines: this.pc.localDescription ? mlines(this.pc.localDescription.sdp) : [],
      remote_mlines: this.pc.remoteDescription ? mlines(this.pc.remoteDescription.sdp) : [],
      max_message_size: this.pc.sctp ? this.pc.sctp.maxMessageSize : null,
      path,
      rtp,
    };
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    this.pc.close();
  }
}

function connectTo(peer, offerer) {
  const old = state.peers.get(peer);
  if (old) old.close();
  const c = new Conn(peer, offerer);
  state.peers.set(peer, c);
  if (offerer) c.offer();
  return c;
}

// Whether a member can be connected to (wire.md section 1), when the test asks the page to
// check like a careful implementer would.
function compatible(member) {
  if (!state.opts.check) return true;
  const data = member.data || {};
  return data["squadlink.channels"] === state.opts.channels;
}

async function onSignal(from, data) {
  let c = state.peers.get(from);
  switch (data.kind) {
    case "offer":
      if (c && c.remoteFingerprint && c.remoteFingerprint !== fingerprint(data.sdp)) c = null;
      if (!c) c = connectTo(from, false);
      await c.onOffer(data.sdp);
      break;
    case "answer":
      if (c) await c.onAnswer(data.sdp);
      break;
    case "candidate":
      if (c) await c.onCandidate(data);
      break;
    case "end_of_candidates":
      break;
    case "refused":
      post({ event: "refused", peer: from, reason: data.reason, message: data.message });
      break;
    default:
      post({ event: "signal", peer: from, data });
  }
}

function onMatchmaker(msg) {
  switch (msg.type) {
    case "welcome":
      state.me = msg.peer_id;
      const data = { "squadlink.channels": state.opts.channels };
      if (state.opts.wire !== null) data["squadlink.wire"] = state.opts.wire || WIRE_VERSION;
      if (state.opts.code) {
        mm({ type: "join_lobby", rid: state.rid++, code: state.opts.code, member_data: data });
      } else {
        mm({ type: "create_lobby", rid: state.rid++, max_members: state.opts.max_members || 8, member_data: data });
      }
      break;
    case "lobby_joined":
      state.code = msg.lobby.code;
      state.iceServers = msg.ice_servers || [];
      post({ event: "joined", me: state.me, code: state.code, members: msg.lobby.members.map((m) => m.peer_id) });
      // The later joiner offers: we offer to everyone already there.
      for (const m of msg.lobby.members) {
        state.members.set(m.peer_id, m);
        if (m.peer_id !== state.me && compatible(m)) connectTo(m.peer_id, true);
      }
      break;
    case "peer_joined":
      state.members.set(msg.peer.peer_id, msg.peer);
      break;
    case "peer_left": {
      const c = state.peers.get(msg.peer_id);
      post({ event: "peer_left", peer: msg.peer_id, reason: msg.reason });
      if (c) c.close();
      state.peers.delete(msg.peer_id);
      break;
    }
    case "signal":
      onSignal(msg.from, msg.data).catch((e) => post({ event: "exception", message: `signal ${msg.data.kind}: ${e}`, stack: String(e.stack) }));
      break;
    case "ice_servers":
      state.iceServers = msg.ice_servers || [];
      break;
    case "error":
      post({ event: "mm_error", code: msg.code, message: msg.message });
      break;
  }
}

async function media(kind) {
  // No echo cancelling, noise suppression or gain control: the test compares what was
  // captured with what the other side heard.
  const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  const stream = await navigator.mediaDevices.getUserMedia(kind === "audio" ? { audio } : { video: { width: 320, height: 240, frameRate: 15 } });
  for (const track of stream.getTracks()) {
    state.media.push(track);
    for (const c of state.peers.values()) {
      const t = c.pc.getTransceivers().find((t) => t.receiver.track.kind === track.kind);
      if (t) {
        t.direction = "sendrecv";
        await t.sender.replaceTrack(track);
      }
    }
  }
  post({ event: "media", kind });
}

// Records `seconds` of the audio coming from `peer` (Web Audio at 48 kHz) and reports it
// as 16-bit PCM in base64. (Chrome only feeds a remote track to Web Audio while a media
// element plays it too, so a muted one does.)
async function record(peer, seconds) {
  const c = state.peers.get(peer);
  if (!c) throw new Error(`record: no connection to ${peer}`);
  const receiver = c.pc.getReceivers().find((r) => r.track.kind === "audio");
  if (!receiver) throw new Error("record: no audio receiver");
  const stream = new MediaStream([receiver.track]);
  const element = new Audio();
  element.muted = true;
  element.srcObject = stream;
  element.play().catch(() => {});
  const ctx = new AudioContext({ sampleRate: 48000 });
  await ctx.resume();
  const source = ctx.createMediaStreamSource(stream);
  const tap = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  tap.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  source.connect(tap);
  tap.connect(ctx.destination);
  post({ event: "recording", peer });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  tap.disconnect();
  source.disconnect();
  await ctx.close();
  const n = chunks.reduce((sum, ch) => sum + ch.length, 0);
  const pcm = new Int16Array(n);
  let at = 0;
  for (const ch of chunks) for (const s of ch) pcm[at++] = Math.max(-32768, Math.min(32767, Math.round(s * 32767)));
  const bytes = new Uint8Array(pcm.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  post({ event: "recorded", peer, rate: 48000, samples: n, pcm: btoa(text) });
}

// `count` sequential 64-byte round trips, each timed in microseconds (the rig isolates the
// page, so its clock is fine-grained; 100 µs otherwise) and given up after 1 s: `send`
// sends a ping, `onReply(f)` makes `f` run on the echo (`null`: nothing runs).
async function roundTrips(count, send, onReply) {
  const ping = pattern(64, 1);
  const samples = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const answered = await new Promise((resolve) => {
      const timer = setTimeout(() => { onReply(null); resolve(false); }, 1000);
      onReply(() => { clearTimeout(timer); resolve(true); });
      send(ping);
    });
    if (answered) samples.push(Math.round((performance.now() - t0) * 1000));
  }
  return samples;
}

// `count` round trips to `peer` on unreliable channel `channel` (the peer echoes).
async function rtt(peer, channel, count) {
  const c = state.peers.get(peer);
  if (!c) throw new Error(`rtt: no connection to ${peer}`);
  const samples = await roundTrips(count, (ping) => c.channels[channel].send(ping), (f) => { state.awaitingReply = f; });
  post({ event: "rtt", peer, samples, lost: count - samples.length });
}

// Chrome alone, the floor under any browser peer: two connections in this page, handed each
// other's offer, answer and candidates directly (no matchmaker, no network between them but
// loopback), one negotiated unreliable channel as in the wire contract, and with `media`
// the audio and video m-lines the peers negotiate. Reports each connect (from creating the
// connections to both channels open) and each side's time in its own description calls in
// milliseconds, then `pings` sequential 64-byte round trips between them in microseconds
// (the second echoes).
async function floor(connects, pings, media) {
  const connectMs = [];
  const offerSideMs = [];
  const answerSideMs = [];
  let samples = [];
  for (let i = 0; i < connects; i++) {
    const t0 = performance.now();
    const a = new RTCPeerConnection();
    const b = new RTCPeerConnection();
    const options = { negotiated: true, id: 0, ordered: false, maxRetransmits: 0 };
    const ca = a.createDataChannel("floor", options);
    const cb = b.createDataChannel("floor", options);
    if (media) {
      // The audio and video m-lines every other row negotiates (as `join` with `media`).
      a.addTransceiver("audio", { direction: "sendrecv" });
      a.addTransceiver("video", { direction: "sendrecv" });
    }
    a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate).catch(() => {});
    b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate).catch(() => {});
    const open = (c) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("floor: a channel did not open within 10 s")), 10000);
      c.onopen = () => { clearTimeout(timer); resolve(); };
    });
    const opened = Promise.all([open(ca), open(cb)]);
    // Each side's own description calls, timed apart: the least any browser peer spends
    // on its part of the offer and answer before ICE, DTLS and SCTP even begin.
    const t1 = performance.now();
    await a.setLocalDescription();
    const t2 = performance.now();
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription();
    const t3 = performance.now();
    await a.setRemoteDescription(b.localDescription);
    const t4 = performance.now();
    offerSideMs.push(t2 - t1 + (t4 - t3));
    answerSideMs.push(t3 - t2);
    await opened;
    connectMs.push(performance.now() - t0);
    if (i + 1 === connects) {
      ca.binaryType = cb.binaryType = "arraybuffer";
      cb.onmessage = (e) => cb.send(e.data);
      let reply = null;
      ca.onmessage = () => reply && reply();
      samples = await roundTrips(pings, (ping) => ca.send(ping), (f) => { reply = f; });
    }
    a.close();
    b.close();
  }
  post({ event: "floor", connect_ms: connectMs, offer_side_ms: offerSideMs, answer_side_ms: answerSideMs, samples, lost: pings - samples.length, isolated: self.crossOriginIsolated });
}

async function run(cmd) {
  switch (cmd.do) {
    case "join":
      post({ event: "joining" });
      state.opts = cmd;
      state.ws = new WebSocket(cmd.url);
      state.ws.onopen = () => {
        post({ event: "ws_open" });
        mm({ type: "hello", rid: state.rid++, player_id: cmd.player });
      };
      state.ws.onmessage = (e) => onMatchmaker(JSON.parse(e.data));
      state.ws.onclose = (e) => post({ event: "mm_closed", code: e.code, reason: e.reason });
      break;
    case "send": {
      const c = state.peers.get(cmd.peer);
      if (!c) throw new Error(`send: no connection to ${cmd.peer}`);
      c.send(cmd.channel, pattern(cmd.size, cmd.seed || 0));
      post({ event: "sent", peer: cmd.peer, channel: cmd.channel, size: cmd.size });
      break;
    }
    case "refuse":
      signal(cmd.peer, { kind: "refused", reason: cmd.reason, message: cmd.message });
      break;
    case "describe": {
      const c = state.peers.get(cmd.peer);
      post(Object.assign({ event: "described" }, c ? await c.describe() : { peer: cmd.peer, missing: true }));
      break;
    }
    case "leave":
      mm({ type: "leave_lobby", rid: state.rid++ });
      for (const c of state.peers.values()) c.close();
      state.peers.clear();
      if (state.ws) {
        const ws = state.ws;
        ws.onclose = null;
        state.ws = null;
        ws.close();
      }
      post({ event: "left" });
      break;
    case "echo":
      state.echo = !!cmd.on;
      break;
    case "rtt":
      rtt(cmd.peer, cmd.channel || 0, cmd.count).catch((e) => post({ event: "exception", message: `rtt: ${e}`, stack: String(e.stack) }));
      break;
    case "floor":
      floor(cmd.connects, cmd.pings, !!cmd.media).catch((e) => post({ event: "exception", message: `floor: ${e}`, stack: String(e.stack) }));
      break;
    case "close":
      for (const c of state.peers.values()) c.close();
      state.peers.clear();
      if (state.ws) state.ws.close();
      post({ event: "closed" });
      break;
    case "mic":
      await media("audio");
      break;
    case "record":
      record(cmd.peer, cmd.seconds).catch((e) => post({ event: "exception", message: `record: ${e}`, stack: String(e.stack) }));
      break;
    case "camera":
      await media("video");
      break;
    default:
      throw new Error(`unknown command ${cmd.do}`);
  }
}


serveCommands(run);
