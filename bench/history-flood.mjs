// history-flood: what a flood of big chat lines costs a server in memory
// and in its store (issue 15, item 3). One client per room sets a small
// board, sends LINES chat lines of BYTES bytes, waits until its room has
// handled them all, and the server's RSS and history gauge are read; then
// every client leaves cleanly (the last leave writes the room, history
// included) and the store's growth and save time are read.
//
//   node --experimental-websocket bench/history-flood.mjs \
//     --addr 127.0.0.1:3000 --pid PID --data-dir DIR [--rooms 20] [--lines 512] [--bytes 65000]
//
// bench/history-flood.sh starts a fresh server for it (with the rate limit
// raised, only to make the run quick). Loopback only.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => {
    if (a.startsWith("--")) pairs.push([a.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const addr = args.addr ?? "127.0.0.1:3000";
const rooms = Number(args.rooms ?? 20);
const lines = Number(args.lines ?? 512);
const bytes = Number(args.bytes ?? 65000);
if (!/^127\.|^localhost:/.test(addr)) throw new Error("loopback only");

const mb = (kb) => (kb / 1024).toFixed(1);
function memory() {
  const status = readFileSync(`/proc/${args.pid}/status`, "utf8");
  const kb = (key) => Number(status.match(new RegExp(`${key}:\\s+(\\d+)`))[1]);
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}
const duBytes = () => Number(execFileSync("du", ["-sb", args["data-dir"]]).toString().split("\t")[0]);
async function metric(name) {
  const page = await (await fetch(`http://${addr}/metrics`)).text();
  const line = page.split("\n").find((l) => l.startsWith(`attractio_${name} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

/// Resolves with the first frame whose action is one of `actions`.
function frame(ws, actions) {
  return new Promise((resolve) => {
    const on = (e) => {
      const v = JSON.parse(e.data);
      if (actions.includes(v.action)) {
        ws.removeEventListener("message", on);
        resolve(v);
      }
    };
    ws.addEventListener("message", on);
  });
}

async function flood(i) {
  const ws = new WebSocket(`ws://${addr}/ws`);
  await frame(ws, ["hello"]);
  ws.send(JSON.stringify({ action: "newClient", room: `flood-${i}` }));
  await frame(ws, ["hydrate", "newRoom"]);
  const board = [0, 1].map((w) => ({ id: `w${w}`, text: `word${w}`, x: 10 * w, y: 20 }));
  ws.send(JSON.stringify({ action: "stateUpdate", data: board }));
  for (let n = 0; n < lines; n++) {
    const mark = `${i}/${n}:`;
    ws.send(JSON.stringify({ action: "talkToRoom", data: mark + "x".repeat(bytes - mark.length) }));
    while (ws.bufferedAmount > 1 << 20) await new Promise((r) => setTimeout(r, 1));
  }
  // The room itself answers this, after every line before it.
  ws.send(JSON.stringify({ action: "freeze", elementID: "no-such-word" }));
  await frame(ws, ["error"]);
  return ws;
}

const before = { du: duBytes(), saveSeconds: (await metric("store_save_seconds_total")) ?? 0 };
const base = memory();
const started = Date.now();
const sockets = await Promise.all([...Array(rooms).keys()].map(flood));
const flooded = memory();
const history = await metric("history_bytes");
console.log(
  `${rooms} rooms x ${lines} lines x ${bytes} B in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
    `RSS ${mb(base.rss)} -> ${mb(flooded.rss)} MB, history_bytes ${history ?? "n/a"}`,
);
for (const ws of sockets) ws.close();
while ((await metric("rooms")) > 0) await new Promise((r) => setTimeout(r, 100));
const left = memory();
const saveSeconds = (await metric("store_save_seconds_total")) - before.saveSeconds;
console.log(
  `after the last leaves: RSS ${mb(left.rss)} MB, peak ${mb(left.peak)} MB; ` +
    `store +${((duBytes() - before.du) / 1e6).toFixed(1)} MB, ${saveSeconds.toFixed(2)} s of saves`,
);
