// The end-to-end program of docs/dev/clients-e2e.md: prints one JSON object on its last line.
// Env: TRACKD_ADDRESS, E2E_RUN_ID.
import { TrackdClient, TrackdError, status } from '../src/index';

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

    console.log(
      JSON.stringify({
        language: 'node',
        variations,
        attributed: attributions.map((a) => a.experimentKey),
        not_found: notFound,
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
