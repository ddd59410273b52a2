// The client against a live server + Envoy (started by tests/e2e/test_typescript_client.py, which passes
// AGENTOK_URL, AGENTOK_KEY (admin scope), AGENTOK_OTHER_KEY (another owner, chat scope), AGENTOK_EDGE_PORT).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AgentokClient, AgentokError, ChatStatus_Value, Code, type ChatEvent } from "../src/index.js";
import type { JsonObject } from "@bufbuild/protobuf";
import { CuttableProxy } from "./proxy.js";

const BASE_URL = env("AGENTOK_URL");
const KEY = env("AGENTOK_KEY");
const OTHER_KEY = env("AGENTOK_OTHER_KEY");
const EDGE_PORT = Number(env("AGENTOK_EDGE_PORT"));

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/e2e/test_typescript_client.py`);
  return value;
}

// A person (ALWAYS) talks with a fixed-reply agent, no model: each answer adds the person's message and "pong".
const ECHO_FLOW: JsonObject = {
  nodes: [
    { id: "i", type: "initializer", data: { name: "Initializer" } },
    { id: "u", type: "user", data: { name: "User", human_input_mode: "ALWAYS" } },
    { id: "a", type: "conversable", data: { name: "Agent", disable_llm: true, default_auto_reply: "pong" } },
  ],
  edges: [
    { source: "i", target: "u" },
    { source: "u", target: "a", type: "converse" },
  ],
};

/** Polls `probe` until it returns a value `accept` takes (every 50 ms, at most `timeoutMs`). */
async function eventually<T>(probe: () => Promise<T>, what: string, accept: (v: T) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await probe();
    if (accept(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last: ${String(last)}`);
}

async function rejectsWith(call: Promise<unknown>, code: Code, reason: string | RegExp): Promise<AgentokError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof AgentokError, `not an AgentokError: ${String(err)}`);
    assert.equal(err.code, code, `${err.codeName}: ${err.message}`);
    if (typeof reason === "string") assert.equal(err.reason, reason);
    else assert.match(err.reason, reason);
    assert.equal(err.domain, "agentok.ai");
    assert.ok(err.message.length > 0);
    return err;
  }
  assert.fail("the call succeeded");
}

const client = new AgentokClient({ baseUrl: BASE_URL, apiKey: KEY });
let flowId = "";

before(async () => {
  const { flow } = await client.createFlow({ name: "echo", flow: ECHO_FLOW });
  assert.ok(flow?.id);
  flowId = flow.id;
});

async function waitingChat(): Promise<string> {
  const { chat } = await client.createChat({ name: "ts", fromType: "flow", fromFlow: flowId });
  assert.ok(chat);
  await client.sendMessage({ chatId: chat.id, message: "hi" });
  await untilStatus(chat.id, ChatStatus_Value.wait_for_human_input);
  return chat.id;
}

async function untilStatus(chatId: string, status: ChatStatus_Value, afterSeq = 0n) {
  return eventually(
    async () => (await client.getChat({ chatId })).chat!,
    `chat ${chatId} to be ${ChatStatus_Value[status]} after seq ${afterSeq}`,
    (c) => c.status === status && c.lastSeq > afterSeq,
  );
}

