/* Generated from protocol/schema/*.schema.json by scripts/generate-types.mjs
 * (json-schema-to-typescript). Do not edit: run `npm run generate`. */
/**
 * Any frame, in either direction.
 */
export type AnyFrame = ClientFrame | ServerFrame;
/**
 * One frame from a client: the room it is tagged with (the original's
 * client tags every message) and the message.
 */
export type ClientFrame = ClientFrame1 & ClientFrame2;
export type ClientFrame1 =
  | {
      action: "newClient";
      epoch?: number | null;
      lastSeq?: number | null;
      resumeToken?: string | null;
      token?: string | null;
    }
  | {
      action: "refreshToken";
      token: string;
    }
  | {
      action: "echo";
      data?: {
        [k: string]: unknown;
      };
    }
  | {
      action: "talkToRoom";
      data?: {
        [k: string]: unknown;
      };
    }
  | {
      action: "privateMessage";
      data?: {
        [k: string]: unknown;
      };
      to: ClientId;
    }
  | {
      action: "stateUpdate";
      data: Board;
    }
  | {
      action: "emptyRoom";
    }
  | {
      action: "newWord";
      data: Word;
    }
  | {
      action: "moving";
      dx: number;
      dy: number;
      elementID: WordId;
    }
  | {
      action: "moveEnd";
      elementID: WordId;
      finalX: number;
      finalY: number;
    }
  | {
      action: "freeze";
      elementID: WordId;
    }
  | {
      action: "unfreeze";
      elementID: WordId;
    }
  | {
      action: "delete";
      elementID: WordId;
    }
  | {
      action: "modify";
      elementID: WordId;
      update: WordUpdate;
    }
  | CustomMessage;
/**
 * A connection's id, unique for the life of a server process.
 */
export type ClientId = number;
/**
 * A word's id on a board: 1 to 64 bytes without control characters.
 */
export type WordId = string;
/**
 * All the words of one room, in the order they were added.
 */
export type Board = Word[];
/**
 * A server frame: a message, plus the room's sequence number and epoch on
 * every message that belongs to a room's history.
 */
export type ServerFrame = ServerFrame1 & ServerFrame2;
export type ServerFrame1 =
  | {
      action: "hello";
      data: Hello;
    }
  | {
      action: "talkToRoom";
      data: unknown;
      from?: Member | null;
    }
  | {
      action: "echo";
      data: unknown;
    }
  | {
      action: "privateMessage";
      data: unknown;
      from: Member;
    }
  | {
      action: "presence";
      data: PresenceEntry[];
    }
  | {
      action: "presenceDiff";
      data: PresenceDiff;
    }
  | {
      action: "roomFull";
      data: string[];
    }
  | {
      action: "error";
      data: ErrorBody;
    }
  | {
      action: "hydrate";
      data: Board;
    }
  | {
      action: "rehydrate";
      data: Board;
      from?: Member | null;
    }
  | {
      action: "newRoom";
    }
  | {
      action: "requestCurrentState";
    }
  | {
      action: "newWord";
      data: Word;
      from: Member;
    }
  | {
      action: "moving";
      dx: number;
      dy: number;
      elementID: WordId;
      from: Member;
    }
  | {
      action: "moveEnd";
      elementID: WordId;
      finalX: number;
      finalY: number;
      from: Member;
    }
  | {
      action: "freeze";
      clientName: string;
      color: string;
      elementID: WordId;
      from: Member;
    }
  | {
      action: "unfreeze";
      elementID: WordId;
      from: Member;
    }
  | {
      action: "delete";
      elementID: WordId;
      from: Member;
    }
  | {
      action: "modify";
      elementID: WordId;
      from: Member;
      update: WordUpdate;
    }
  | {
      action: "resumed";
      data: Resumed;
    }
  | CustomMessage1;
/**
 * What went wrong, as a stable machine-readable code.
 */
export type ErrorCode =
  | "malformed_json"
  | "binary_frame"
  | "invalid_message"
  | "invalid_room_name"
  | "not_joined"
  | "wrong_room"
  | "rate_limited"
  | "unknown_word"
  | "duplicate_word"
  | "word_locked"
  | "board_too_large"
  | "too_many_locks"
  | "unknown_client"
  | "unavailable"
  | "too_many_rooms"
  | "reserved_action"
  | "duplicate_op"
  | "forbidden"
  | "unauthorized"
  | "token_expired";

/**
 * One magnet on the fridge.
 */
