/**
 * A client for attractio rooms. `connect(url, { room })` opens a socket,
 * joins the room and keeps it joined: it reconnects with exponential
 * backoff and full jitter, resumes the session with its token, epoch and
 * last `seq`, delivers every numbered frame once and in order, keeps the
 * member list from `presence` and `presenceDiff`, and numbers what it sends
 * (`opId`) so that what it sends again after a resume applies once.
 *
 * No runtime dependency: in a browser it uses the platform `WebSocket`; on
 * Node pass one (`import WebSocket from "ws"`).
 */

import type {
  Board,
  ClientId,
  ErrorCode,
  Hello,
  PresenceDiff,
  PresenceEntry,
  Resumed,
  Word,
} from "./protocol.js";

export type * from "./protocol.js";

/** Close codes the server sends today (RFC 6455 §7.4 and attractio's own). */
export const CloseCode = {
  /** A clean close. */
  NORMAL: 1000,
  /** The server is shutting down (graceful stop); the seat is kept: resume. */
  GOING_AWAY: 1001,
  /** The server found a WebSocket protocol violation. */
  PROTOCOL_ERROR: 1002,
  /** A text frame that is not UTF-8. */
  INVALID_DATA: 1007,
  /** Policy: this client was too slow to take its frames (a slow consumer). */
  POLICY: 1008,
  /** A frame over the server's `--max-message-bytes`. */
  TOO_BIG: 1009,
  /** `protocol::close_code::REPLACED`: another connection took the session. */
  REPLACED: 4000,
  /**
   * `protocol::close_code::TOKEN_EXPIRED`: the token expired and no `refreshToken`
   * came within the server's grace; reconnect with a new token to resume.
   */
  TOKEN_EXPIRED: 4001,
  /** `protocol::close_code::KICKED`: the app's backend disconnected this member (seat given up). */
  KICKED: 4002,
  /** `protocol::close_code::ROOM_CLOSED`: the app's backend closed the room. */
  ROOM_CLOSED: 4003,
  /** `protocol::close_code::RESUMING`, sent by `suspend()`: the seat is kept for a resume. */
  RESUMING: 4010,
} as const;

/** Where the room object stands. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** What a member is, as `me`: the identity the server gave this session. */
export interface Me {
  id: ClientId;
  name: string;
  color: string;
  /** The app's user id, once "Who may join" tokens exist (absent today). */
  user?: string;
  /** The member's role, once "Who may join" exists (absent today). */
  role?: string;
}

/** A member as `presence` lists it. */
export interface PresenceMember {
  id: ClientId;
  name: string;
  color: string;
  away: boolean;
  user?: string;
  role?: string;
}

/** Who sent a relayed frame. */
export interface From {
  id: ClientId;
  name: string;
  color: string;
}

/** A server frame as delivered to `on(action, …)` handlers. */
export interface Frame {
  action: string;
  seq?: number | null;
  epoch?: number | null;
  from?: From | null;
  data?: unknown;
  [field: string]: unknown;
}

/** What is needed to resume a session, e.g. after a page reload. */
export interface Session {
  token: string;
  epoch: number;
  lastSeq: number;
  /** The last `opId` this client gave, so new ones keep growing. */
  lastOp: number;
}

/** A refused frame: the server's `error {code, message}`. */
export class AttractioError extends Error {
  /** The protocol's `ErrorCode` (`word_locked`, `rate_limited`, …). */
  readonly code: ErrorCode | (string & {});
  /** The `opId` the server named, when it named one. */
  readonly opId?: number;
  constructor(code: string, message: string, opId?: number) {
    super(`${code}: ${message}`);
    this.name = "AttractioError";
    this.code = code;
    this.opId = opId;
  }
}

/** Why the room object stopped or is trying again. */
export interface CloseInfo {
  code: number;
  reason: string;
  /** Closed with 4000: the session moved to a newer connection. */
  replaced: boolean;
  /** Closed with 4002: the app's backend disconnected this member; its seat is gone. */
  kicked: boolean;
  /** Closed with 4003: the app's backend closed the room; its state is gone. */
  roomClosed: boolean;
  /** The server is going away (1001). */
  serverStopping: boolean;
}

