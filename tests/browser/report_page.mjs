// Loads a run report (written by report.py) in headless Chromium and prints what it observed as
// one JSON object on stdout. The assertions live in tests/test_report_browser.py; this script
// only looks and records.
//
// usage: node report_page.mjs <scenario.json>
// scenario: {
//   chromium:    path of the browser executable (Debian's /usr/bin/chromium),
//   page:        file:// URL of the report (in a folder copied away from where it was made),
//   profile_dir: an empty folder for a fresh browser profile
// }
import { readFileSync } from "node:fs";
import { openPage } from "./launch.mjs";

const scenario = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { context, page, result } = await openPage(scenario);

try {
  // 1. Load, wait for every image to decode and every preloading player to read its clip's header.
  await page.goto(scenario.page, { waitUntil: "load" });
  result.steps.load = await page.evaluate(async () => {
    const images = Array.from(document.images);
    await Promise.all(images.map((img) => img.decode().catch(() => null)));
    const audios = Array.from(document.querySelectorAll("audio"));
    await Promise.all(audios.filter((a) => a.preload !== "none").map((a) => (a.readyState >= 1 || a.error ? null : new Promise((done) => {
      a.addEventListener("loadedmetadata", done, { once: true });
      a.addEventListener("error", done, { once: true });
    }))));
    const figures = {};
    for (const dd of document.querySelectorAll("dd[id^='fig-']")) {
      figures[dd.id] = { text: dd.firstChild ? dd.firstChild.textContent.trim() : "", value: dd.dataset.value ?? null };
    }
    const rows = (id) => Array.from(document.querySelectorAll(`#${id} tbody tr`)).map((tr) => Array.from(tr.cells).map((c) => c.innerText.trim()));
    return {
      title: document.title,
      h1: document.querySelector("h1").textContent,
      text: document.body.innerText,
      figures,
      sections: Array.from(document.querySelectorAll("main > section")).map((s) => ({ id: s.id, state: s.className.replace("section", "").trim() })),
      images: images.map((img) => ({ id: img.id, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight, shown_width: img.clientWidth, scheme: img.src.split(":", 1)[0] })),
      audio: audios.map((a) => ({ src: a.getAttribute("src"), preload: a.preload, ready: a.readyState, duration: a.duration, error: a.error ? a.error.code : null })),
      selection_rows: rows("selection-table"),
      cluster_rows: rows("cluster-table"),
      boost_rows: rows("boost-table"),
      listing: document.getElementById("listing") ? document.getElementById("listing").textContent : null,
      scripts: document.scripts.length,
      overflowing: document.documentElement.scrollWidth > document.documentElement.clientWidth,
    };
  });

  // 2. A link of the table of contents scrolls to its section.
  await page.click("nav.toc a[href='#clusters']");
  result.steps.toc = await page.evaluate(() => ({ hash: location.hash, top: Math.round(document.getElementById("clusters").getBoundingClientRect().top) }));

  // 3. Last (its refusal is logged to the console): the page's Content-Security-Policy refuses
  // a request to the network even from a script injected into the page.
  result.steps.csp = { requests_before: result.requests.length };
  const consoleBefore = result.console.length;
  result.steps.csp.fetch = await page.evaluate(() => fetch("http://127.0.0.1:9/probe").then(
    () => "fetched", (err) => "refused: " + err.message));
  result.steps.csp.console = result.console.splice(consoleBefore);
} finally {
  await context.close();
}

process.stdout.write(JSON.stringify(result));
