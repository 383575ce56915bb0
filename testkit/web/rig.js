// What both test pages share (peer.js, the reference peer; wasm-peer.js, the SDK in
// wasm32): reporting events to the rig (testkit/src/browser.rs) in order, the test's
// message pattern and hash, and the command loop. A classic script: its functions are
// globals for both pages.
"use strict";

// Reports go one after the other, so the test sees them in the order they happened.
let reports = Promise.resolve();
function post(event) {
  event.t = Math.round(performance.now() * 10) / 10;
  const body = JSON.stringify(event);
  reports = reports.then(() => fetch("/event", { method: "POST", body })).catch(() => {});
  return reports;
}
// The page's visibility (a test hides it behind another tab), and a 100 ms ticker whose
// count shows how often the browser lets the page's timers run (`ticks` command).
document.addEventListener("visibilitychange", () => post({ event: "visibility", state: document.visibilityState }));
let ticks = 0;
setInterval(() => ticks++, 100);
window.addEventListener("error", (e) => post({ event: "exception", message: String(e.message), stack: String(e.error && e.error.stack) }));
window.addEventListener("unhandledrejection", (e) => post({ event: "exception", message: String(e.reason), stack: String(e.reason && e.reason.stack) }));

// The test's pattern: byte i of a message is (seed + 31 i) mod 251; a receiver reports the
// length and the FNV-1a hash, which the test computes the same way.
function pattern(size, seed) {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (seed + 31 * i) % 251;
  return b;
}
function fnv1a(bytes) {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// Says the page is ready, then takes the test's commands (GET /poll, a long poll) and
// hands each to `run`, one after the other; a command that throws is reported.
async function serveCommands(run) {
  await post({ event: "ready", agent: navigator.userAgent });
  for (;;) {
    let commands = [];
    try {
      commands = await (await fetch("/poll")).json();
    } catch (e) {
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    for (const cmd of commands) {
      try {
        if (cmd.do === "ticks") post({ event: "ticks", ticks, visibility: document.visibilityState });
        else await run(cmd);
      } catch (e) {
        post({ event: "exception", message: `${cmd.do}: ${e}`, stack: String(e && e.stack) });
      }
    }
  }
}