/** Every event `onEvent` takes, with what its handler gets. */
export interface RoomEvents {
  /** A new socket is being opened (first connect or a reconnect). */
  connecting: { attempt: number };
  /** Joined (or resumed into) the room: sends go straight out. */
  open: { resumed: boolean; recovered: boolean };
  /** The socket dropped; the next attempt comes after `delayMs`. */
  reconnecting: CloseInfo & { attempt: number; delayMs: number };
  /** Stopped for good: `close()`, a taken-over session, or retries ran out. */
  closed: CloseInfo;
  /** Any change of `state`. */
  state: ConnectionState;
  /** The member list changed (most recently active first). */
  presence: readonly PresenceMember[];
  /** `me` changed (hello, resumed). */
  me: Me;
  /** The board changed (`hydrate`, `rehydrate` or an operation). */
  board: Board | null;
  /**
   * A resume could not be recovered (`recovered:false`): frames may have
   * been missed. Comes once the fresh state arrived, with it.
   */
  notRecovered: { board: Board | null; presence: readonly PresenceMember[] };
  /** The room is full; you stay connected. Suggested room paths. */
  roomFull: string[];
  /** A refused frame. `duplicate_op` answers to resends are not surfaced. */
  error: AttractioError;
  /** `session` changed (a frame numbered, a token renewed): save it to resume later. */
  session: Session;
}

/** The `WebSocket` constructor the client uses (the platform's, or `ws`). */
export interface WebSocketLike {
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ConnectOptions {
  /** The room to join. */
  room: string;
  /**
   * A token from the app's backend, sent in `newClient` as `token`. The
   * server's "Who may join" is being built: until it lands, servers ignore
   * it and every room is public.
   */
  token?: string;
  /** The `WebSocket` implementation; required on Node (`ws`). */
  WebSocket?: WebSocketConstructor;
  /** A saved `room.session` to resume (e.g. from `sessionStorage`). */
  session?: Session;
  /** First retry waits up to this long (ms). Default 500. */
  backoffBaseMs?: number;
  /** No retry waits longer than this (ms). Default 10 000. */
  backoffCapMs?: number;
  /** Attempts before giving up with `closed`. Default: unlimited. */
  maxAttempts?: number;
  /** Operations kept while offline, at most. Default 256. */
  queueLimit?: number;
  /** Answer `requestCurrentState`: the board to give a joiner. Default: `room.board`. */
  currentBoard?: () => Board | null;
}

export interface SendOptions {
  /**
   * Transient (a typing indicator): sent with `"volatile": true`, so the
   * server relays it without a `seq` and keeps it nowhere; never queued
   * while offline, never numbered.
   */
  volatile?: boolean;
}

/** Actions whose frame fields go at the top level (`elementID`, …), not in `data`. */
const FLAT = new Set(["moving", "moveEnd", "freeze", "unfreeze", "delete", "modify", "privateMessage"]);
/** Never queued while offline nor numbered. */
const UNKEPT = new Set(["moving", "echo", "newClient", "emptyRoom"]);
/** Sent operations remembered for a resend after a resume. */
const UNCONFIRMED = 256;

type Handler<T> = (value: T) => void;
type FrameHandler = (data: unknown, frame: Frame) => void;

/** Full jitter: a random delay in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Opens a room. The returned object connects at once and keeps connecting. */
export function connect(url: string, options: ConnectOptions): Room {
  return new Room(url, options);
}

export class Room {
  /** Members, most recently active first. */
  presence: readonly PresenceMember[] = [];
  /** Who this session is; `null` until `hello`. */
  me: Me | null = null;
  /** The room's board (`null` when the room has none). */
  board: Board | null = null;
  state: ConnectionState = "connecting";
  readonly room: string;

  private readonly url: string;
  private readonly opts: ConnectOptions;
  private readonly Ws: WebSocketConstructor;
  private ws: WebSocketLike | null = null;
  private token: string | undefined;
  private resumeToken: string | null = null;
  private epoch: number | null = null;
  private lastSeq = 0;
  private lastOp = 0;
  private joined = false;
  private attempt = 0;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private retryAfterMs: number | null = null;
  /** Kept operations waiting for the room, oldest first, with their opIds. */
  private queue: Array<[number, Record<string, unknown>]> = [];
  /** Sent, not known to be applied: resent after a resume past lastOp. */
  private unconfirmed: Array<[number, Record<string, unknown>]> = [];
  /** After `resumed {recovered:false}`: tell `notRecovered` with the fresh state. */
  private owedNotRecovered = false;
  /** What to resend once the fresh state after `recovered:false` arrived. */
  private pendingResend: Array<[number, Record<string, unknown>]> | null = null;
  private readonly frameHandlers = new Map<string, Set<FrameHandler>>();
  private readonly eventHandlers = new Map<keyof RoomEvents, Set<Handler<never>>>();

