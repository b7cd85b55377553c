// Drives headless Chromium (Debian's, never a downloaded one) through the end-to-end page:
// once from the origin trackd's --http-cors-origins allows, once from one it does not. Prints
// one JSON object on its last line (tests/clients/test_browser_client.py reads it).
// Env: TRACKD_HTTP_URL, BROWSER_PAGE_URL, BROWSER_REFUSED_PAGE_URL, E2E_RUN_ID, CHROMIUM.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const PAGE_TIMEOUT_MS = 120_000; // 250 sequential calls on a loaded 2-core machine

async function report(context, origin, mode, runId, trackdUrl, consoleLines) {
  const page = await context.newPage();
  page.on("console", (message) => consoleLines.push(`[${mode}] ${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => consoleLines.push(`[${mode}] pageerror: ${error.message}`));
  const query = new URLSearchParams({ trackd: trackdUrl, run: runId, mode });
  await page.goto(`${origin}/e2e.html?${query}`);
  const pre = page.locator("#report:not([data-state=running])");
  await pre.waitFor({ timeout: PAGE_TIMEOUT_MS });
  const [state, text] = [await pre.getAttribute("data-state"), await pre.textContent()];
  await page.close();
  if (state !== "done") {
    throw new Error(`the ${mode} page failed: ${text}\n${consoleLines.join("\n")}`);
  }
  return JSON.parse(text);
}

async function main() {
  const env = (name) => {
    const value = process.env[name];
    if (!value) throw new Error(`set ${name}`);
    return value;
  };
  const trackdUrl = env("TRACKD_HTTP_URL");
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
  const consoleLines = [];
  try {
    const page = await report(context, env("BROWSER_PAGE_URL"), "full", runId, trackdUrl, consoleLines);
    const refused = await report(context, env("BROWSER_REFUSED_PAGE_URL"), "refused", runId, trackdUrl, consoleLines);
    console.log(
      JSON.stringify({
        language: "browser",
        browser: context.browser()?.version() ?? null,
        page,
        refused,
        cors_console: consoleLines.filter((line) => line.includes("CORS")),
      }),
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
