// The console: plain DOM over the TypeScript client. Views by location.hash: #/ (chats, new chat), #/chats/<id>.
// The API key lives in sessionStorage only (gone with the tab; never in a URL), and the calls go to the page's
// own origin, the Envoy that served it: no CORS.
import {
  AgentokClient,
  AgentokError,
  ChatStatus_Value,
  MessageType_Value,
  type Chat,
  type ChatEvent,
  type Message,
} from "../../clients/typescript/src/index.ts";
import { h, manualCandidates, statusBadge } from "./view.ts";

const KEY_STORAGE = "agentok.apiKey";
const CHATS_REFRESH_MS = 2000;
const app = document.getElementById("app")!;
const errorBox = document.getElementById("error")!;
const signOut = document.getElementById("sign-out")!;

let client: AgentokClient | undefined;
// What the current view started (a watch, a timer): stopped when the view changes.
let viewAbort = new AbortController();

function connect(apiKey: string): AgentokClient {
  return new AgentokClient({ baseUrl: location.origin, apiKey });
}

/** Shows an error as the service words it (its reason beside it), or hides the box. */
function showError(err: unknown): void {
  if (err === undefined) {
    errorBox.hidden = true;
    return;
  }
  const text = err instanceof AgentokError ? `${err.message}${err.reason ? ` (${err.reason})` : ""}` : String(err);
  errorBox.replaceChildren(h("span", {}, text), h("button", { class: "quiet", onclick: () => showError(undefined) }, "×"));
  errorBox.hidden = false;
}

/** Runs an action of the person's; its failure is shown, not thrown. */
async function act(action: () => Promise<unknown>): Promise<void> {
  try {
    showError(undefined);
    await action();
  } catch (err) {
    showError(err);
  }
}

function signInView(): void {
  const key = h("input", { type: "password", name: "api-key", autocomplete: "off", placeholder: "API key", required: "" });
  const form = h("form", { class: "card" }, h("h1", {}, "Sign in"), h("label", {}, "API key", key), h("button", {}, "Sign in"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const candidate = connect((key as HTMLInputElement).value.trim());
    void act(async () => {
      await candidate.listChats({ pageSize: 1 }); // the key works
      sessionStorage.setItem(KEY_STORAGE, (key as HTMLInputElement).value.trim());
      client = candidate;
      route();
    });
  });
  app.replaceChildren(form);
}

async function chatsView(api: AgentokClient, signal: AbortSignal): Promise<void> {
  const list = h("ul", { class: "chats", "aria-label": "chats" });
  const flowSelect = h("select", { name: "flow", required: "" }) as HTMLSelectElement;
  const name = h("input", { name: "name", placeholder: "Chat name (optional)" }) as HTMLInputElement;
  const create = h("form", { class: "card row" }, h("h2", {}, "New chat"), flowSelect, name, h("button", {}, "Create"));
  create.addEventListener("submit", (e) => {
    e.preventDefault();
    void act(async () => {
      const { chat } = await api.createChat({ name: name.value, fromType: "flow", fromFlow: flowSelect.value });
      location.hash = `#/chats/${chat!.id}`;
    });
  });
  app.replaceChildren(create, h("section", { class: "card" }, h("h2", {}, "Chats"), list));

  const { flows } = await api.listFlows({ pageSize: 100 });
  flowSelect.replaceChildren(...flows.map((f) => h("option", { value: f.id }, f.name || f.id)));
  if (!flows.length) flowSelect.replaceChildren(h("option", { value: "" }, "No flows yet: create one with the API"));

  // Live status: the first page again every couple of seconds (one cheap call, whatever the number of chats).
  while (!signal.aborted) {
    const { chats } = await api.listChats({ pageSize: 50 });
    list.replaceChildren(
      ...chats.map((c) =>
        h("li", {}, h("a", { href: `#/chats/${c.id}` }, c.name || c.id), statusBadge(c.status)),
      ),
    );
    if (!chats.length) list.replaceChildren(h("li", { class: "muted" }, "No chats yet."));
    await new Promise((r) => setTimeout(r, CHATS_REFRESH_MS));
  }
}

function messageItem(m: Message): HTMLElement {
  const who = m.type === MessageType_Value.tool ? `${m.sender} (tool)` : m.sender || MessageType_Value[m.type];
  return h("li", { class: `message ${MessageType_Value[m.type]}` }, h("div", { class: "sender" }, who), h("div", { class: "content" }, m.content || "(empty)"));
}

