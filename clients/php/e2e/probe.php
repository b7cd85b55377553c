<?php

// One activate through the client's timeout and token options (probe.sh), for
// tests/clients/test_http_json_clients.py: prints {"variation": ..., "error": null} or
// {"variation": null, "error": "<Connect code>"}.

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

$token = getenv('PROBE_TOKEN');
$client = new Trackd\Client(
    getenv('TRACKD_HTTP_URL'),
    timeout: (float) getenv('PROBE_TIMEOUT'),
    token: $token === '' || $token === false ? null : $token,
);
try {
    $result = ['variation' => $client->activate('ab_running', 'probe-user'), 'error' => null];
} catch (Trackd\TrackdException $e) {
    $result = ['variation' => null, 'error' => $e->connectCode];
}
echo json_encode($result), "\n";