  constructor(url: string, options: ConnectOptions) {
    this.url = url;
    this.opts = options;
    this.room = options.room;
    this.token = options.token;
    const Ws = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ws) throw new Error("no WebSocket: pass one in the options (on Node: `ws`)");
    this.Ws = Ws;
    if (options.session) {
      this.resumeToken = options.session.token;
      this.epoch = options.session.epoch;
      this.lastSeq = options.session.lastSeq;
      this.lastOp = options.session.lastOp;
    }
    // Let the caller attach handlers before the first event.
    queueMicrotask(() => this.open());
  }

  /** What to save to resume this session later (`null` until the room first answered). */
  get session(): Session | null {
    if (this.resumeToken === null || this.epoch === null) return null;
    return { token: this.resumeToken, epoch: this.epoch, lastSeq: this.lastSeq, lastOp: this.lastOp };
  }

  /**
   * Sends `action` to the room: `data` goes in the frame's `data`, except
   * for the board's atoms and `privateMessage`, whose fields are the frame's
   * (`send("freeze", { elementID })`). While not joined, kept operations
   * are queued (at most `queueLimit`) and go out after the rejoin. Returns
   * false if it was dropped (queue full, or volatile while offline, or the
   * room object is closed).
   */
  send(action: string, data?: unknown, options: SendOptions = {}): boolean {
    if (this.stopped) return false;
    const frame: Record<string, unknown> =
      FLAT.has(action) && data !== null && typeof data === "object"
        ? { ...(data as object), action }
        : { action, data: data ?? null };
    if (options.volatile) {
      frame.volatile = true;
      if (!this.joined) return false;
      this.write(frame);
      return true;
    }
    this.applyOwn(frame);
    if (UNKEPT.has(action)) {
      if (!this.joined) return false;
      this.write(frame);
      return true;
    }
    const opId = ++this.lastOp;
    if (!this.joined) {
      if (this.queue.length >= (this.opts.queueLimit ?? 256)) {
        this.lastOp--;
        return false;
      }
      this.queue.push([opId, frame]);
      return true;
    }
    this.sendNumbered(opId, frame);
    this.emitSession();
    return true;
  }

  /** Calls `handler(data, frame)` for every frame of `action` (built-in or custom). Returns an unsubscribe. */
  on(action: string, handler: FrameHandler): () => void {
    let set = this.frameHandlers.get(action);
    if (!set) this.frameHandlers.set(action, (set = new Set()));
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Listens for one of the room object's own events ({@link RoomEvents}). Returns an unsubscribe. */
  onEvent<K extends keyof RoomEvents>(event: K, handler: Handler<RoomEvents[K]>): () => void {
    let set = this.eventHandlers.get(event);
    if (!set) this.eventHandlers.set(event, (set = new Set()));
    set.add(handler as Handler<never>);
    return () => set.delete(handler as Handler<never>);
  }

  /**
   * Replaces the token sent in `newClient`, and tells the server with
   * `refreshToken {token}` once the server has shown it verified tokens
   * (our identity carries a `user`): a server without "Who may join"
   * would relay that frame, token and all, to everyone in the room.
   */
  refreshToken(token: string): void {
    this.token = token;
    if (this.joined && this.me?.user !== undefined) this.write({ action: "refreshToken", token });
  }

  /**
   * Connects again now after `closed` (e.g. the user asks to take the
   * session back after a 4000), or skips the wait while reconnecting.
   */
  reconnect(): void {
    this.stopped = false;
    this.attempt = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) this.drop(this.ws);
    this.open();
  }

  /** Leaves the room (a clean close is a leave) and stops reconnecting. */
  close(): void {
    if (!this.stop(CloseCode.NORMAL, "")) return;
    this.finish({ code: CloseCode.NORMAL, reason: "closed by the client" });
  }

