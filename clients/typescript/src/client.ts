// The hand-written layer over the generated code: one method per RPC over gRPC-web (browsers and Node reach
// Envoy's one listener), every failure an AgentokError, and watch(), which survives dropped streams.
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AgentokError, toAgentokError } from "./errors.js";
import { ApiKeyService } from "./gen/agentok/v1/api_key_service_pb.js";
import type { ChatEvent } from "./gen/agentok/v1/chat_pb.js";
import { ChatService, type WatchChatRequestSchema } from "./gen/agentok/v1/chat_service_pb.js";
import { FlowService } from "./gen/agentok/v1/flow_service_pb.js";
import { ToolService } from "./gen/agentok/v1/tool_service_pb.js";

type Credentials = { apiKey: string; token?: never } | { token: string; apiKey?: never };

export type AgentokClientOptions = Credentials & {
  /** Envoy's address, e.g. http://127.0.0.1:8080 (a page on Envoy's own origin may pass location.origin). */
  baseUrl: string;
  /** A fetch of your own (tests, proxies); the global one otherwise. */
  fetch?: typeof globalThis.fetch;
  /** Deadline of each unary call in milliseconds (the edge bounds them anyway); none by default. */
  timeoutMs?: number;
};

export interface WatchOptions {
  /** Start after this sequence number: events with a greater one are replayed, then live ones follow. */
  afterSeq?: bigint;
  /** Stop the watch (the iterator then ends, without an error). */
  signal?: AbortSignal;
  /** End after the first run-end event (completed or error). */
  untilFinished?: boolean;
  /** Also stream message_delta events (a model's text as it writes it; live only). */
  includeDeltas?: boolean;
  /** Waits between reconnects grow from this (ms) ... */
  minBackoffMs?: number;
  /** ... to at most this (ms). */
  maxBackoffMs?: number;
}

// What a dropped or refused stream looks like: worth another try. Anything else (NOT_FOUND, PERMISSION_DENIED,
// UNAUTHENTICATED, INVALID_ARGUMENT ...) will fail the same way again and is thrown.
const RETRYABLE = new Set<Code>([
  Code.Unavailable,
  Code.Unknown,
  Code.Internal,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Canceled,
  Code.ResourceExhausted,
]);

type Init<D extends DescMessage> = MessageInitShape<D>;
type ChatClient = Client<typeof ChatService>;
type FlowClient = Client<typeof FlowService>;
type ToolClient = Client<typeof ToolService>;
type ApiKeyClient = Client<typeof ApiKeyService>;
/** The request a generated method takes (a message or its init shape). */
type Req<M> = M extends (request: infer Q, options?: CallOptions) => unknown ? Q : never;

export class AgentokClient {
  /** The generated clients themselves (their errors are connect's ConnectError, not AgentokError). */
  readonly chats: ChatClient;
  readonly flows: FlowClient;
  readonly tools: ToolClient;
  readonly apiKeys: ApiKeyClient;
  private readonly timeoutMs: number | undefined;

  constructor(options: AgentokClientOptions) {
    if (!options.apiKey === !options.token) {
      throw new TypeError("AgentokClient needs exactly one of apiKey and token");
    }
    const credential: [string, string] = options.apiKey
      ? ["x-api-key", options.apiKey]
      : ["authorization", `Bearer ${options.token}`];
    const auth: Interceptor = (next) => (request) => {
      request.header.set(...credential);
      return next(request);
    };
    const transport: Transport = createGrpcWebTransport({
      baseUrl: options.baseUrl.replace(/\/+$/, ""),
      interceptors: [auth],
      fetch: options.fetch,
    });
    this.chats = createClient(ChatService, transport);
    this.flows = createClient(FlowService, transport);
    this.tools = createClient(ToolService, transport);
    this.apiKeys = createClient(ApiKeyService, transport);
    this.timeoutMs = options.timeoutMs;
  }

  // Every unary method: the generated call (with the client's deadline), its failure as an AgentokError.
  private async call<Q, R>(method: (request: Q, options?: CallOptions) => Promise<R>, request: Q): Promise<R> {
    try {
      return await method(request, { timeoutMs: this.timeoutMs });
    } catch (err) {
      throw toAgentokError(err);
    }
  }

