// Small DOM helpers of the console: elements, status badges, the manual speaker choice read from a prompt.
import { ChatStatus_Value } from "../../clients/typescript/src/index.ts";

type Props = Record<string, string | ((event: Event) => void)>;

/** An element with attributes (a function is an event listener: onclick -> click) and children. */
export function h(tag: string, props: Props = {}, ...children: (Node | string)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else el.setAttribute(name, value);
  }
  el.append(...children);
  return el;
}

/** The status as the API prints it (wait_for_human_input, completed ...), as a coloured badge. */
export function statusBadge(status: ChatStatus_Value): HTMLElement {
  const name = ChatStatus_Value[status] ?? "unknown";
  return h("span", { class: `badge ${name}`, "data-status": name }, name.replaceAll("_", " "));
}

// AutoGen's manual speaker selection asks with a numbered list (engine/speaker_selection.py):
// "Please select the next speaker from the following list:\n1: Alice\n2: Bob\nEnter the number ..."
const MANUAL_LIST = "Please select the next speaker from the following list:";

/** The candidates of a manual speaker selection prompt (none for any other prompt). */
export function manualCandidates(prompt: string): { number: string; name: string }[] {
  const start = prompt.indexOf(MANUAL_LIST);
  if (start < 0) return [];
  return prompt
    .slice(start + MANUAL_LIST.length)
    .split("\n")
    .flatMap((line) => {
      const m = /^(\d+): (.+)$/.exec(line.trim());
      return m ? [{ number: m[1]!, name: m[2]! }] : [];
    });
}