  /**
   * Goes away meaning to come back (a page being reloaded): closes with
   * 4010, so the server keeps the seat for its resume window as for a
   * dropped connection, and a room opened later with `session` resumes it
   * with nothing missed. Browsers close a page's sockets with 1001 on
   * every navigation, which the server takes as a leave: call this from
   * `pagehide`. Stops reconnecting, without a `closed` event.
   */
  suspend(): void {
    this.stop(CloseCode.RESUMING, "resuming");
  }

  /**
   * Stops reconnecting and closes the socket, if any, with `code`: what
   * `close` and `suspend` share. False if the room had already stopped.
   */
  private stop(code: number, reason: string): boolean {
    if (this.stopped) return false;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    this.joined = false;
    ws?.close(code, reason);
    return true;
  }

  // ---- connection ----

  private open(): void {
    if (this.stopped) return;
    this.emit("connecting", { attempt: this.attempt });
    let ws: WebSocketLike;
    try {
      ws = new this.Ws(this.url);
    } catch (e) {
      this.emit("error", new AttractioError("connect_failed", String(e)));
      this.retry({ code: 1006, reason: String(e) });
      return;
    }
    this.ws = ws;
    this.watchUpgradeRefusal(ws);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      const join: Record<string, unknown> = { action: "newClient", room: this.room };
      if (this.token !== undefined) join.token = this.token;
      if (this.resumeToken !== null) {
        join.resumeToken = this.resumeToken;
        if (this.epoch !== null) join.epoch = this.epoch;
        join.lastSeq = this.lastSeq;
      }
      ws.send(JSON.stringify(join));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws || typeof ev.data !== "string") return;
      let frame: Frame;
      try {
        frame = JSON.parse(ev.data) as Frame;
      } catch {
        return;
      }
      this.receive(frame);
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.joined = false;
      this.retry({ code: ev.code, reason: ev.reason });
    };
  }

  /**
   * `ws` on Node shows the refused upgrade's response: honour its
   * `Retry-After` (429 / 503). Browsers hide it (the socket only closes
   * with 1006), so there the usual backoff applies.
   */
  private watchUpgradeRefusal(ws: WebSocketLike): void {
    const node = ws as unknown as {
      on?: (ev: string, f: (req: unknown, res: NodeResponse) => void) => void;
      terminate?: () => void;
    };
    if (typeof node.on !== "function" || typeof node.terminate !== "function") return;
    node.on("unexpected-response", (_req, res) => {
      const header = res.headers?.["retry-after"];
      const secs = Number(Array.isArray(header) ? header[0] : header);
      if ((res.statusCode === 429 || res.statusCode === 503) && Number.isFinite(secs)) {
        this.retryAfterMs = secs * 1000;
      }
      res.resume?.();
      node.terminate!();
    });
  }

  private drop(ws: WebSocketLike): void {
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    try {
      // Not a leave: the next connection resumes this seat.
      ws.close(CloseCode.RESUMING, "reconnecting");
    } catch {
      /* already closing */
    }
    if (this.ws === ws) this.ws = null;
    this.joined = false;
  }

  private retry(closed: { code: number; reason: string }): void {
    const info = closeInfo(closed.code, closed.reason);
    if (this.stopped) return;
    const limit = this.opts.maxAttempts ?? Infinity;
    // Taken over, kicked or closed by the app: coming back on its own
    // would fight the other tab or the backend's decision.
    if (info.replaced || info.kicked || info.roomClosed || this.attempt >= limit) {
      this.stopped = true;
      this.finish(closed);
      return;
    }
    let delayMs = backoffDelay(
      this.attempt,
      this.opts.backoffBaseMs ?? 500,
      this.opts.backoffCapMs ?? 10_000,
    );
    if (this.retryAfterMs !== null) {
      delayMs = Math.max(delayMs, this.retryAfterMs);
      this.retryAfterMs = null;
    }
    const attempt = ++this.attempt;
    this.setState("reconnecting");
    this.emit("reconnecting", { ...info, attempt, delayMs });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.open();
    }, delayMs);
  }

  private finish(closed: { code: number; reason: string }): void {
    this.setState("closed");
    this.emit("closed", closeInfo(closed.code, closed.reason));
  }

  // ---- frames in ----

  private receive(frame: Frame): void {
    const seq = typeof frame.seq === "number" ? frame.seq : null;
    const epoch = typeof frame.epoch === "number" ? frame.epoch : null;
    switch (frame.action) {
      case "hello": {
        // A resume keeps its identity and token until `resumed` says otherwise.
        if (this.resumeToken !== null) break;
        const hello = frame.data as Hello;
        this.setMe(hello);
        if (hello.resumeToken) this.resumeToken = hello.resumeToken;
        break;
      }
      case "resumed": {
        const r = frame.data as Resumed;
        this.setMe(r);
        this.resumeToken = r.resumeToken;
        if (epoch !== null) this.epoch = epoch;
        if (seq !== null) this.lastSeq = seq;
        this.lastOp = Math.max(this.lastOp, r.lastOp ?? 0);
        // The seat kept and no `lastOp`: none of ours was applied. Not kept
        // and none: the room cannot say (a crash), so nothing is resent
        // rather than something applied twice.
        const applied = r.lastOp ?? (r.recovered ? 0 : null);
        const resend = applied === null ? [] : this.unconfirmed.filter(([op]) => op > applied);
        this.unconfirmed = [];
        if (r.recovered) {
          this.joinedNow(true, true, resend);
        } else {
          this.owedNotRecovered = true;
          this.board = null;
          // The fresh state (hydrate / newRoom) follows; then we are joined.
          this.pendingResend = resend;
        }
        this.emitSession();
        return;
      }
      case "hydrate":
      case "newRoom": {
        if (epoch !== null) this.epoch = epoch;
        if (seq !== null) this.lastSeq = seq;
        this.board = frame.action === "hydrate" ? ((frame.data as Board) ?? []) : null;
        this.emit("board", this.board);
        this.dispatch(frame);
        if (!this.joined) {
          const resumed = this.owedNotRecovered;
          this.joinedNow(resumed, false, this.pendingResend ?? []);
          this.pendingResend = null;
        }
        if (this.owedNotRecovered) {
          this.owedNotRecovered = false;
          this.emit("notRecovered", { board: this.board, presence: this.presence });
        }
        this.emitSession();
        return;
      }
      case "presence":
        this.presence = (frame.data as PresenceEntry[]).map(member);
        this.emit("presence", this.presence);
        break;
      case "presenceDiff":
        this.presence = applyDiff(this.presence, frame.data as PresenceDiff);
        this.emit("presence", this.presence);
        break;
      case "roomFull":
        this.emit("roomFull", frame.data as string[]);
        break;
      case "requestCurrentState": {
        const board = this.opts.currentBoard ? this.opts.currentBoard() : this.board;
        this.write(board && board.length > 0 ? { action: "stateUpdate", data: board } : { action: "emptyRoom" });
        break;
      }
      case "error": {
        const body = frame.data as { code: string; message: string; opId?: number };
        // Resends on purpose: a duplicate is the expected answer.
        if (body.code !== "duplicate_op") {
          const op = typeof body.opId === "number" ? body.opId : opIdIn(body.message);
          this.emit("error", new AttractioError(body.code, body.message, op));
        }
        break;
      }
    }
    if (seq !== null) {
      // Exactly once: a numbered frame at or below what we have is a repeat.
      if (epoch !== null && epoch === this.epoch && seq <= this.lastSeq) return;
      if (epoch !== null) this.epoch = epoch;
      this.lastSeq = seq;
      this.applyBoard(frame);
      this.dispatch(frame);
      this.emitSession();
      return;
    }
    this.dispatch(frame);
  }

  private joinedNow(resumed: boolean, recovered: boolean, resend: Array<[number, Record<string, unknown>]>): void {
    this.joined = true;
    this.attempt = 0;
    this.setState("open");
    for (const [op, frame] of resend) this.sendNumbered(op, frame);
    const queued = this.queue;
    this.queue = [];
    for (const [op, frame] of queued) this.sendNumbered(op, frame);
    this.emit("open", { resumed, recovered });
  }

  private sendNumbered(opId: number, frame: Record<string, unknown>): void {
    this.write({ ...frame, opId });
    this.unconfirmed.push([opId, frame]);
    if (this.unconfirmed.length > UNCONFIRMED) this.unconfirmed.shift();
  }

  private write(frame: Record<string, unknown>): void {
    const ws = this.ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
  }

  private setMe(who: { id: ClientId; name: string; color: string; user?: string; role?: string }): void {
    this.me = { id: who.id, name: who.name, color: who.color };
    if (who.user !== undefined) this.me.user = who.user;
    if (who.role !== undefined) this.me.role = who.role;
    this.emit("me", this.me);
  }

  private dispatch(frame: Frame): void {
    const set = this.frameHandlers.get(frame.action);
    if (!set) return;
    for (const h of [...set]) h(frame.data, frame);
  }

  private emit<K extends keyof RoomEvents>(event: K, value: RoomEvents[K]): void {
    const set = this.eventHandlers.get(event);
    if (!set) return;
    for (const h of [...set]) (h as Handler<RoomEvents[K]>)(value);
  }

  private emitSession(): void {
    const s = this.session;
    if (s) this.emit("session", s);
  }

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  // ---- the board, for apps that use it ----

  /** Our own board changes apply at once: the server relays them only to the others. */
  private applyOwn(frame: Record<string, unknown>): void {
    if (frame.action === "stateUpdate") {
      this.board = (frame.data as Board) ?? [];
      this.emit("board", this.board);
    } else {
      this.applyBoard(frame as Frame);
    }
  }

  private applyBoard(frame: Frame): void {
    const id = frame.elementID as string | undefined;
    let board = this.board;
    switch (frame.action) {
      case "rehydrate":
        board = (frame.data as Board) ?? [];
        break;
      case "newWord":
        board = [...(board ?? []).filter((w) => w.id !== (frame.data as Word).id), frame.data as Word];
        break;
      case "moveEnd": {
        if (!board) return;
        const top = Math.max(0, ...board.map((w) => w.z ?? 0)) + 1;
        board = board.map((w) =>
          w.id === id ? { ...w, x: frame.finalX as number, y: frame.finalY as number, z: top } : w,
        );
        break;
      }
      case "delete":
        if (!board) return;
        board = board.filter((w) => w.id !== id);
        break;
      case "modify":
        if (!board) return;
        board = board.map((w) => (w.id === id ? { ...w, text: (frame.update as { text: string }).text } : w));
        break;
      default:
        return;
    }
    this.board = board;
    this.emit("board", board);
  }
}

