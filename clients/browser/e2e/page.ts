// The end-to-end page's script: runs the calls of docs/dev/clients-e2e.md that the browser
// client makes (Activate, Track, Decide) and writes one JSON report into #report, with
// data-state "done" (or "failed", the error instead), for e2e/drive.mjs to read.
import type * as Trackd from "../src/index.js";

declare const trackd: typeof Trackd; // dist/trackd.js, loaded by e2e.html before this script

const QUIET: Trackd.DecideOption[] = ["DISABLE_DECISION_EVENT"];

function deviceOf(n: number): string {
  return n % 3 ? "iPhone" : "Android";
}

async function full(client: Trackd.TrackdClient, runId: string): Promise<object> {
  const variations: Record<string, string | null> = {};
  for (let n = 0; n < 200; n++) {
    variations[`user-${n}`] = await client.activate("ab_iphone", `user-${n}`, { device: deviceOf(n) });
  }
  const user = `e2e-browser-${runId}`;
  await client.activate("ab_running", user, {});
  const attributions = await client.track("my_conversion", user, { device: "iPhone" }, { revenue: 4200, category: "shoes" });

  let notFound = false;
  try {
    await client.track("no_such_event", "u", {}, {});
  } catch (error) {
    notFound = error instanceof trackd.ConnectError && error.code === trackd.Code.NotFound;
  }

  const decisions: Record<string, unknown[]> = {};
  let quietRecorded = false;
  for (let n = 0; n < 50; n++) {
    const d = await client.decide(`user-${n}`, "e2e_checkout", { device: deviceOf(n) }, QUIET);
    decisions[`user-${n}`] = [d.enabled, d.variationKey, d.ruleKey, d.ruleType];
    quietRecorded = quietRecorded || d.impressionRecorded;
  }
  const every = await client.decideAll("user-1", { device: "iPhone" }, QUIET);
  const unknown = await client.decide(user, "no_such_flag");
  const flagUser = `e2e-browser-${runId}-flag`;
  const recorded = (await client.decide(flagUser, "e2e_checkout", { device: "iPhone" })).impressionRecorded;
  const flagAttributions = await client.track("checkout_conversion", flagUser, { device: "iPhone" });
  return {
    variations,
    attributed: attributions.map((a) => a.experimentKey),
    attributions,
    not_found: notFound,
    decide: {
      decisions,
      all: every.map((d) => d.flagKey),
      unknown_flag_error: Boolean(unknown.error) && !unknown.enabled,
      attributed: flagAttributions.map((a) => a.experimentKey),
      impressions: [quietRecorded, recorded],
    },
  };
}

/** From an origin trackd does not allow: the browser must keep trackd's answer from the page. */
async function refused(client: Trackd.TrackdClient, runId: string): Promise<object> {
  try {
    const variation = await client.activate("ab_running", `refused-browser-${runId}`, {});
    return { refused: false, variation };
  } catch (error) {
    const connect = error instanceof trackd.ConnectError;
    return {
      refused: connect,
      code: connect ? trackd.Code[error.code] : null,
      message: String(error instanceof Error ? error.message : error),
    };
  }
}

async function main(): Promise<void> {
  const report = document.getElementById("report")!;
  const query = new URLSearchParams(location.search);
  const runId = query.get("run") ?? "local";
  try {
    const format = query.get("format") === "json" ? "json" : "binary";
    const client = new trackd.TrackdClient(query.get("trackd") ?? "http://127.0.0.1:8080", { format });
    const run = query.get("mode") === "refused" ? refused : full;
    report.textContent = JSON.stringify({ origin: location.origin, ...(await run(client, runId)) });
    report.dataset.state = "done";
  } catch (error) {
    report.textContent = error instanceof Error ? `${error.name}: ${error.message}\n${error.stack}` : String(error);
    report.dataset.state = "failed";
  }
}

void main();
