// Types of @hookbox/sdk, hand-written beside src/. test/zulip.test.js
// checks that parsed fixture events have exactly the fields declared here.

export type Priority = 'critical' | 'high' | 'normal' | 'low';
export declare const PRIORITIES: readonly Priority[];

/** One event delivered to a handler. */
export declare class Event {
  constructor(fields: Partial<Event> & { type: string });
  id: string;
  type: string;
  tenant: string;
  source: string;
  timeMs: number;
  priority: Priority;
  /** The payload as JSON text. */
  payload: string;
  metadata: [string, string][];
  key?: string;
  attempt: number;
  static build(type: string, payload?: unknown, fields?: Partial<Event>): Event;
  static fromZulip(raw: object, fields?: Partial<Event>): Event;
  /** The payload parsed; malformed JSON is a fatal HandlerError. */
  json<T = unknown>(): T;
  zulip(): zulip.ZulipEvent;
  meta(key: string): string | undefined;
  readonly isRetry: boolean;
}

/** Thrown from a handler: `handler_error`, retried only when `retryable`. */
export declare class HandlerError extends Error {
  constructor(message: string, options?: { retryable?: boolean });
  retryable: boolean;
  static fatal(message: string): HandlerError;
  static transient(message: string): HandlerError;
}

/** The fake host's error for an ungranted call (`capability_denied` in Hookbox). */
export declare class CapabilityDenied extends Error {}

export declare function config<T = any>(): T;
export declare function nowMs(): number;

export declare const kv: {
  get(key: string): Uint8Array | undefined;
  getString(key: string): string | undefined;
  set(key: string, value: string | Uint8Array, options?: { ttlMs?: number }): void;
  delete(key: string): boolean;
  increment(key: string, delta?: number): number;
  compareAndSwap(key: string, expected: string | Uint8Array | undefined, next: string | Uint8Array | undefined): boolean;
};

type LogFn = (message: string, fields?: Record<string, unknown>) => void;
export declare const log: { trace: LogFn; debug: LogFn; info: LogFn; warn: LogFn; error: LogFn };

export declare function emit(
  type: string,
  payload?: unknown,
  options?: { tenant?: string; metadata?: Record<string, string>; key?: string; priority?: Priority },
): void;

/** The WIT `handle` export running `fn` under the SDK's error rule. */
export declare function exportHandler(fn: (event: Event) => void): (event: unknown) => void;

