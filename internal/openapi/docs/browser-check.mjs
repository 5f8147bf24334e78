// browser-check.mjs URL: opens URL/docs in Debian's chromium (through
// playwright-core, no browser download) and checks that Redoc rendered
// berth's OpenAPI document: the API's title as the page heading, at least
// one operation, and no Content-Security-Policy violation or page error.
// It prints one JSON line with what it saw and exits non-zero on a failure.
// internal/server's TestDocsPageInBrowser runs it against a real server.
import { chromium } from "playwright-core";

const base = process.argv[2];
if (!base) {
  console.error("usage: node browser-check.mjs http://127.0.0.1:PORT");
  process.exit(2);
}
const timeout = Number(process.env.DOCS_CHECK_TIMEOUT_MS || 120000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
// Redoc's sidebar shows the Redocly logo from their CDN and hides it when
// it does not load: the page's CSP blocks it, which is expected; any other
// blocked load, or anything at all fetched from elsewhere, is a failure.
const expectedBlock = "https://cdn.redoc.ly/redoc/logo-mini.svg";
const problems = [];
const blocked = [];
const foreign = [];
try {
  const page = await browser.newPage();
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (m.text().includes("Content Security Policy") && m.text().includes(`'${expectedBlock}'`)) blocked.push(expectedBlock);
    else problems.push("console: " + m.text());
  });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("response", (r) => {
    if (!r.url().startsWith(base + "/") && !r.url().startsWith("data:") && !r.url().startsWith("blob:")) foreign.push(r.url());
  });
  const res = await page.goto(base + "/docs", { waitUntil: "load", timeout });
  const csp = res.headers()["content-security-policy"] || "";
  // Redoc's heading is the document's info.title; operations are listed
  // in the menu and rendered with their summary as an h2.
  const heading = page.locator(".api-info h1");
  await heading.waitFor({ timeout });
  const title = (await heading.textContent()).trim();
  const operation = page.locator("[data-section-id^='operation/']").first();
  await operation.waitFor({ timeout });
  const operations = await page.locator("[data-section-id^='operation/']").count();
  const firstOperation = ((await operation.locator("h2").first().textContent()) || "").trim();
  // styled-components' CSS applied: the menu sticks beside the content.
  const menuPosition = await page.evaluate(() => getComputedStyle(document.querySelector(".menu-content") || document.body).position);
  if (menuPosition !== "sticky") problems.push(`the menu is not styled (position ${menuPosition})`);
  console.log(JSON.stringify({ status: res.status(), csp, title, operations, firstOperation, menuPosition, blocked, foreign, problems }));
  if (problems.length > 0 || foreign.length > 0) process.exitCode = 1;
} catch (e) {
  console.log(JSON.stringify({ error: String(e.message || e).split("\n")[0], blocked, foreign, problems }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