describe("every RPC", () => {
  test("flows: create, get, list, delete", async () => {
    const { flow } = await client.createFlow({ name: "spare", flow: ECHO_FLOW });
    assert.equal((await client.getFlow({ flowId: flow!.id })).flow?.name, "spare");
    const { flows } = await client.listFlows({ pageSize: 100 });
    assert.ok(flows.some((f) => f.id === flow!.id));
    await client.deleteFlow({ flowId: flow!.id });
    await rejectsWith(client.getFlow({ flowId: flow!.id }), Code.NotFound, "FLOW_NOT_FOUND");
  });

  test("chats: create, send, input, history, list, cancel, delete", async () => {
    const chatId = await waitingChat();
    const waiting = await client.sendInput({ chatId, message: "again" });
    assert.ok(waiting.chat);
    const chat = await untilStatus(chatId, ChatStatus_Value.wait_for_human_input, waiting.chat.lastSeq);
    const { messages, nextPageToken } = await client.listMessages({ chatId, pageSize: 100 });
    assert.equal(nextPageToken, "");
    assert.deepEqual(
      messages.map((m) => m.content),
      ["hi", "pong", "again", "pong"],
    );
    assert.ok(messages.every((m, i) => i === 0 || m.seq > messages[i - 1]!.seq));
    const { chats } = await client.listChats({ pageSize: 100 });
    assert.ok(chats.some((c) => c.id === chatId));
    const cancelled = await client.cancelChat({ chatId });
    assert.ok(cancelled.chat && cancelled.chat.lastSeq >= chat.lastSeq);
    await eventually(
      async () => (await client.getChat({ chatId })).chat!.status,
      "the cancelled chat to leave its run",
      (s) => s !== ChatStatus_Value.running && s !== ChatStatus_Value.wait_for_human_input,
    );
    await client.deleteChat({ chatId });
    await rejectsWith(client.getChat({ chatId }), Code.NotFound, "CHAT_NOT_FOUND");
  });

  test("tools: create, get, list, update, delete", async () => {
    const { tool } = await client.createTool({
      name: "lookup",
      description: "Looks a word up.",
      parameters: { type: "object", properties: { word: { type: "string" } }, required: ["word"] },
      implementation: { case: "client", value: {} },
    });
    assert.ok(tool?.id);
    assert.equal((await client.getTool({ toolId: tool.id })).tool?.description, "Looks a word up.");
    assert.ok((await client.listTools({})).tools.some((t) => t.id === tool.id));
    const updated = await client.updateTool({
      toolId: tool.id,
      tool: { description: "Looks a word up, carefully." },
      updateMask: { paths: ["description"] },
    });
    assert.equal(updated.tool?.description, "Looks a word up, carefully.");
    assert.equal(updated.tool?.name, "lookup");
    await client.deleteTool({ toolId: tool.id });
    await rejectsWith(client.getTool({ toolId: tool.id }), Code.NotFound, "TOOL_NOT_FOUND");
  });

  test("API keys: create, list, delete; the new key works", async () => {
    const { apiKey, secret } = await client.createApiKey({ name: "made-by-ts" });
    assert.ok(apiKey && secret.startsWith(apiKey.prefix));
    const made = new AgentokClient({ baseUrl: BASE_URL, apiKey: secret });
    await made.listChats({});
    assert.ok((await client.listApiKeys({})).apiKeys.some((k) => k.id === apiKey.id));
    await client.deleteApiKey({ keyId: apiKey.id });
    await eventually(
      () => made.listChats({}).then(() => "accepted", (e: AgentokError) => e.reason),
      "the deleted key to be refused",
      (r) => r !== "accepted",
    );
    await rejectsWith(made.listChats({}), Code.Unauthenticated, /^API_KEY_/);
  });

  test("watch: replays, then ends after the run with untilFinished", async () => {
    const chatId = await waitingChat();
    const seen: ChatEvent[] = [];
    const watching = (async () => {
      for await (const event of client.watch(chatId, { untilFinished: true })) seen.push(event);
    })();
    await client.sendInput({ chatId, message: "exit" });
    await watching;
    const statuses = seen.flatMap((e) => (e.kind.case === "statusChanged" ? [e.kind.value.status] : []));
    assert.equal(statuses.at(-1), ChatStatus_Value.completed);
    assert.ok(seen.some((e) => e.kind.case === "messageAdded" && e.kind.value.content === "pong"));
  });
});