  // ChatService
  listChats(request: Req<ChatClient["listChats"]>) {
    return this.call(this.chats.listChats, request);
  }
  getChat(request: Req<ChatClient["getChat"]>) {
    return this.call(this.chats.getChat, request);
  }
  createChat(request: Req<ChatClient["createChat"]>) {
    return this.call(this.chats.createChat, request);
  }
  deleteChat(request: Req<ChatClient["deleteChat"]>) {
    return this.call(this.chats.deleteChat, request);
  }
  sendMessage(request: Req<ChatClient["sendMessage"]>) {
    return this.call(this.chats.sendMessage, request);
  }
  listMessages(request: Req<ChatClient["listMessages"]>) {
    return this.call(this.chats.listMessages, request);
  }
  sendInput(request: Req<ChatClient["sendInput"]>) {
    return this.call(this.chats.sendInput, request);
  }
  cancelChat(request: Req<ChatClient["cancelChat"]>) {
    return this.call(this.chats.cancelChat, request);
  }
  // FlowService
  createFlow(request: Req<FlowClient["createFlow"]>) {
    return this.call(this.flows.createFlow, request);
  }
  getFlow(request: Req<FlowClient["getFlow"]>) {
    return this.call(this.flows.getFlow, request);
  }
  listFlows(request: Req<FlowClient["listFlows"]>) {
    return this.call(this.flows.listFlows, request);
  }
  deleteFlow(request: Req<FlowClient["deleteFlow"]>) {
    return this.call(this.flows.deleteFlow, request);
  }
  // ToolService
  createTool(request: Req<ToolClient["createTool"]>) {
    return this.call(this.tools.createTool, request);
  }
  getTool(request: Req<ToolClient["getTool"]>) {
    return this.call(this.tools.getTool, request);
  }
  listTools(request: Req<ToolClient["listTools"]>) {
    return this.call(this.tools.listTools, request);
  }
  updateTool(request: Req<ToolClient["updateTool"]>) {
    return this.call(this.tools.updateTool, request);
  }
  deleteTool(request: Req<ToolClient["deleteTool"]>) {
    return this.call(this.tools.deleteTool, request);
  }
  // ApiKeyService
  createApiKey(request: Req<ApiKeyClient["createApiKey"]>) {
    return this.call(this.apiKeys.createApiKey, request);
  }
  listApiKeys(request: Req<ApiKeyClient["listApiKeys"]>) {
    return this.call(this.apiKeys.listApiKeys, request);
  }
  deleteApiKey(request: Req<ApiKeyClient["deleteApiKey"]>) {
    return this.call(this.apiKeys.deleteApiKey, request);
  }

  /** One WatchChat stream as it is (no reconnecting): what watch() is made of. */
  async *watchChat(
    request: Init<typeof WatchChatRequestSchema>,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<ChatEvent> {
    try {
      for await (const response of this.chats.watchChat(request, options)) {
        if (response.event) yield response.event;
      }
    } catch (err) {
      throw toAgentokError(err);
    }
  }

  /**
   * A chat's events (keep-alives left out) after `afterSeq`, for as long as the caller iterates: a stream that
   * drops (network, Envoy or server restart, the server's shutdown notice) is reopened after the last seq
   * yielded, with growing waits, so nothing is missed and nothing is yielded twice. Ends when the chat is
   * deleted, with `untilFinished` after the run's end, or when `signal` aborts; throws an AgentokError for a
   * refusal that retrying cannot mend (NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED ...).
   */
  async *watch(chatId: string, options: WatchOptions = {}): AsyncGenerator<ChatEvent> {
    const { signal, untilFinished = false, includeDeltas = false } = options;
    const minBackoff = options.minBackoffMs ?? 100;
    const maxBackoff = options.maxBackoffMs ?? 5000;
    let last = options.afterSeq ?? 0n;
    let failures = 0;
    while (!signal?.aborted) {
      try {
        const stream = this.watchChat({ chatId, afterSeq: last, untilFinished, includeDeltas }, { signal });
        let shutdown = false;
        for await (const event of stream) {
          failures = 0;
          const kind = event.kind.case;
          if (kind === "keepAlive") continue;
          if (kind === "serverShutdown") {
            shutdown = true; // the server ends the stream next: reconnect at once
            continue;
          }
          // Deltas repeat the latest seq (they are live only, never replayed); everything else moves it on.
          if (kind !== "messageDelta") {
            if (event.seq <= last) continue;
            last = event.seq;
          }
          yield event;
          if (kind === "chatDeleted") return;
          if (untilFinished && kind === "statusChanged") {
            const status = event.kind.value.status;
            if (status === 4 || status === 5) return; // completed, error
          }
        }
        if (untilFinished && !shutdown) return; // the server ended it where it was asked to
        if (shutdown) continue;
      } catch (err) {
        if (signal?.aborted) return;
        const error = toAgentokError(err);
        if (!RETRYABLE.has(error.code)) throw error;
      }
      const wait = Math.min(maxBackoff, minBackoff * 2 ** Math.min(failures, 16));
      failures += 1;
      if (!(await sleep(wait * (0.5 + Math.random() / 2), signal))) return;
    }
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export { AgentokError };
