// A whole human-in-the-loop chat in a real browser (Debian's chromium, driven by playwright-core), against a
// live server + Envoy started by tests/e2e/test_console_browser.py: sign in, create a chat from a flow, send,
// answer, exit, see it completed. Env: CONSOLE_URL, AGENTOK_KEY, FLOW_NAME, SCREENSHOT.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const { CONSOLE_URL, AGENTOK_KEY, FLOW_NAME, SCREENSHOT } = process.env;
assert.ok(CONSOLE_URL && AGENTOK_KEY && FLOW_NAME && SCREENSHOT, "run through tests/e2e/test_console_browser.py");
const TIMEOUT = 30_000;

const profile = mkdtempSync(join(tmpdir(), "agentok-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
  ],
  // A phone's screen: the console must be usable there.
  viewport: { width: 390, height: 844 },
});
const problems = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  // The wrong key's refused call is logged by the browser as a failed resource (401): expected, nothing else is.
  const expected = /Failed to load resource: the server responded with a status of 401/;
  page.on("console", (msg) => {
    if (msg.type() === "error" && !expected.test(msg.text())) problems.push(`console error: ${msg.text()}`);
  });
  await page.goto(CONSOLE_URL);

  // A wrong key: refused, in the service's words.
  await page.fill("input[name=api-key]", "ak_wrong_wrong");
  await page.click("text=Sign in >> nth=-1");
  await page.locator("#error").filter({ hasText: /API_KEY_/ }).waitFor();

  await page.fill("input[name=api-key]", AGENTOK_KEY);
  await page.click("button:has-text('Sign in')");
  await page.locator("select[name=flow] option", { hasText: FLOW_NAME }).waitFor({ state: "attached" });
  await page.selectOption("select[name=flow]", { label: FLOW_NAME });
  await page.fill("input[name=name]", "browser chat");
  await page.click("button:has-text('Create')");
  await page.waitForURL(/#\/chats\/.+/);
  assert.ok(!page.url().includes(AGENTOK_KEY), "the key is never in the URL");

  await page.fill("textarea[name=message]", "hello from the browser");
  await page.click("button:has-text('Send')");
  const question = page.getByRole("region", { name: "question" });
  await question.getByText("Waiting for you").waitFor();
  const history = page.getByRole("list", { name: "history" });
  await history.getByText("pong").first().waitFor();

  await page.fill("textarea[name=answer]", "thanks, agent");
  await page.click("button:has-text('Send answer')");
  await history.getByText("thanks, agent").waitFor();
  await page.waitForFunction(() => document.querySelectorAll(".history .message").length >= 4);
  await question.getByText("Waiting for you").waitFor();
  await page.click("button:has-text('Exit')");
  await page.locator(".title .badge[data-status=completed]").waitFor();

  const contents = await history.locator(".content").allTextContents();
  assert.deepEqual(contents, ["hello from the browser", "pong", "thanks, agent", "pong"]);
  const stored = await page.evaluate(() => [sessionStorage.getItem("agentok.apiKey"), localStorage.length]);
  assert.deepEqual(stored, [AGENTOK_KEY, 0], "the key is kept in sessionStorage only");
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.deepEqual(problems, []);
  console.log("hitl chat completed in the browser; screenshot:", SCREENSHOT);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
