// The end-to-end program of docs/dev/clients-e2e.md: prints one JSON object on its last line.
// Env: TRACKD_ADDRESS, E2E_RUN_ID.
import { DecideOption, TrackdClient, TrackdError, VariableTypeError, status } from '../src/index';

/** The decide part of the report (docs/dev/clients-e2e.md). */
async function decideReport(client: TrackdClient, runId: string): Promise<object> {
  const quiet = [DecideOption.DISABLE_DECISION_EVENT];
  const decisions: Record<string, unknown[]> = {};
  let quietRecorded = false;
  for (let n = 0; n < 50; n++) {
    const device = n % 3 ? 'iPhone' : 'Android';
    const d = await client.decide(`user-${n}`, 'e2e_checkout', { device }, quiet);
    decisions[`user-${n}`] = [d.enabled, d.variationKey, d.ruleKey, d.ruleType];
    quietRecorded = quietRecorded || d.impressionRecorded;
  }
  const every = await client.decideAll('user-1', { device: 'iPhone' }, quiet);

  const forcedUser = `forced-node-${runId}`;
  const flag = { flagKey: 'e2e_checkout' };
  await client.setForcedDecision(forcedUser, flag, { variationKey: 'treatment' });
  const t = await client.decide(forcedUser, 'e2e_checkout', {}, quiet);
  const variables = {
    show_banner: t.getBoolean('show_banner'),
    max_items: t.getInteger('max_items'),
    discount: t.getDouble('discount'),
    title: t.getString('title'),
    layout: t.getJson('layout'),
  };
  let typeError = false;
  try {
    t.getInteger('title');
  } catch (error) {
    typeError = error instanceof VariableTypeError;
  }
  const forced: unknown[] = [
    await client.getForcedDecision(forcedUser, flag),
    await client.removeForcedDecision(forcedUser, flag),
    await client.removeForcedDecision(forcedUser, flag),
  ];
  await client.setForcedDecision(forcedUser, flag, { variationKey: 'control' });
  await client.setForcedDecision(forcedUser, { flagKey: 'e2e_checkout', ruleKey: 'checkout_test' }, { variationKey: 'control' });
  forced.push(await client.removeAllForcedDecisions(forcedUser));

  const unknown = await client.decide(forcedUser, 'no_such_flag');
  const user = `e2e-node-${runId}-flag`;
  const recorded = (await client.decide(user, 'e2e_checkout', { device: 'iPhone' })).impressionRecorded;
  const attributions = await client.track('checkout_conversion', user, { device: 'iPhone' });
  return {
    decisions,
    all: Object.keys(every),
    variables,
    type_error: typeError,
    unknown_flag_error: Boolean(unknown.error) && !unknown.enabled,
    forced,
    attributed: attributions.map((a) => a.experimentKey),
    impressions: [quietRecorded, recorded],
  };
}

async function main(): Promise<void> {
  const address = process.env.TRACKD_ADDRESS ?? '127.0.0.1:50051';
  const runId = process.env.E2E_RUN_ID ?? 'local';
  const user = `e2e-node-${runId}`;
  const client = new TrackdClient(address);
  try {
    const variations: Record<string, string | null> = {};
    for (let n = 0; n < 200; n++) {
      const device = n % 3 ? 'iPhone' : 'Android';
      variations[`user-${n}`] = await client.activate('ab_iphone', `user-${n}`, { device });
    }

    await client.activate('ab_running', user, {});
    const attributions = await client.track(
      'my_conversion',
      user,
      { device: 'iPhone' },
      { revenue: 4200, category: 'shoes' },
    );

    let notFound = false;
    try {
      await client.track('no_such_event', 'u', {}, {});
    } catch (error) {
      notFound = error instanceof TrackdError && error.code === status.NOT_FOUND;
    }
    const decide = await decideReport(client, runId);

    console.log(
      JSON.stringify({
        language: 'node',
        variations,
        attributed: attributions.map((a) => a.experimentKey),
        not_found: notFound,
        decide,
        producer: null,
      }),
    );
  } finally {
    client.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
