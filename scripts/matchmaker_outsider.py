#!/usr/bin/env python3
"""An outsider's check of a matchmaker binary: the security and conformance cases of issue 14,
run with nothing but the Python standard library (raw TCP and hand-made WebSocket frames, so
a bare EOF can be told from a close frame). It starts the binary itself on free loopback ports,
one scenario at a time, and prints one JSON object per scenario; it asserts nothing, so it can
be pointed at an older build to see the "before" (the Rust tests in
matchmaker/tests/hardening.rs are the pass/fail checks).

usage: python3 scripts/matchmaker_outsider.py PATH/TO/squadlink-matchmaker LABEL [SCENARIO...]
  e.g. python3 scripts/matchmaker_outsider.py "$CARGO_TARGET_DIR/release/squadlink-matchmaker" now
Scenarios: impostor, impostor_dev_on_allowed, dev_on_with_secret, silent_sockets (needs
prlimit, util-linux), ping_flood, per_player, audience, restart, replaced, malformed,
idle_defaults_silent (~45 s), idle_10_12_silent, idle_5_below_ping_15_answering.
Server logs go to /tmp/squadlink-outsider-LABEL-server.log.
"""
import asyncio, base64, hashlib, hmac, json, os, socket, struct, subprocess, sys, time

if len(sys.argv) < 3:
    sys.exit(__doc__)
BIN, LABEL = sys.argv[1], sys.argv[2]
SECRET = "repro-secret"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(player, ttl=3600, **extra):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": player, "exp": int(time.time()) + ttl, **extra}
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, *args, port=None, nofile=None):
        self.port = port or free_port()
        cmd = [BIN, "--listen", f"127.0.0.1:{self.port}", *args]
        if nofile:
            cmd = ["prlimit", f"--nofile={nofile}:{nofile}", *cmd]
        self.log = open(f"/tmp/squadlink-outsider-{LABEL}-server.log", "ab")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "RUST_LOG": "info"})

    async def ready(self, within=5.0):
        end = time.time() + within
        while time.time() < end:
            if self.p.poll() is not None:
                return False
            try:
                r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                await w.drain()
                data = await asyncio.wait_for(r.read(200), 2)
                w.close()
                if b"200" in data:
                    return True
            except Exception:
                pass
            await asyncio.sleep(0.1)
        return False

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


