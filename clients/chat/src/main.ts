// The chat room at /chat/<room>: a second app on attractio, written only
// with the TypeScript client (clients/js). Chat lines are `talkToRoom`
// frames ({text, at}), kept in the room's history, so a client that drops
// gets them all back once; "is typing" is a custom action sent volatile,
// never kept. The session and the lines seen so far live in
// sessionStorage, so a reload resumes the same member and misses nothing.
import { connect, type From, type PresenceMember, type Room, type Session } from "../../js/src/index.js";

interface Line {
  /** The room's `seq`, when the server numbered it (others' lines, welcome, goodbye). */
  seq?: number;
  from?: From;
  text: string;
  /** When it was written (ms since the epoch), as its sender's clock said. */
  at: number;
  mine?: boolean;
}

interface Saved {
  session: Session | null;
  lines: Line[];
}

/** Lines kept for a reload; the room's history keeps its own bound. */
const KEEP_LINES = 500;
/** A typing indicator shows this long after the last `typing`. */
const TYPING_SHOWN_MS = 3000;
/** `typing` goes out at most this often while keys are pressed. */
const TYPING_EVERY_MS = 1500;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const roomName = decodeURIComponent(location.pathname.split("/")[2] ?? "lobby") || "lobby";
const storageKey = `attractio-chat:${roomName}`;
const saved = load();
const lines: Line[] = saved.lines;
const typing = new Map<number, { name: string; until: number }>();

$("room").textContent = roomName;
document.title = `${roomName} · attractio chat`;

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const room: Room = connect(`${scheme}//${location.host}/ws`, {
  room: roomName,
  session: saved.session ?? undefined,
});
// Tests and the curious can reach the room object from the console.
(window as unknown as { chatRoom: Room }).chatRoom = room;

for (const line of lines) show(line);

room.on("talkToRoom", (data, frame) => {
  const body = typeof data === "object" && data !== null ? (data as { text?: unknown; at?: unknown }) : null;
  const text = body && typeof body.text === "string" ? body.text : String(data);
  const at = body && typeof body.at === "number" ? body.at : Date.now();
  add({ seq: frame.seq ?? undefined, from: frame.from ?? undefined, text, at });
  if (frame.from) typing.delete(frame.from.id);
  showTyping();
});

room.on("typing", (_data, frame) => {
  if (!frame.from || frame.from.id === room.me?.id) return;
  typing.set(frame.from.id, { name: frame.from.name, until: Date.now() + TYPING_SHOWN_MS });
  showTyping();
});
setInterval(showTyping, 1000);

room.onEvent("presence", showPeople);
room.onEvent("me", () => showPeople(room.presence));
room.onEvent("session", save);
room.onEvent("roomFull", (rooms) => {
  add({ text: `This room is full. Try ${rooms.map((r) => `/chat${r}`).join(", ")}.`, at: Date.now() });
});
room.onEvent("notRecovered", () => {
  add({ text: "The server lost this room's recent history: lines written meanwhile may be missing.", at: Date.now() });
});
room.onEvent("error", (e) => {
  if (e.code === "rate_limited") add({ text: "Slow down: that line was not sent.", at: Date.now() });
});

room.onEvent("state", showStatus);
room.onEvent("reconnecting", (r) => {
  $("connection-status").textContent = `reconnecting (try ${r.attempt})…`;
});
room.onEvent("closed", (c) => {
  const why = c.replaced ? "open in another tab" : "disconnected";
  $("connection-status").textContent = why;
  $("take-back").hidden = !c.replaced;
});
$("take-back").addEventListener("click", () => {
  $("take-back").hidden = true;
  room.reconnect();
});
showStatus(room.state);
// A reload (or a closed tab) keeps the seat for the server's resume window:
// the reloaded page resumes it and gets what it missed.
addEventListener("pagehide", () => {
  save();
  room.suspend();
});

const input = $<HTMLInputElement>("chat-input");
let lastTyping = 0;
input.addEventListener("input", () => {
  const now = Date.now();
  if (input.value && now - lastTyping > TYPING_EVERY_MS) {
    lastTyping = now;
    room.send("typing", null, { volatile: true });
  }
});
$<HTMLFormElement>("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  const at = Date.now();
  // Sent now, or queued and sent after the reconnect: shown at once either way.
  if (!room.send("talkToRoom", { text, at })) {
    add({ text: "Too much waiting to be sent while offline: that line was dropped.", at });
    return;
  }
  input.value = "";
  lastTyping = 0;
  add({ from: room.me ?? undefined, text, at, mine: true });
});

function add(line: Line): void {
  lines.push(line);
  if (lines.length > KEEP_LINES) lines.splice(0, lines.length - KEEP_LINES);
  show(line);
  save();
}

function show(line: Line): void {
  const li = document.createElement("li");
  if (!line.from) li.className = "system";
  if (line.mine) li.classList.add("mine");
  if (line.seq !== undefined) li.dataset.seq = String(line.seq);
  if (line.from) {
    const who = document.createElement("span");
    who.className = "who";
    who.style.color = line.from.color;
    who.textContent = line.from.name;
    li.append(who);
  }
  const when = document.createElement("time");
  when.className = "when";
  when.dateTime = new Date(line.at).toISOString();
  when.textContent = new Date(line.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  li.append(when);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = line.text;
  li.append(text);
  const list = $("chat-log");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
  list.append(li);
  if (atBottom || line.mine) list.scrollTop = list.scrollHeight;
}

function showPeople(people: readonly PresenceMember[]): void {
  const ul = $("people");
  ul.replaceChildren(
    ...people.map((p) => {
      const li = document.createElement("li");
      if (p.away) li.className = "away";
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = p.color;
      const name = document.createElement("span");
      name.textContent = p.name + (p.id === room.me?.id ? " (you)" : "") + (p.away ? " · away" : "");
      li.append(dot, name);
      return li;
    }),
  );
  $("count").textContent = `(${people.length})`;
}

function showTyping(): void {
  const now = Date.now();
  const names = [...typing.entries()].filter(([, t]) => t.until > now).map(([, t]) => t.name);
  for (const [id, t] of typing) if (t.until <= now) typing.delete(id);
  $("typing").textContent =
    names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

function showStatus(state: string): void {
  const status = $("connection-status");
  // The class and text the browser tests wait for (as on the board).
  const shown = { connecting: "connecting", open: "connected", reconnecting: "reconnecting", closed: "disconnected" }[state] ?? state;
  status.className = `status ${shown}`;
  status.textContent = state === "open" || state === "closed" ? shown : `${shown}…`;
}

function load(): Saved {
  try {
    const raw = sessionStorage.getItem(storageKey);
    if (raw) return JSON.parse(raw) as Saved;
  } catch {
    // Storage off or the saved text unreadable: start afresh.
  }
  return { session: null, lines: [] };
}

function save(): void {
  try {
    sessionStorage.setItem(storageKey, JSON.stringify({ session: room.session, lines } satisfies Saved));
  } catch {
    // Full or off: a reload then starts afresh.
  }
}