async function chatView(api: AgentokClient, chatId: string, signal: AbortSignal): Promise<void> {
  const { chat } = await api.getChat({ chatId });
  let current: Chat = chat!;
  const title = h("h1", {}, current.name || current.id);
  const badge = h("span", {});
  const history = h("ol", { class: "history", "aria-label": "history" });
  const pending = h("section", { class: "card pending", "aria-label": "question" });
  const composer = h("section", { class: "card" });
  const actions = h(
    "div",
    { class: "row" },
    h("button", { class: "quiet", onclick: () => void act(() => api.cancelChat({ chatId })) }, "Cancel run"),
    h("button", {
      class: "danger",
      onclick: () => void act(async () => {
        if (!confirm("Delete this chat and its history?")) return;
        await api.deleteChat({ chatId });
        location.hash = "#/";
      }),
    }, "Delete"),
  );
  app.replaceChildren(h("div", { class: "title" }, title, badge), history, pending, composer, actions);

  const answer = (message: string) => act(() => api.sendInput({ chatId, message }));
  const render = (status: ChatStatus_Value, prompt: string) => {
    badge.replaceChildren(statusBadge(status));
    const waiting = status === ChatStatus_Value.wait_for_human_input;
    pending.hidden = !waiting;
    if (waiting) {
      const text = h("textarea", { name: "answer", rows: "3", placeholder: "Your answer" }) as HTMLTextAreaElement;
      const form = h(
        "form",
        {},
        h("label", {}, h("div", { class: "prompt" }, prompt || "Your turn."), text),
        h("div", { class: "row" }, h("button", {}, "Send answer"),
          h("button", { type: "button", class: "quiet", onclick: () => void answer("") }, "Skip"),
          h("button", { type: "button", class: "quiet", onclick: () => void answer("exit") }, "Exit")),
      );
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        void answer(text.value);
      });
      const candidates = manualCandidates(prompt);
      const picks = candidates.length
        ? [h("div", { class: "row candidates", "aria-label": "next speaker" },
            ...candidates.map((c) => h("button", { type: "button", onclick: () => void answer(c.number) }, c.name)))]
        : [];
      pending.replaceChildren(h("h2", {}, "Waiting for you"), ...picks, form);
    }
    const idle = status === ChatStatus_Value.ready || status === ChatStatus_Value.completed || status === ChatStatus_Value.error;
    composer.hidden = !idle;
    if (idle && !composer.childElementCount) {
      const text = h("textarea", { name: "message", rows: "2", placeholder: "Message to start a run" }) as HTMLTextAreaElement;
      const form = h("form", {}, text, h("button", {}, "Send"));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        void act(async () => {
          await api.sendMessage({ chatId, message: text.value });
          text.value = "";
        });
      });
      composer.replaceChildren(form);
    }
  };
  render(current.status, current.inputPrompt);
  if (current.error) showError(current.error);

  // The history, then live events: watch() replays from the start and resumes by itself after a drop.
  for await (const event of api.watch(chatId, { signal })) {
    apply(event);
  }
  function apply(event: ChatEvent): void {
    switch (event.kind.case) {
      case "messageAdded":
        history.append(messageItem(event.kind.value));
        history.lastElementChild?.scrollIntoView({ block: "nearest" });
        break;
      case "statusChanged": {
        const { status, inputPrompt, error } = event.kind.value;
        current = { ...current, status, inputPrompt };
        render(status, inputPrompt);
        if (error) showError(error);
        break;
      }
      case "chatDeleted":
        location.hash = "#/";
        break;
    }
  }
}

function route(): void {
  viewAbort.abort();
  viewAbort = new AbortController();
  const { signal } = viewAbort;
  signOut.hidden = !client;
  if (!client) return signInView();
  const match = /^#\/chats\/(.+)$/.exec(location.hash);
  const view = match ? chatView(client, decodeURIComponent(match[1]!), signal) : chatsView(client, signal);
  view.catch((err: unknown) => {
    if (signal.aborted) return;
    if (err instanceof AgentokError && err.codeName === "UNAUTHENTICATED") {
      sessionStorage.removeItem(KEY_STORAGE);
      client = undefined;
      route();
    }
    showError(err);
  });
}

signOut.addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  client = undefined;
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
const saved = sessionStorage.getItem(KEY_STORAGE);
if (saved) client = connect(saved);
route();