class WS:
    """A raw WebSocket client: masked frames out, frames or EOF in."""

    @classmethod
    async def open(cls, port, path="/v1", local=None, timeout=5.0):
        self = cls()
        kw = {"local_addr": (local, 0)} if local else {}
        self.r, self.w = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, **kw), timeout)
        key = b64(os.urandom(16)) + "=="
        self.w.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await self.w.drain()
        head = await asyncio.wait_for(self.r.readuntil(b"\r\n\r\n"), timeout)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head.split(b"\r\n")[0].decode())
        return self

    def frame(self, first, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            hdr = bytes([first, 0x80 | n])
        elif n < 65536:
            hdr = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
        return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    async def send(self, obj):
        self.w.write(self.frame(0x81, json.dumps(obj).encode()))
        await self.w.drain()

    async def raw(self, data):
        self.w.write(data)
        await self.w.drain()

    async def recv(self, timeout=3.0, answer_pings=True):
        """('text', obj) | ('close', code, reason) | ('ping',) | ('eof',) | ('timeout',)"""
        try:
            while True:
                h = await asyncio.wait_for(self.r.readexactly(2), timeout)
                op, n = h[0] & 0x0F, h[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", await self.r.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", await self.r.readexactly(8))[0]
                body = await self.r.readexactly(n)
                if op == 1:
                    return ("text", json.loads(body))
                if op == 8:
                    code = struct.unpack(">H", body[:2])[0] if len(body) >= 2 else None
                    return ("close", code, body[2:].decode(errors="replace"))
                if op == 9:
                    if answer_pings:
                        self.w.write(self.frame(0x8A, body))
                        await self.w.drain()
                        continue
                    return ("ping",)
                # pong or other: ignore
        except asyncio.TimeoutError:
            return ("timeout",)
        except (asyncio.IncompleteReadError, ConnectionError):
            return ("eof",)

    async def until(self, pred, timeout=3.0):
        end = time.time() + timeout
        seen = []
        while time.time() < end:
            m = await self.recv(timeout=max(0.05, end - time.time()))
            seen.append(m)
            if m[0] in ("eof", "timeout", "close") or pred(m):
                return m, seen
        return ("timeout",), seen

    async def hello(self, player=None, token=None):
        msg = {"type": "hello", "rid": 1}
        if player:
            msg["player_id"] = player
        if token is not None:
            msg["token"] = token
        await self.send(msg)
        m, _ = await self.until(lambda m: m[0] == "text")
        return m

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


def text_type(m):
    return m[1].get("type") if m[0] == "text" else m[0]


def brief(m):
    if m[0] == "text":
        o = m[1]
        t = o.get("type")
        if t == "error":
            return f"error {o.get('code')}"
        return t
    if m[0] == "close":
        return f"close frame {m[1]} {m[2]!r}"
    return m[0]


async def impostor(*extra):
    s = Server("--auth-secret", SECRET, *extra)
    try:
        await s.ready()
        b = await WS.open(s.port)
        wb = await b.hello(token=mint("B"))
        await b.send({"type": "create_lobby", "rid": 2, "max_members": 4})
        m, _ = await b.until(lambda m: text_type(m) == "lobby_joined")
        code = (m[1].get("lobby") or {}).get("code") if m[0] == "text" else None
        b_peer = wb[1].get("peer_id")
        x = await WS.open(s.port)
        wx = await x.hello(player="B")
        out = {"impostor_hello": brief(wx)}
        if text_type(wx) == "welcome":
            out["impostor_dev_mode"] = wx[1].get("dev_mode")
            await x.send({"type": "join_lobby", "rid": 2, "code": code})
            jm, _ = await x.until(lambda m: m[0] == "text" and m[1].get("rid") == 2)
            out["impostor_join"] = brief(jm)
            if text_type(jm) == "lobby_joined":
                out["impostor_resumed_B_peer_id"] = jm[1].get("resumed_peer_id") == b_peer
            bm, _ = await b.until(lambda m: False, timeout=1.5)
            out["B_then_sees"] = brief(bm)
        return out
    finally:
        s.stop()


async def dev_on_with_secret():
    s = Server("--auth-secret", SECRET, "--dev-mode", "on")
    try:
        up = await s.ready(3)
        return {"started": up, "exit_code": s.p.poll()}
    finally:
        s.stop()
        s.log.flush()


async def silent_sockets():
    s = Server("--max-connections", "100", nofile=256)
    try:
        await s.ready()
        held = []
        # From 30 loopback addresses, 10 each (a per-address cap must not be the only defence).
        for i in range(300):
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", s.port, local_addr=(f"127.0.0.{2 + i // 10}", 0)), 2)
                held.append((r, w))
            except Exception:
                break
        opened = time.time()
        await asyncio.sleep(0.5)
        t0 = time.time()
        first = None
        attempts = 0
        while time.time() - t0 < 12:
            attempts += 1
            try:
                c = await WS.open(s.port, timeout=3)
                m = await c.hello(player="normal")
                c.close()
                if text_type(m) == "welcome":
                    first = time.time() - t0
                    break
            except Exception:
                await asyncio.sleep(0.2)
        await asyncio.sleep(max(0, opened + 7 - time.time()))
        closed = 0
        for r, w in held:
            try:
                d = await asyncio.wait_for(r.read(1), 0.01)
                if d == b"":
                    closed += 1
            except asyncio.TimeoutError:
                pass
            except ConnectionError:
                closed += 1
        for _, w in held:
            w.close()
        return {"silent_sockets_opened": len(held),
                "normal_client_welcome_after_s": None if first is None else round(first, 2),
                "normal_client_attempts": attempts,
                "silent_sockets_closed_by_server_7s_after_opening": closed}
    finally:
        s.stop()


async def ping_flood():
    s = Server()
    try:
        await s.ready()
        c = await WS.open(s.port)
        await c.hello(player="flooder")
        by = await WS.open(s.port)
        await by.hello(player="bystander")
        sent = 0
        t0 = time.time()
        ping = c.frame(0x89, b"")
        ended = None
        try:
            while sent < 20000 and time.time() - t0 < 3:
                c.w.write(ping * 100)
                sent += 100
                await c.w.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            ended = "reset while sending"
        m, seen = await c.until(lambda m: text_type(m) == "error", timeout=3)
        last, _ = await c.until(lambda m: False, timeout=2) if m[0] == "text" else (m, [])
        await by.send({"type": "ping", "nonce": 7})
        bm, _ = await by.until(lambda m: text_type(m) == "pong", timeout=2)
        return {"pings_sent": sent, "seconds": round(time.time() - t0, 1),
                "flooder_told": brief(m), "then": ended or brief(last),
                "bystander_ping": brief(bm)}
    finally:
        s.stop()


async def per_player():
    s = Server()
    try:
        await s.ready()
        conns, admitted, refused = [], 0, []
        for _ in range(20):
            c = await WS.open(s.port)
            m = await c.hello(player="same")
            if text_type(m) == "welcome":
                admitted += 1
                conns.append(c)
            else:
                refused.append(brief(m))
        alive = 0
        for c in conns:
            await c.send({"type": "ping", "nonce": 1})
            m, _ = await c.until(lambda m: text_type(m) == "pong", timeout=1)
            alive += text_type(m) == "pong"
        return {"welcomed": admitted, "live_after": alive,
                "refused": sorted(set(refused))}
    finally:
        s.stop()


async def audience():
    s = Server("--auth-secret", SECRET, "--token-audience", "game-a", "--token-issuer", "backend")
    try:
        if not await s.ready(3):
            return {"started": False, "note": "flags unknown (exit %s)" % s.p.poll()}
        res = {"started": True}
        for name, tok in [("no_aud", mint("p1")),
                          ("wrong_aud", mint("p2", aud="game-b", iss="backend")),
                          ("right", mint("p3", aud="game-a", iss="backend"))]:
            c = await WS.open(s.port)
            res[name] = brief(await c.hello(token=tok))
            c.close()
        return res
    finally:
        s.stop()


async def restart():
    port = free_port()
    seen = []
    for run in range(2):
        s = Server(port=port)
        try:
            await s.ready()
            c = await WS.open(s.port)
            w = await c.hello(player="p")
            await c.send({"type": "create_lobby", "rid": 2, "max_members": 4})
            m, _ = await c.until(lambda m: text_type(m) == "lobby_joined")
            seen.append({"peer_id": w[1].get("peer_id"), "instance": w[1].get("instance"),
                         "code": (m[1].get("lobby") or {}).get("code") if m[0] == "text" else None})
        finally:
            s.stop()
    return {"before_restart": seen[0], "after_restart": seen[1]}


async def replaced():
    s = Server()
    try:
        await s.ready()
        a = await WS.open(s.port)
        await a.hello(player="p")
        await a.send({"type": "create_lobby", "rid": 2, "max_members": 4})
        m, _ = await a.until(lambda m: text_type(m) == "lobby_joined")
        code = (m[1].get("lobby") or {}).get("code")
        b = await WS.open(s.port)
        await b.hello(player="p")
        await b.send({"type": "join_lobby", "rid": 2, "code": code})
        jm, _ = await b.until(lambda m: m[0] == "text" and m[1].get("rid") == 2)
        first, seen = await a.until(lambda m: False, timeout=2)
        return {"newer_gets": brief(jm),
                "older_sees": [brief(x) for x in seen]}
    finally:
        s.stop()


async def idle(ping, idle_s, answer):
    s = Server("--ping-interval-secs", str(ping), "--idle-timeout-secs", str(idle_s))
    try:
        if not await s.ready(3):
            return {"ping": ping, "idle": idle_s, "started": False, "exit_code": s.p.poll()}
        c = await WS.open(s.port)
        await c.hello(player="quiet")
        t0 = time.time()
        while True:
            m = await c.recv(timeout=70, answer_pings=answer)
            if m[0] in ("ping",):
                continue
            if m[0] in ("close", "eof", "timeout") or text_type(m) == "error":
                break
        return {"ping": ping, "idle": idle_s, "answers_pings": answer,
                "cut_after_s": round(time.time() - t0, 1), "how": brief(m)}
    finally:
        s.stop()


async def malformed():
    s = Server()
    try:
        await s.ready()
        out = {}
        # A frame with a reserved opcode (0x3) — a protocol error.
        c = await WS.open(s.port)
        await c.hello(player="m1")
        await c.raw(c.frame(0x83, b"x"))
        m, seen = await c.until(lambda m: m[0] == "close", timeout=3)
        out["reserved_opcode"] = [brief(x) for x in seen]
        # Invalid UTF-8 in a text frame.
        c = await WS.open(s.port)
        await c.hello(player="m2")
        await c.raw(c.frame(0x81, b'{"type":"ping","nonce":"\xff\xfe"}'))
        m, seen = await c.until(lambda m: m[0] == "close", timeout=3)
        out["invalid_utf8"] = [brief(x) for x in seen]
        # A token of the wrong JSON type.
        c = await WS.open(s.port)
        await c.send({"type": "hello", "rid": 1, "token": 5})
        m, seen = await c.until(lambda m: m[0] == "close", timeout=3)
        out["token_wrong_type"] = [brief(x) for x in seen]
        return out
    finally:
        s.stop()


async def main():
    scenarios = [("impostor", impostor),
                 ("impostor_dev_on_allowed", lambda: impostor("--dev-mode", "on", "--allow-anonymous-with-auth-secret")), ("dev_on_with_secret", dev_on_with_secret),
                 ("silent_sockets", silent_sockets), ("ping_flood", ping_flood),
                 ("per_player", per_player), ("audience", audience), ("restart", restart),
                 ("replaced", replaced), ("malformed", malformed),
                 ("idle_defaults_silent", lambda: idle(15, 45, False)),
                 ("idle_10_12_silent", lambda: idle(10, 12, False)),
                 ("idle_5_below_ping_15_answering", lambda: idle(15, 5, True))]
    only = sys.argv[3:] or None
    for name, f in scenarios:
        if only and name not in only:
            continue
        try:
            r = await asyncio.wait_for(f(), 90)
        except Exception as e:
            r = {"failed": f"{type(e).__name__}: {e}"}
        print(json.dumps({"binary": LABEL, "scenario": name, **r}), flush=True)


asyncio.run(main())