interface NodeResponse {
  statusCode?: number;
  headers?: Record<string, string | string[] | undefined>;
  resume?: () => void;
}

function closeInfo(code: number, reason: string): CloseInfo {
  return {
    code,
    reason,
    replaced: code === CloseCode.REPLACED,
    kicked: code === CloseCode.KICKED,
    roomClosed: code === CloseCode.ROOM_CLOSED,
    serverStopping: code === CloseCode.GOING_AWAY,
  };
}

function member(e: PresenceEntry): PresenceMember {
  const m = e as PresenceEntry & { user?: string; role?: string };
  const out: PresenceMember = { id: m.id, name: m.name, color: m.color, away: m.away === true };
  if (m.user !== undefined) out.user = m.user;
  if (m.role !== undefined) out.role = m.role;
  return out;
}

/**
 * Brings a member list up to date, in the protocol's order: leaves, joins
 * (an id already listed is replaced where it stands), away, back, order.
 */
export function applyDiff(list: readonly PresenceMember[], diff: PresenceDiff): PresenceMember[] {
  const left = new Set(diff.leaves ?? []);
  const next = list.filter((m) => !left.has(m.id));
  for (const join of diff.joins ?? []) {
    const i = next.findIndex((m) => m.id === join.id);
    if (i >= 0) next[i] = member(join);
    else next.push(member(join));
  }
  for (const [ids, away] of [
    [diff.away ?? [], true],
    [diff.back ?? [], false],
  ] as const) {
    for (const id of ids) {
      const i = next.findIndex((m) => m.id === id);
      if (i >= 0) next[i] = { ...next[i], away };
    }
  }
  if (diff.order) {
    const rank = new Map(diff.order.map((id, i) => [id, i]));
    next.sort((a, b) => (rank.get(a.id) ?? Number.MAX_SAFE_INTEGER) - (rank.get(b.id) ?? Number.MAX_SAFE_INTEGER));
  }
  return next;
}

/** The server names the `opId` in the message of `duplicate_op` / `unavailable`. */
function opIdIn(message: string): number | undefined {
  const m = /opId (\d+)/.exec(message);
  return m ? Number(m[1]) : undefined;
}
