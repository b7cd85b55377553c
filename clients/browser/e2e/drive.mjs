// Drives headless Chromium (Debian's, never a downloaded one) through the end-to-end page:
// from the origin trackd's --http-cors-origins allows, once per format (binary protobuf and
// JSON), then from one it does not allow. Prints one JSON object on its last line
// (tests/clients/test_browser_client.py reads it).
// Env: TRACKD_HTTP_URL, BROWSER_PAGE_URL, BROWSER_REFUSED_PAGE_URL, E2E_RUN_ID, CHROMIUM.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const PAGE_TIMEOUT_MS = 120_000; // 250 sequential calls on a loaded 2-core machine

/** Opens the page with this query; its report, the console lines and the calls' content types. */
async function visit(context, origin, query, trackdUrl) {
  const page = await context.newPage();
  const consoleLines = [];
  const contentTypes = new Set();
  page.on("console", (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => consoleLines.push(`pageerror: ${error.message}`));
  page.on("request", (request) => {
    if (request.url().startsWith(trackdUrl) && request.method() === "POST") {
      contentTypes.add(request.headers()["content-type"]);
    }
  });
  await page.goto(`${origin}/e2e.html?${new URLSearchParams({ trackd: trackdUrl, ...query })}`);
  const pre = page.locator("#report:not([data-state=running])");
  await pre.waitFor({ timeout: PAGE_TIMEOUT_MS });
  const [state, text] = [await pre.getAttribute("data-state"), await pre.textContent()];
  await page.close();
  if (state !== "done") {
    throw new Error(`the page ${JSON.stringify(query)} failed: ${text}\n${consoleLines.join("\n")}`);
  }
  return { ...JSON.parse(text), content_types: [...contentTypes], console: consoleLines };
}

async function main() {
  const env = (name) => {
    const value = process.env[name];
    if (!value) throw new Error(`set ${name}`);
    return value;
  };
  const trackdUrl = env("TRACKD_HTTP_URL");
  const allowed = env("BROWSER_PAGE_URL");
  const runId = process.env.E2E_RUN_ID ?? "local";
  // A new, empty profile: nothing cached (no preflight answer, no HSTS) from an earlier run.
  const profile = mkdtempSync(join(tmpdir(), "trackd-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    chromiumSandbox: false, // --no-sandbox: root in CI, where Chromium's sandbox cannot start
    args: [
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const pages = {};
    for (const format of ["binary", "json"]) {
      // A run id per format: each run's own users start with no activation and no impression.
      const query = { mode: "full", format, run: `${runId}-${format}` };
      pages[format] = await visit(context, allowed, query, trackdUrl);
    }
    const refused = await visit(context, env("BROWSER_REFUSED_PAGE_URL"), { mode: "refused", run: runId }, trackdUrl);
    console.log(
      JSON.stringify({ language: "browser", browser: context.browser()?.version() ?? null, pages, refused }),
    );
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