export interface Word {
  id: WordId;
  text: string;
  x: number;
  y: number;
  /**
   * Stacking order: higher is in front. A dropped word gets the highest.
   */
  z?: number;
}
/**
 * The `update` of a `modify` atom.
 */
export interface WordUpdate {
  text: string;
}
/**
 * An action the server does not know: relayed to the room with its fields
 * unchanged (plus the sender's `from`). With `"volatile": true` it is
 * relayed like `moving`: no `seq`, never kept in history or replayed, and
 * dropped rather than queued for a lagging member (a typing indicator).
 */
export interface CustomMessage {
  action: string;
  [k: string]: unknown;
}
export interface ClientFrame2 {
  /**
   * The client's number for this operation: a non-negative integer that
   * grows with each operation of one session (it may skip). Optional
   * (the original protocol has none). The room applies a member's
   * operation only if its `opId` is above the last one it applied from
   * that member, so a client that cannot tell whether an operation
   * arrived (its socket or the node behind it died) sends it again with
   * the same `opId` after resuming, and it counts once; `resumed`
   * carries `lastOp`, the last one applied. `echo` and `newClient`
   * ignore it.
   */
  opId?: number | null;
  /**
   * The room the client believes it is in. For `newClient` it names the
   * room to join; otherwise it must be absent or the joined room.
   */
  room?: string | null;
}
/**
 * The `data` of `hello`.
 */
export interface Hello {
  color: string;
  id: ClientId;
  name: string;
  /**
   * Present this in `newClient` after a dropped connection to resume.
   */
  resumeToken?: string | null;
}
/**
 * Who someone is in a room, as the server stamps it on what they send.
 */
export interface Member {
  /**
   * CSS colour, `#rrggbb`.
   */
  color: string;
  id: ClientId;
  /**
   * Random readable name without spaces, e.g. `brave-otter`.
   */
  name: string;
}
/**
 * One member in a `presence` list.
 */
export interface PresenceEntry {
  /**
   * The member's connection dropped; its seat is held for a while.
   */
  away?: boolean;
  /**
   * CSS colour, `#rrggbb`.
   */
  color: string;
  id: ClientId;
  /**
   * Random readable name without spaces, e.g. `brave-otter`.
   */
  name: string;
  /**
   * `viewer` for a read-only member; absent for a full member.
   */
  role?: "member" | "viewer";
  /**
   * The app's user id (the token's `sub`), for a member that joined
   * with a token: two seats of one user (two tabs) share it.
   */
  user?: string | null;
}
/**
 * The `data` of `presenceDiff`: how the room's member list changed since
 * the last `presence` or `presenceDiff` this client got. Applied in field
 * order: leaves, joins, away, back, order. Empty fields are left out.
 */
export interface PresenceDiff {
  /**
   * Members whose connection dropped; their seats are held for a resume.
   */
  away?: ClientId[];
  /**
   * Away members who are back.
   */
  back?: ClientId[];
  /**
   * New members, appended to the end of the list in this order (an id
   * already listed is replaced where it stands).
   */
  joins?: PresenceEntry[];
  /**
   * Members who gave their seat up (left, or their resume window ended).
   */
  leaves?: ClientId[];
  /**
   * Every member's id, most recently active first: sent only when the
   * order is not the old one with leaves taken out and joins appended
   * (someone became the most recently active).
   */
  order?: ClientId[] | null;
}
/**
 * The `data` of an `error` frame.
 */
export interface ErrorBody {
  code: ErrorCode;
  /**
   * Human-readable detail; not stable.
   */
  message: string;
}
/**
 * The `data` of `resumed`.
 */
export interface Resumed {
  color: string;
  id: ClientId;
  /**
   * The highest `opId` of this session the room applied (absent: none,
   * or the seat was not kept). Operations sent with a higher `opId`
   * that the client is not sure arrived should be sent again, with the
   * same `opId`; lower ones were applied and would be dropped as
   * duplicates.
   */
  lastOp?: number | null;
  name: string;
  /**
   * Every message after `lastSeq` was replayed before this frame.
   */
  recovered: boolean;
  resumeToken: string;
}
/**
 * An action the server does not know: relayed to the room with its fields
 * unchanged (plus the sender's `from`). With `"volatile": true` it is
 * relayed like `moving`: no `seq`, never kept in history or replayed, and
 * dropped rather than queued for a lagging member (a typing indicator).
 */
export interface CustomMessage1 {
  action: string;
  [k: string]: unknown;
}
export interface ServerFrame2 {
  epoch?: number | null;
  seq?: number | null;
}
