// Drives a review page (written by util_select_review.py) through a fixed scenario in headless
// Chromium and prints what it observed as one JSON object on stdout. The assertions live in
// tests/test_review_page_browser.py; this script only acts and records.
//
// usage: node review_page.mjs <scenario.json>
// scenario: {
//   chromium:    path of the browser executable (Debian's /usr/bin/chromium),
//   page:        file:// URL of the review page (in a folder copied away from where it was made),
//   other_page:  file:// URL of a second, different review page (its boxes must stay empty),
//   profile_dir: an empty folder for a fresh browser profile,
//   out_dir:     folder for the downloaded annotations file,
//   edits:       [[line, text], ...] typed into the boxes, in the page's order of clips,
//   chip_line:   line of a clip whose first candidate is clicked (added to its box),
//   bad_import:  path of an annotations file that is too long for the page (must be refused)
// }
import { readFileSync } from "node:fs";
import path from "node:path";
import { openPage } from "./launch.mjs";

const scenario = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { context, page, result } = await openPage(scenario, { acceptDownloads: true });

try {
  const boxValues = () => page.$$eval("input.labels", (boxes) => boxes.map((b) => [Number(b.closest(".clip").dataset.line), b.value]));
  const currentLine = () => page.$eval(".clip.current", (c) => Number(c.dataset.line));
  const activeId = () => page.evaluate(() => document.activeElement && document.activeElement.id);
  const statusOf = () => page.$eval("#status", (s) => ({ text: s.textContent, error: s.classList.contains("error") }));

  // 1. Load: what is shown, and whether every player loaded its audio through the relative path.
  await page.goto(scenario.page);
  result.steps.load = await page.evaluate(async () => {
    const audios = Array.from(document.querySelectorAll("audio"));
    await Promise.all(audios.map((a) => (a.readyState >= 1 || a.error ? null : new Promise((done) => {
      a.addEventListener("loadedmetadata", done, { once: true });
      a.addEventListener("error", done, { once: true });
    }))));
    return {
      title: document.title,
      lines: Array.from(document.querySelectorAll(".clip")).map((c) => Number(c.dataset.line)),
      paths: Array.from(document.querySelectorAll(".clip .path")).map((p) => p.textContent),
      scores: Array.from(document.querySelectorAll(".clip .score strong")).map((s) => s.textContent),
      kept: Array.from(document.querySelectorAll(".clip .facts dd:first-of-type")).map((d) => d.textContent),
      chips: Array.from(document.querySelectorAll(".clip")).map((c) => Array.from(c.querySelectorAll("button.chip")).map((b) => b.textContent)),
      audio: audios.map((a) => ({ src: a.getAttribute("src"), ready: a.readyState, duration: a.duration, error: a.error ? a.error.code : null })),
      counter: document.getElementById("n-annotated").textContent,
      keys_documented: document.querySelector(".help").textContent,
      injected: document.querySelectorAll(".clip img, .clip b, .clip script").length,
    };
  });

  // 2. Type: click the first clip's box, then walk with Enter (which moves to the next clip's box).
  const order = result.steps.load.lines;
  const firstLine = order[0];
  await page.click(`#labels-${firstLine}`);
  const typed = [];
  let at = 0;
  for (const [line, text] of scenario.edits) {
    const target = order.indexOf(line);
    if (target < at) throw new Error(`edits must follow the page order (line ${line})`);
    while (at < target) { await page.keyboard.press("Enter"); at++; }
    await page.keyboard.type(text);
    typed.push({ line, active: await activeId(), current: await currentLine() });
  }
  await page.keyboard.press("Shift+Enter");
  typed.push({ after_shift_enter: await activeId() });
  result.steps.typed = typed;
  // A click on a candidate adds it to that clip's box.
  await page.locator(`#clip-${scenario.chip_line} button.chip`).first().click();
  result.steps.chip = { box: await page.inputValue(`#labels-${scenario.chip_line}`), active: await activeId() };
  result.steps.before_reload = { boxes: await boxValues(), counter: await page.textContent("#n-annotated") };
  result.steps.notes = await page.$$eval(".note", (ns) => ns.map((n) => [n.id, n.textContent]));

  // 3. Reload: the edits are still there.
  await page.reload();
  result.steps.after_reload = { boxes: await boxValues(), counter: await page.textContent("#n-annotated") };

  // 4. Export: capture the download the button starts.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-button")]);
  const exported = path.join(scenario.out_dir, "exported.csv");
  await download.saveAs(exported);
  result.steps.export = { file: exported, suggested: download.suggestedFilename(), url: download.url(), status: await statusOf() };

  // 5. Another review page (another identity) opened in the same browser sees none of these edits.
  await page.goto(scenario.other_page);
  result.steps.other_page = { boxes: await boxValues() };

  // 6. Forget everything, then import the exported file: the boxes come back, and stay after a reload.
  await page.goto(scenario.page);
  await page.evaluate(() => window.localStorage.clear());
  await page.reload();
  result.steps.cleared = { boxes: await boxValues(), counter: await page.textContent("#n-annotated") };
  await page.setInputFiles("#import-file", exported);
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Imported"));
  result.steps.imported = { boxes: await boxValues(), counter: await page.textContent("#n-annotated"), status: await statusOf() };
  await page.reload();
  result.steps.imported_reloaded = { boxes: await boxValues() };

  // 7. A file for other clips (too many lines) is refused and changes nothing.
  await page.setInputFiles("#import-file", scenario.bad_import);
  await page.waitForFunction(() => document.getElementById("status").classList.contains("error"));
  result.steps.bad_import = { boxes: await boxValues(), status: await statusOf() };

  // 8. Keyboard: Escape leaves a box, j/k/arrows move, Space plays and pauses, e edits.
  await page.click(`#labels-${firstLine}`);
  await page.keyboard.press("Escape");
  const keys = { after_escape: { line: await currentLine(), active: await activeId() } };
  await page.keyboard.press("j");
  keys.after_j = await currentLine();
  await page.keyboard.press("j");
  keys.after_jj = await currentLine();
  await page.keyboard.press("k");
  keys.after_k = await currentLine();
  await page.keyboard.press("ArrowDown");
  keys.after_down = await currentLine();
  await page.keyboard.press("ArrowUp");
  keys.after_up = await currentLine();
  for (let n = 0; n < 10; n++) await page.keyboard.press("k");  // stops at the first clip
  keys.after_many_k = await currentLine();
  const playing = () => page.$eval(".clip.current audio", (a) => ({ paused: a.paused, time: a.currentTime }));
  await page.keyboard.press(" ");
  await page.waitForFunction(() => { const a = document.querySelector(".clip.current audio"); return !a.paused && a.currentTime > 0; }, null, { timeout: 15000 })
    .catch(() => null);
  keys.after_space = await playing();
  await page.keyboard.press(" ");
  keys.after_second_space = await playing();
  await page.keyboard.press("e");
  keys.after_e = await activeId();
  keys.status = await statusOf();
  result.steps.keys = keys;

  // 9. Last (its refusal is logged to the console): the page's Content-Security-Policy refuses
  // a request to the network even from a script running in the page.
  result.steps.csp = { requests_before: result.requests.length };
  const consoleBefore = result.console.length;
  result.steps.csp.fetch = await page.evaluate(() => fetch("http://127.0.0.1:9/probe").then(
    () => "fetched", (err) => "refused: " + err.message));
  result.steps.csp.console = result.console.splice(consoleBefore);
} finally {
  await context.close();
}

process.stdout.write(JSON.stringify(result));
