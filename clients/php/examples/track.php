<?php

// The Optimizely doc's track example against trackd's HTTP port:
//   php examples/track.php http://127.0.0.1:8080

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

$optimizelyClient = new Trackd\Client($argv[1] ?? 'http://127.0.0.1:8080', timeout: 2.0);

$eventKey = 'my_conversion';
$userId = 'user123';
$attributes = [
    'device' => 'iphone',
    'ad_source' => 'my_campaign',
];

echo 'variation: ', $optimizelyClient->activate('ab_running', $userId, $attributes) ?? '(none)', "\n";

// Track a conversion event for the provided user
$optimizelyClient->track($eventKey, $userId);

// Track a conversion event for the provided user with attributes
foreach ($optimizelyClient->track($eventKey, $userId, $attributes) as $attribution) {
    echo "attributed to {$attribution->experimentKey} ({$attribution->variationKey})\n";
}

try {
    $optimizelyClient->track('no_such_event', $userId);
} catch (Trackd\TrackdException $e) {
    echo $e->getMessage(), "\n"; // "not_found: event 'no_such_event' is not in the datafile"
}
