// The client against the real server binary (see harness.mjs).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { connect } from "../dist/index.js";
import { collect, join, joined, next, Proxy, Server, sleep, until } from "./harness.mjs";

const range = (n, from = 0) => Array.from({ length: n }, (_, i) => i + from);

describe("one server", () => {
  let s;
  before(async () => {
    s = await Server.start();
  });
  after(async () => {
    await s.stop();
  });

  test("a client joins and knows who it is and who is here", async () => {
    const a = join(s.url, "join");
    const states = [];
    a.onEvent("state", (st) => states.push(st));
    const opened = await next(a, "open");
    assert.deepEqual(opened, { resumed: false, recovered: false });
    assert.equal(a.state, "open");
    assert.ok(Number.isInteger(a.me.id) && a.me.name && /^#[0-9a-f]{6}$/i.test(a.me.color));
    await until(() => a.presence.some((m) => m.id === a.me.id), "self in presence");
    assert.ok(a.session.token && Number.isInteger(a.session.epoch));
    assert.deepEqual(states, ["open"]);
    a.close();
    assert.equal(a.state, "closed");
  });

  test("a custom action reaches the others with who sent it", async () => {
    const a = await joined(s.url, "relay");
    const b = await joined(s.url, "relay");
    const got = next(b, "spin", () => true, { frame: true });
    assert.equal(a.send("spin", { turns: 3 }), true);
    const frame = await got;
    assert.deepEqual(frame.data, { turns: 3 });
    assert.equal(frame.from.id, a.me.id);
    assert.equal(typeof frame.seq, "number");
    a.close();
    b.close();
  });

  test("a volatile custom action has no seq", async () => {
    const a = await joined(s.url, "volatile");
    const b = await joined(s.url, "volatile");
    const got = next(b, "typing", () => true, { frame: true });
    a.send("typing", true, { volatile: true });
    const frame = await got;
    assert.equal(frame.seq, undefined);
    assert.equal(frame.volatile, true);
    a.close();
    b.close();
  });

  test("a full room says so with rooms to go to, and the client stays connected", async () => {
    const small = await Server.start(["--max-room-size", "1"]);
    try {
      const a = await joined(small.url, "full");
      const b = join(small.url, "full");
      const suggestions = await next(b, "roomFull");
      assert.deepEqual(suggestions, ["/full-2", "/full-3", "/full-4"]);
      assert.notEqual(b.state, "closed");
      a.close();
      b.close();
    } finally {
      await small.stop();
    }
  });

  test("presence follows joins, aways, returns, reorders and leaves", async () => {
    const proxy = await Proxy.start(s.port);
    try {
      const a = await joined(s.url, "presence");
      const ids = () => a.presence.map((m) => m.id);
      const b = await joined(proxy.url, "presence");
      await until(() => ids().includes(b.me.id), "b's join");
      const c = await joined(s.url, "presence");
      await until(() => ids().length === 3, "c's join");
      // c speaks: it becomes the most recently active.
      c.send("talkToRoom", "hi");
      await until(() => ids()[0] === c.me.id, "c first");
      // b's socket dies without a close frame: away, then back.
      proxy.hold();
      proxy.cut();
      await until(() => a.presence.find((m) => m.id === b.me.id)?.away === true, "b away");
      proxy.release();
      await next(b, "open");
      await until(() => a.presence.find((m) => m.id === b.me.id)?.away === false, "b back");
      // A clean close is a leave.
      c.close();
      await until(() => !ids().includes(c.me.id), "c's leave");
      assert.deepEqual(new Set(ids()), new Set([a.me.id, b.me.id]));
      // Every member sees the same list.
      await until(() => JSON.stringify(b.presence) === JSON.stringify(a.presence), "same lists");
      a.close();
      b.close();
    } finally {
      await proxy.stop();
    }
  });

  test("a dropped socket resumes with every line the others wrote, once and in order", async () => {
    const proxy = await Proxy.start(s.port);
    try {
      const writer = await joined(s.url, "drop");
      const reader = await joined(proxy.url, "drop");
      const lines = collect(reader, "talkToRoom");
      const opens = [];
      reader.onEvent("open", (o) => opens.push(o));
      for (const i of range(10)) writer.send("talkToRoom", i);
      await until(() => lines.length >= 5, "some lines before the cut");
      proxy.hold();
      proxy.cut();
      await until(() => writer.presence.find((m) => m.id === reader.me.id)?.away === true, "away");
      for (const i of range(20, 10)) writer.send("talkToRoom", i);
      writer.send("echo", "sync");
      await next(writer, "echo", () => true, { frame: true });
      proxy.release();
      await until(() => lines.length >= 30, "every line");
      await sleep(300);
      assert.deepEqual(lines, range(30));
      assert.deepEqual(opens, [{ resumed: true, recovered: true }]);
      writer.close();
      reader.close();
    } finally {
      await proxy.stop();
    }
  });

  test("operations sent while offline are sent after the resume and applied once", async () => {
    const proxy = await Proxy.start(s.port);
    try {
      const other = await joined(s.url, "offline");
      const lines = collect(other, "talkToRoom");
      const me = await joined(proxy.url, "offline");
      for (const i of range(5)) me.send("talkToRoom", i);
      // Cut while those may still be on their way: the client cannot know
      // which arrived, so it sends again what comes after `lastOp`.
      proxy.hold();
      proxy.cut();
      await until(() => me.state === "reconnecting", "reconnecting");
      for (const i of range(5, 5)) assert.equal(me.send("talkToRoom", i), true);
      proxy.release();
      await next(me, "open");
      await until(() => lines.length >= 10, "every line");
      await sleep(500);
      assert.deepEqual(lines, range(10));
      other.close();
      me.close();
    } finally {
      await proxy.stop();
    }
  });

  test("the offline queue is bounded", async () => {
    const proxy = await Proxy.start(s.port);
    try {
      const me = await joined(proxy.url, "bounded", { queueLimit: 3 });
      proxy.hold();
      proxy.cut();
      await until(() => me.state === "reconnecting", "reconnecting");
      assert.deepEqual(
        range(5).map((i) => me.send("talkToRoom", i)),
        [true, true, true, false, false],
      );
      assert.equal(me.send("typing", true, { volatile: true }), false);
      me.close();
    } finally {
      await proxy.stop();
    }
  });

  test("a session taken over by another connection closes with 4000 and does not fight back", async () => {
    const first = await joined(s.url, "takeover");
    const closed = next(first, "closed");
    const second = join(s.url, "takeover", { session: first.session });
    const secondOpen = next(second, "open");
    const info = await closed;
    assert.equal(info.code, 4000);
    assert.equal(info.replaced, true);
    assert.deepEqual(await secondOpen, { resumed: true, recovered: true });
    assert.equal(second.me.id, first.me.id);
    await sleep(1500);
    assert.equal(first.state, "closed");
    assert.equal(second.state, "open");
    second.close();
  });

  test("a suspended room (a page reload) resumes from its session with what it missed", async () => {
    const writer = await joined(s.url, "suspend");
    const page = await joined(s.url, "suspend");
    const seen = collect(page, "talkToRoom");
    writer.send("talkToRoom", "before");
    await until(() => seen.length === 1, "the first line");
    const session = page.session;
    const id = page.me.id;
    page.suspend();
    await until(() => writer.presence.find((m) => m.id === id)?.away === true, "away, not gone");
    writer.send("talkToRoom", "while away");
    const again = join(s.url, "suspend", { session });
    const later = collect(again, "talkToRoom");
    assert.deepEqual(await next(again, "open"), { resumed: true, recovered: true });
    assert.equal(again.me.id, id);
    await until(() => later.length === 1, "the missed line");
    assert.deepEqual(later, ["while away"]);
    writer.close();
    again.close();
  });

  test("reconnect() while open resumes the same member", async () => {
    const a = await joined(s.url, "again");
    const id = a.me.id;
    const reopened = next(a, "open");
    a.reconnect();
    assert.deepEqual(await reopened, { resumed: true, recovered: true });
    assert.equal(a.me.id, id);
    a.close();
  });

  test("refreshToken never relays a token to the room on a server that does not check tokens", async () => {
    const a = await joined(s.url, "tokens", { token: "secret-1" });
    const b = await joined(s.url, "tokens");
    const relayed = [];
    b.on("refreshToken", (_d, f) => relayed.push(f));
    a.refreshToken("secret-2");
    b.send("echo", "sync");
    await next(b, "echo", () => true, { frame: true });
    a.send("talkToRoom", "after");
    await next(b, "talkToRoom", (d) => d === "after", { frame: true });
    assert.deepEqual(relayed, []);
    a.close();
    b.close();
  });

  test("every refusal the client can cause comes back as a typed error", async () => {
    const a = await joined(s.url, "errors");
    const b = await joined(s.url, "errors");
    const errors = [];
    a.onEvent("error", (e) => errors.push(e));
    const expect = async (code, act) => {
      const got = next(a, "error", (e) => e.code === code);
      act();
      const e = await got;
      assert.equal(e.name, "AttractioError");
      assert.ok(e.message.startsWith(code));
    };
    await expect("reserved_action", () => a.send("hydrate", []));
    await expect("unknown_word", () => a.send("freeze", { elementID: "nope" }));
    await expect("unknown_client", () => a.send("privateMessage", { to: 999999, data: "hi" }));
    await expect("invalid_message", () => a.send("newWord", { id: 1 }));
    a.send("newWord", { id: "w1", text: "moon", x: 1, y: 1 });
    await expect("duplicate_word", () => a.send("newWord", { id: "w1", text: "sun", x: 1, y: 1 }));
    await until(() => b.board?.some((w) => w.id === "w1"), "b has w1");
    b.send("freeze", { elementID: "w1" });
    await next(a, "freeze", () => true, { frame: true });
    await expect("word_locked", () => a.send("freeze", { elementID: "w1" }));
    const bad = join(s.url, "not a room!");
    const e = await next(bad, "error");
    assert.equal(e.code, "invalid_room_name");
    bad.close();
    a.close();
    b.close();
  });

  test("an upgrade refused with 429 waits at least its Retry-After", async () => {
    const tight = await Server.start(["--max-connections-per-ip", "1"]);
    try {
      const a = await joined(tight.url, "busy");
      const b = join(tight.url, "busy");
      const r = await next(b, "reconnecting");
      assert.ok(r.delayMs >= 10_000, `waited ${r.delayMs} ms`);
      b.close();
      a.close();
    } finally {
      await tight.stop();
    }
  });

  test("without a WebSocket on Node, connect says what is missing", () => {
    assert.throws(() => connect(s.url, { room: "x" }), /WebSocket/);
    assert.ok(WebSocket);
  });
});

describe("a server with big frames", () => {
  test("a board over the word limit is board_too_large", async () => {
    const s = await Server.start(["--max-message-bytes", "1000000"]);
    try {
      const a = await joined(s.url, "big");
      const refused = next(a, "error", (e) => e.code === "board_too_large");
      a.send("stateUpdate", range(2001).map((i) => ({ id: `w${i}`, text: "x", x: 0, y: 0 })));
      await refused;
      a.close();
    } finally {
      await s.stop();
    }
  });
});

describe("a server limited in rate and new rooms", () => {
  test("rate_limited and too_many_rooms are typed errors", async () => {
    const s = await Server.start(["--rate-limit", "1", "--rate-burst", "2", "--new-rooms-per-minute", "1"]);
    try {
      const a = await joined(s.url, "limited");
      const limited = next(a, "error", (e) => e.code === "rate_limited");
      for (const i of range(10)) a.send("spin", i);
      await limited;
      const b = join(s.url, "another-new-room");
      const refused = await next(b, "error");
      assert.equal(refused.code, "too_many_rooms");
      a.close();
      b.close();
    } finally {
      await s.stop();
    }
  });
});

describe("a server killed with -9", () => {
  test("a resume after the restart is not passed off as recovered: notRecovered with the fresh state", async () => {
    const s = await Server.start(["--save-interval", "50ms"]);
    const proxy = await Proxy.start(s.port);
    let restarted;
    try {
      const a = await joined(proxy.url, "crash");
      a.send("stateUpdate", [{ id: "w1", text: "moon", x: 1, y: 2 }]);
      await sleep(500);
      const id = a.me.id;
      const notRecovered = next(a, "notRecovered");
      proxy.hold();
      await s.kill9();
      proxy.cut();
      restarted = await Server.start([], { dataDir: s.dir });
      proxy.target = restarted.port;
      proxy.release();
      const fresh = await notRecovered;
      assert.equal(a.me.id, id, "the identity survives the crash");
      assert.equal(a.state, "open");
      assert.ok(Array.isArray(fresh.presence));
      assert.deepEqual(fresh.board?.map((w) => w.text), ["moon"]);
      // And it works as before.
      const b = await joined(restarted.url, "crash");
      const got = next(b, "talkToRoom", (d) => d === "after", { frame: true });
      a.send("talkToRoom", "after");
      await got;
      a.close();
      b.close();
    } finally {
      await proxy.stop();
      await restarted?.stop();
      await s.stop();
    }
  });
});

describe("the app's backend", () => {
  const KEY = "backend-key";
  let s;
  before(async () => {
    s = await Server.start(["--api-key", KEY]);
  });
  after(async () => {
    await s.stop();
  });

  const api = (method, path, body) =>
    fetch(s.url.replace(/^ws/, "http").replace(/\/ws$/, "") + path, {
      method,
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  test("a kicked member is told kicked and does not come back by itself", async () => {
    const a = await joined(s.url, "kick");
    const closed = next(a, "closed");
    const res = await api("POST", "/api/rooms/kick/disconnect", { id: a.me.id });
    assert.equal(res.status, 200, await res.text());
    const info = await closed;
    assert.equal(info.code, 4002);
    assert.equal(info.kicked, true);
    assert.equal(info.roomClosed, false);
    await sleep(1500);
    assert.equal(a.state, "closed");
  });

  test("a closed room is told roomClosed and does not come back by itself", async () => {
    const a = await joined(s.url, "shut");
    const closed = next(a, "closed");
    const res = await api("DELETE", "/api/rooms/shut");
    assert.ok(res.ok, `${res.status} ${await res.text()}`);
    const info = await closed;
    assert.equal(info.code, 4003);
    assert.equal(info.roomClosed, true);
    assert.equal(info.kicked, false);
    await sleep(1500);
    assert.equal(a.state, "closed");
  });
});
