// Loads the lab's dashboard in headless Chromium and checks what a person would see:
// the topology drawn, the tables filled, the counters moving, a trace started from the
// page and drawn over the diagram. Fails on any JavaScript error or failed request.
//
//   node dashboard.mjs URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node dashboard.mjs URL SCREENSHOT.png");
  process.exit(2);
}

const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
  page.on("pageerror", e => problems.push(`JavaScript error: ${e.message}`));
  page.on("console", m => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("requestfailed", r => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", r => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });

  await page.goto(url, { waitUntil: "load" });
  // The topology: every node of the POC lab drawn, and the tables filled.
  await page.waitForSelector('#diagram svg rect[data-node="MuxVM"]', { timeout: 15000 });
  for (const node of ["ClientVM", "NATVM", "BGPVM", "MuxVM", "MuxVM2", "HyperVHost", "PortalVM", "NCVM"]) {
    if (await page.locator(`#diagram svg rect[data-node="${node}"]`).count() !== 1) {
      problems.push(`the diagram has no box for ${node}`);
    }
  }
  await page.waitForFunction(() => document.querySelectorAll("#links tr").length > 10, null, { timeout: 15000 });
  const text = await page.locator("main").innerText();
  for (const want of ["Established", "192.168.133.74 tcp/80", "in the pool", "loadBalancers", "Succeeded"]) {
    if (!text.includes(want)) problems.push(`the page does not show ${JSON.stringify(want)}`);
  }

  // Each VFP port's layers, rules and cached flows, one click away.
  await page.locator("#vfp details summary").first().click();
  const vfp = await page.locator("#vfp details pre").first().innerText();
  if (!vfp.includes("layer SLB_NAT") || !vfp.includes("rule ")) problems.push(`the VFP details lack the layers: ${vfp.slice(0, 200)}`);

  // Live: the clock and the frame counters move without a reload.
  const counters = async () => page.evaluate(() => ({
    time: document.getElementById("time").textContent,
    frames: [...document.querySelectorAll("#links tr")].slice(1)
      .reduce((sum, tr) => sum + Number(tr.children[2].textContent), 0),
  }));
  const before = await counters();
  await page.waitForTimeout(2500);
  const after = await counters();
  if (after.time === before.time) problems.push(`the clock did not move: ${before.time}`);
  if (!(after.frames > before.frames)) problems.push(`the frame counters did not move: ${before.frames} then ${after.frames}`);

  // A trace from the page, drawn over the diagram.
  await page.click("#trace-run");
  await page.waitForSelector("#diagram svg polyline.hop", { timeout: 20000 });
  const hops = await page.locator("#diagram svg polyline.hop").count();
  if (hops < 8) problems.push(`the portal trace drew ${hops} arrows, not 8 or more`);
  const trace = await page.locator("#trace-text").innerText();
  if (!trace.includes("load-balances VIP 192.168.133.74:80")) problems.push(`the trace text lacks the Mux's decision: ${trace.slice(0, 300)}`);

  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
if (problems.length) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
console.log(`dashboard ok; screenshot in ${screenshot}`);
