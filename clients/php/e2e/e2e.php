<?php

// The end-to-end program of docs/dev/clients-e2e.md, over trackd's HTTP port: prints one JSON
// object on the last line of stdout. Needs TRACKD_HTTP_URL and E2E_RUN_ID.

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Trackd\Client;
use Trackd\TrackdException;
use Trackd\VariableTypeError;

$runId = getenv('E2E_RUN_ID');
$client = new Client(getenv('TRACKD_HTTP_URL'), timeout: 10.0);
$device = fn (int $n): string => $n % 3 === 0 ? 'Android' : 'iPhone';

$variations = [];
for ($n = 0; $n < 200; $n++) {
    $variations["user-$n"] = $client->activate('ab_iphone', "user-$n", ['device' => $device($n)]);
}

$user = "e2e-php-$runId";
$client->activate('ab_running', $user, []);
$attributions = $client->track('my_conversion', $user, ['device' => 'iPhone'], ['revenue' => 4200, 'category' => 'shoes']);

try {
    $client->track('no_such_event', 'u', ['device' => 'iPhone']);
    $notFound = false;
} catch (TrackdException $e) {
    $notFound = $e->connectCode === TrackdException::NOT_FOUND && $e->getCode() === 404;
}

// The decide part of the report.
$quiet = ['DISABLE_DECISION_EVENT'];
$decisions = [];
$quietRecorded = false;
for ($n = 0; $n < 50; $n++) {
    $d = $client->decide("user-$n", ['device' => $device($n)], ['e2e_checkout'], $quiet)['e2e_checkout'];
    $decisions["user-$n"] = [$d->enabled, $d->variationKey, $d->ruleKey, $d->ruleType];
    $quietRecorded = $quietRecorded || $d->impressionRecorded;
}
$every = $client->decide('user-1', ['device' => 'iPhone'], [], $quiet);

$forcedUser = "forced-php-$runId";
$client->setForcedDecision($forcedUser, 'e2e_checkout', 'treatment');
$t = $client->decide($forcedUser, [], ['e2e_checkout'], $quiet)['e2e_checkout'];
$variables = [
    'show_banner' => $t->getBoolean('show_banner'), 'max_items' => $t->getInteger('max_items'),
    'discount' => $t->getDouble('discount'), 'title' => $t->getString('title'), 'layout' => $t->getJson('layout'),
];
try {
    $t->getInteger('title');
    $typeError = false;
} catch (VariableTypeError) {
    $typeError = true;
}
$forced = [
    $client->getForcedDecision($forcedUser, 'e2e_checkout'),
    $client->removeForcedDecision($forcedUser, 'e2e_checkout'),
    $client->removeForcedDecision($forcedUser, 'e2e_checkout'),
];
$client->setForcedDecision($forcedUser, 'e2e_checkout', 'control');
$client->setForcedDecision($forcedUser, 'e2e_checkout', 'control', 'checkout_test');
$forced[] = $client->removeAllForcedDecisions($forcedUser);

$unknown = $client->decide($forcedUser, [], ['no_such_flag'])['no_such_flag'];
$flagUser = "e2e-php-$runId-flag";
$recorded = $client->decide($flagUser, ['device' => 'iPhone'], ['e2e_checkout'])['e2e_checkout']->impressionRecorded;
$flagAttributions = $client->track('checkout_conversion', $flagUser, ['device' => 'iPhone']);

// Beyond docs/dev/clients-e2e.md: getConfig, for test_http_json_clients.py.
$config = $client->getConfig();

$experimentKeys = fn (array $attributions): array => array_map(fn ($a) => $a->experimentKey, $attributions);
echo json_encode([
    'language' => 'php',
    'variations' => $variations,
    'attributed' => $experimentKeys($attributions),
    'not_found' => $notFound,
    'decide' => [
        'decisions' => $decisions, 'all' => array_keys($every), 'variables' => $variables,
        'type_error' => $typeError, 'unknown_flag_error' => $unknown->error !== null && !$unknown->enabled,
        'forced' => $forced, 'attributed' => $experimentKeys($flagAttributions),
        'impressions' => [$quietRecorded, $recorded],
    ],
    'producer' => null,
    'config' => ['revision' => $config['revision'], 'flags' => array_column($config['flags'], 'key')],
], JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION), "\n";