describe("errors carry the code and the reason", () => {
  test("not found", async () => {
    const err = await rejectsWith(client.getChat({ chatId: "no-such-chat" }), Code.NotFound, "CHAT_NOT_FOUND");
    assert.equal(err.codeName, "NOT_FOUND");
    assert.equal(err.metadata["chat_id"], "no-such-chat");
    assert.ok(err.requestId, "Envoy's x-request-id");
  });

  test("a bad request names its field", async () => {
    const err = await rejectsWith(client.createChat({ fromType: "flow" }), Code.InvalidArgument, /.+/);
    assert.ok(err.fieldViolations.some((v) => v.field === "from_flow"), JSON.stringify(err.fieldViolations));
  });

  test("the edge refuses a missing or unknown key as it refuses native gRPC", async () => {
    // No key at all: the client insists on a credential, so a fetch of the test's own drops it on the way.
    const dropKey: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers);
      headers.delete("x-api-key");
      return fetch(input, { ...init, headers });
    };
    const keyless = new AgentokClient({ baseUrl: BASE_URL, apiKey: "dropped", fetch: dropKey });
    await rejectsWith(keyless.listChats({}), Code.Unauthenticated, "API_KEY_MISSING");
    assert.throws(() => new AgentokClient({ baseUrl: BASE_URL } as never), TypeError);
    const wrong = new AgentokClient({ baseUrl: BASE_URL, apiKey: "ak_nope_nope" });
    await rejectsWith(wrong.listChats({}), Code.Unauthenticated, /^API_KEY_/);
  });

  test("another owner's chat does not exist for them; a chat key manages no keys", async () => {
    const chatId = (await client.createChat({ fromType: "flow", fromFlow: flowId })).chat!.id;
    const other = new AgentokClient({ baseUrl: BASE_URL, apiKey: OTHER_KEY });
    await rejectsWith(other.getChat({ chatId }), Code.NotFound, "CHAT_NOT_FOUND");
    await rejectsWith(other.listApiKeys({}), Code.PermissionDenied, "ADMIN_SCOPE_REQUIRED");
  });

  test("watch gives up on a refusal retrying cannot mend", async () => {
    const events = client.watch("no-such-chat");
    await rejectsWith(events.next(), Code.NotFound, "CHAT_NOT_FOUND");
  });
});

describe("a watch cut mid-stream resumes after the last seq it yielded", () => {
  const proxy = new CuttableProxy(EDGE_PORT);
  before(() => proxy.open());
  after(() => proxy.cut());

  test("no gap, no repeat", async () => {
    const chatId = await waitingChat();
    const through = new AgentokClient({ baseUrl: proxy.url, apiKey: KEY });
    const abort = new AbortController();
    const seen: ChatEvent[] = [];
    const watching = (async () => {
      for await (const event of through.watch(chatId, { signal: abort.signal, minBackoffMs: 50, maxBackoffMs: 200 })) {
        seen.push(event);
      }
    })();
    const isWaiting = (e: ChatEvent) =>
      e.kind.case === "statusChanged" && e.kind.value.status === ChatStatus_Value.wait_for_human_input;
    await eventually(async () => seen.filter(isWaiting).length, "the replayed wait", (n) => n >= 1);

    await proxy.cut();
    const beforeCut = seen.length;
    // While the watcher is cut off, the chat moves on twice.
    let chat = (await client.sendInput({ chatId, message: "one" })).chat!;
    chat = await untilStatus(chatId, ChatStatus_Value.wait_for_human_input, chat.lastSeq);
    chat = (await client.sendInput({ chatId, message: "two" })).chat!;
    chat = await untilStatus(chatId, ChatStatus_Value.wait_for_human_input, chat.lastSeq);
    assert.equal(seen.length, beforeCut, "nothing can reach a watcher that is cut off");

    await proxy.open();
    await client.sendInput({ chatId, message: "exit" });
    const final = await untilStatus(chatId, ChatStatus_Value.completed);
    await eventually(async () => seen.at(-1)?.seq ?? 0n, "the watcher to catch up", (s) => s >= final.lastSeq);
    abort.abort();
    await watching;

    // The whole history, read afresh in one stream.
    const all: bigint[] = [];
    for await (const event of client.watch(chatId, { untilFinished: true })) all.push(event.seq);
    assert.deepEqual(
      seen.map((e) => e.seq),
      all,
    );
    const contents = seen.flatMap((e) => (e.kind.case === "messageAdded" ? [e.kind.value.content] : []));
    assert.deepEqual(contents, ["hi", "pong", "one", "pong", "two", "pong"]);
  });
});
