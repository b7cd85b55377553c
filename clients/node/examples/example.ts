// The Optimizely doc's Node snippet, against trackd. Address from TRACKD_ADDRESS.
import { TrackdClient } from '../src/index';

async function main(): Promise<void> {
  const trackdClient = new TrackdClient(process.env.TRACKD_ADDRESS ?? '127.0.0.1:50051');
  try {
    const eventKey = 'my_conversion';
    const userId = 'user123';

    const attributes = {
      device: 'iPhone',
      ad_source: 'my_campaign',
    };

    // Activate the user in an experiment: the variation key, or null
    console.log('ab_running:', await trackdClient.activate('ab_running', userId, attributes));

    // Track a conversion event for the provided user
    await trackdClient.track(eventKey, userId);

    // Track a conversion event for the provided user with attributes
    const attributions = await trackdClient.track(eventKey, userId, attributes);
    for (const a of attributions) {
      console.log(`attributed to ${a.experimentKey}/${a.variationKey}`);
    }
  } finally {
    trackdClient.close();
  }
}

main().catch((error: unknown) => {
  console.error('trackd:', error);
  process.exit(1);
});
