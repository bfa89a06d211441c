// Shared by the page drivers: start Debian's Chromium headless with a fresh profile and record
// what the page says and asks for (console messages, page errors, dialogs, requests).
import { chromium } from "playwright-core";

// The flags that work on a machine with a closed network (no background fetches at start).
const ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

// Returns { context, page, result }; result.steps is left for the driver to fill.
export async function openPage(scenario, options = {}) {
  const context = await chromium.launchPersistentContext(scenario.profile_dir, {
    executablePath: scenario.chromium, headless: true, args: ARGS, ...options,
  });
  const result = { console: [], page_errors: [], requests: [], failed_requests: [], dialogs: [], steps: {} };
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (msg) => result.console.push({ type: msg.type(), text: msg.text() }));
  page.on("pageerror", (err) => result.page_errors.push(String(err)));
  page.on("dialog", async (dialog) => { result.dialogs.push(dialog.message()); await dialog.dismiss(); });
  context.on("request", (req) => result.requests.push(req.url()));
  context.on("requestfailed", (req) => result.failed_requests.push(req.url()));
  return { context, page, result };
}