export declare namespace zulip {
  const SEND_MESSAGE_EVENT: 'zulip.send_message';
  const ADD_REACTION_EVENT: 'zulip.add_reaction';
  interface RecipientUser { id: number; email?: string; fullName?: string }
  interface Message {
    id: number;
    senderId?: number;
    senderEmail?: string;
    senderFullName?: string;
    content: string;
    type: string;
    streamId?: number;
    streamName?: string;
    directRecipients: RecipientUser[];
    topic?: string;
    timestamp?: number;
    avatarUrl?: string;
    isDirect: boolean;
  }
  interface MessageEvent { kind: 'message'; message: Message; flags: string[]; mentionsMe: boolean }
  interface UpdateMessageEvent {
    kind: 'update_message';
    messageId: number;
    messageIds: number[];
    userId?: number;
    streamId?: number;
    newStreamId?: number;
    origSubject?: string;
    subject?: string;
    content?: string;
    renderingOnly?: boolean;
    contentChanged: boolean;
    moved: boolean;
  }
  interface DeleteMessageEvent {
    kind: 'delete_message';
    messageType: string;
    messageId?: number;
    messageIds: number[];
    deletedIds: number[];
    streamId?: number;
    topic?: string;
  }
  interface ReactionEvent {
    kind: 'reaction';
    op: 'add' | 'remove';
    messageId: number;
    userId?: number;
    emojiName: string;
    emojiCode: string;
    reactionType: string;
  }
  interface HeartbeatEvent { kind: 'heartbeat' }
  interface Stream {
    streamId: number;
    name: string;
    description?: string;
    renderedDescription?: string;
    inviteOnly?: boolean;
    isWebPublic?: boolean;
    isArchived?: boolean;
    historyPublicToSubscribers?: boolean;
    creatorId?: number;
    dateCreated?: number;
    firstMessageId?: number;
    messageRetentionDays?: number;
    subscriberCount?: number;
    folderId?: number;
    streamWeeklyTraffic?: number;
  }
  interface Subscription { stream: Stream; color?: string; isMuted?: boolean; pinToTop?: boolean; subscribers: number[] }
  type SubscriptionEvent =
    | { kind: 'subscription'; op: 'add'; subscriptions: Subscription[] }
    | { kind: 'subscription'; op: 'remove'; subscriptions: { streamId: number; name?: string }[] }
    | { kind: 'subscription'; op: 'update'; streamId: number; property: string; value: unknown }
    | { kind: 'subscription'; op: 'peer_add' | 'peer_remove'; streamIds: number[]; userIds: number[] };
  type StreamEvent =
    | { kind: 'stream'; op: 'create'; streams: Stream[] }
    | { kind: 'stream'; op: 'delete'; streams: { streamId: number }[]; streamIds: number[]; deletedIds: number[] }
    | {
        kind: 'stream';
        op: 'update';
        streamId: number;
        name?: string;
        property: string;
        value: unknown;
        renderedDescription?: string;
        historyPublicToSubscribers?: boolean;
        isWebPublic?: boolean;
      };
  interface RealmUser {
    userId: number;
    email?: string;
    deliveryEmail?: string;
    fullName: string;
    role?: number;
    isBot?: boolean;
    isActive?: boolean;
    timezone?: string;
    dateJoined?: string;
    avatarUrl?: string;
    botOwnerId?: number;
  }
  type RealmUserEvent =
    | { kind: 'realm_user'; op: 'add'; person: RealmUser }
    | { kind: 'realm_user'; op: 'remove'; person: { userId: number; fullName?: string } }
    /** `changes`: the raw JSON fields that changed (snake_case, as Zulip sends them). */
    | { kind: 'realm_user'; op: 'update'; person: { userId: number; changes: Record<string, unknown> } };
  type RealmEvent =
    | { kind: 'realm'; op: 'update'; property: string; value: unknown }
    | { kind: 'realm'; op: 'update_dict'; property: string; data: Record<string, unknown> }
    | { kind: 'realm'; op: 'deactivated'; realmId: number };
  interface UserGroup {
    id: number;
    name: string;
    description?: string;
    members: number[];
    directSubgroupIds: number[];
    creatorId?: number;
    dateCreated?: number;
    isSystemGroup?: boolean;
    deactivated?: boolean;
  }
  type UserGroupEvent =
    | { kind: 'user_group'; op: 'add'; group: UserGroup }
    | { kind: 'user_group'; op: 'update'; groupId: number; data: Record<string, unknown> }
    | { kind: 'user_group'; op: 'remove'; groupId: number }
    | { kind: 'user_group'; op: 'add_members' | 'remove_members'; groupId: number; userIds: number[] }
    | { kind: 'user_group'; op: 'add_subgroups' | 'remove_subgroups'; groupId: number; directSubgroupIds: number[] };
  interface TypingUser { userId: number; email?: string }
  interface TypingEvent {
    kind: 'typing';
    op: 'start' | 'stop';
    sender: TypingUser;
    messageType: string;
    recipients: TypingUser[];
    streamId?: number;
    topic?: string;
  }
  interface UserStatusEvent {
    kind: 'user_status';
    userId: number;
    away?: boolean;
    statusText?: string;
    emojiName?: string;
    emojiCode?: string;
    reactionType?: string;
  }
  interface UserPresence { userId: number; status: 'active' | 'idle'; timestamp: number }
  interface PresenceEvent {
    kind: 'presence';
    userId?: number;
    email?: string;
    serverTimestamp?: number;
    /** Legacy shape: per client (raw JSON). */
    presence: Record<string, unknown>;
    /** Modern shape: by user id (raw JSON). */
    presences: Record<string, unknown>;
    /** Each user's status from either shape. */
    users: UserPresence[];
  }
  interface RealmEmoji { id: string; name: string; sourceUrl?: string; stillUrl?: string; deactivated?: boolean; authorId?: number }
  type RealmEmojiEvent =
    | { kind: 'realm_emoji'; op: 'update'; realmEmoji: Record<string, RealmEmoji> }
    | { kind: 'realm_emoji'; op: 'add'; emoji: RealmEmoji }
    | { kind: 'realm_emoji'; op: 'update_one'; emojiId: string; data: Record<string, unknown> };
  interface OtherEvent { kind: 'other'; type: string; raw: Record<string, unknown> }
  type ZulipEvent =
    | MessageEvent
    | UpdateMessageEvent
    | DeleteMessageEvent
    | ReactionEvent
    | SubscriptionEvent
    | StreamEvent
    | RealmUserEvent
    | RealmEvent
    | UserGroupEvent
    | TypingEvent
    | UserStatusEvent
    | PresenceEvent
    | RealmEmojiEvent
    | HeartbeatEvent
    | OtherEvent;
  function hookboxType(raw: unknown): string;
  function parse(raw: unknown): ZulipEvent;
  function parseMessage(raw: unknown): Message;
  function sendMessagePayload(message: Message, content: string): object | undefined;
  function reply(message: Message, content: string): boolean;
  function addReaction(messageId: number, emojiName: string, options?: { emojiCode?: string; reactionType?: string }): void;
}
