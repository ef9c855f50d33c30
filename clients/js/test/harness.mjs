// The real server and a TCP proxy for the client's tests: nothing here is
// a stand-in for attractio, only the means to start it, kill it and cut
// its sockets without a close frame.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { connect } from "../dist/index.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
/** The server binary: `ATTRACTIO_BIN`, else the debug build. */
export const BIN = process.env.ATTRACTIO_BIN ?? path.join(repo, "target/debug/attractio");
/** Generous: the machine may be busy. */
export const WAIT_MS = 15_000;

/** A server process on 127.0.0.1, on port 0 unless `port` is given. */
export class Server {
  static async start(args = [], { dataDir, port = 0 } = {}) {
    const dir = dataDir ?? mkdtempSync(path.join(tmpdir(), "attractio-js-"));
    const child = spawn(
      BIN,
      ["--addr", `127.0.0.1:${port}`, "--data-dir", dir, "--static-dir", dir, ...args],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: "warn" } },
    );
    const lines = createInterface({ input: child.stdout });
    const addr = await new Promise((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`server exited (${code}) before listening`)));
      lines.once("line", (line) => {
        const m = /^attractio listening on http:\/\/(.+)$/.exec(line.trim());
        m ? resolve(m[1]) : reject(new Error(`unexpected first line ${line}`));
      });
    });
    lines.on("line", () => {});
    const s = new Server();
    Object.assign(s, { child, addr, dir, ownsDir: dataDir === undefined });
    s.port = Number(addr.split(":").pop());
    return s;
  }

  get url() {
    return `ws://${this.addr}/ws`;
  }

  /** `kill -9`: no save, no close frames. */
  async kill9() {
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once("exit", r));
      this.child.kill("SIGKILL");
      await exited;
    }
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy in front of a server: `cut()` destroys every connection
 * through it (the server and the client see the TCP connection end, with
 * no WebSocket close frame), `hold()` keeps new connections waiting until
 * `release()`, and `target` can be pointed at another port (a restarted
 * server).
 */
export class Proxy {
  static async start(targetPort) {
    const p = new Proxy();
    p.target = targetPort;
    p.pairs = new Set();
    p.waiting = [];
    p.held = false;
    p.server = net.createServer((inbound) => {
      inbound.on("error", () => {});
      if (p.held) p.waiting.push(inbound);
      else p.pipe(inbound);
    });
    await new Promise((r) => p.server.listen(0, "127.0.0.1", r));
    p.port = p.server.address().port;
    return p;
  }

  pipe(inbound) {
    const outbound = net.connect(this.target, "127.0.0.1");
    outbound.on("error", () => inbound.destroy());
    inbound.on("error", () => outbound.destroy());
    const pair = [inbound, outbound];
    this.pairs.add(pair);
    const done = () => {
      this.pairs.delete(pair);
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on("close", done);
    outbound.on("close", done);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  cut() {
    for (const [a, b] of this.pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.pairs.clear();
  }

  hold() {
    this.held = true;
  }

  release() {
    this.held = false;
    for (const inbound of this.waiting.splice(0)) {
      if (!inbound.destroyed) this.pipe(inbound);
    }
  }

  async stop() {
    this.cut();
    for (const s of this.waiting.splice(0)) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

/** A room object on Node, with short retries so the tests move along. */
export function join(url, room, options = {}) {
  return connect(url, { room, WebSocket, backoffBaseMs: 100, backoffCapMs: 500, ...options });
}

/**
 * Resolves with the first value of `event` (a room event, or a frame
 * action with `frame: true`) for which `ok` holds; rejects after WAIT_MS.
 */
export function next(room, event, ok = () => true, { frame = false } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} ${ok.name ? `(${ok.name}) ` : ""}within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const handler = frame
      ? (data, f) => {
          if (ok(data, f)) {
            clearTimeout(timer);
            off();
            resolve(f);
          }
        }
      : (v) => {
          if (ok(v)) {
            clearTimeout(timer);
            off();
            resolve(v);
          }
        };
    const off = frame ? room.on(event, handler) : room.onEvent(event, handler);
  });
}

/** Waits until `cond()` holds, checking every 20 ms. */
export async function until(cond, what = "condition") {
  const end = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Joined: resolves once the room object is open. */
export async function joined(url, room, options = {}) {
  const r = join(url, room, options);
  await next(r, "open");
  return r;
}

/** Every `data` of `action` the room delivers, in order. */
export function collect(room, action) {
  const got = [];
  room.on(action, (data, frame) => {
    if (frame.from) got.push(data);
  });
  return got;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
