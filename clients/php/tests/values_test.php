<?php

// Values against the vectors every client shares (clients/testdata/values.json), and the
// answers' JSON read back into PHP: run by build.sh; exits non-zero on the first failure.

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Trackd\Decision;
use Trackd\TrackdException;
use Trackd\Values;
use Trackd\VariableTypeError;

function check(bool $ok, string $what): void
{
    if (!$ok) {
        fwrite(STDERR, "FAIL: $what\n");
        exit(1);
    }
}

function refuses(callable $call, string $class): bool
{
    try {
        $call();
    } catch (\Throwable $e) {
        return $e instanceof $class;
    }
    return false;
}

$vectors = json_decode(file_get_contents(__DIR__ . '/../../testdata/values.json'), true, 512, JSON_THROW_ON_ERROR);
foreach ($vectors['values'] as $vector) {
    $input = $vector['input'];
    if (isset($vector['error'])) {
        check(refuses(fn () => Values::toJsonValue($input), \InvalidArgumentException::class), $vector['name']);
        continue;
    }
    // As JSON, the Value is its value: a JSON number, string, boolean or null.
    $sent = json_encode(Values::toJsonObject(['v' => $input]));
    check(json_decode($sent, true)['v'] === $vector['expect']['value'], "{$vector['name']}: sent $sent");
}
// Native inputs: 2^53+1 is inexact, as everywhere. NaN and infinities, which the gRPC clients
// pass through for trackd to judge, have no protobuf JSON form: refused before the call.
check(refuses(fn () => Values::toJsonValue(9007199254740993), \InvalidArgumentException::class), '2^53+1');
foreach ([NAN, INF, -INF] as $nonFinite) {
    check(refuses(fn () => Values::toJsonValue($nonFinite), \InvalidArgumentException::class), "$nonFinite");
}
check(json_encode(Values::toJsonObject([])) === '{}', 'no attributes are an empty JSON object');
check(json_encode(Values::toJsonObject([7 => 'x'])) === '{"7":"x"}', 'a numeric key is a string');

// A string that is not UTF-8 is refused before any call (nothing listens on port 1: a call
// would be `unavailable`).
$offline = new Trackd\Client('http://127.0.0.1:1', timeout: 1.0);
check(refuses(fn () => $offline->track('e', "\xff\xfe"), \InvalidArgumentException::class), 'a user id not in UTF-8');
check(refuses(fn () => $offline->activate('x', 'u', ['device' => "\xc3"]), \InvalidArgumentException::class), 'an attribute not in UTF-8');

// A decision as Connect's JSON writes it: numbers as doubles, defaults left out.
$d = Decision::fromJson(json_decode(
    '{"flagKey": "f", "enabled": true, "ruleType": "RULE_TYPE_ROLLOUT", "variables": '
    . '{"n": 7.0, "x": 0.5, "whole": 2.0, "s": "t", "j": {"a": [1.0]}, "b": false}}',
    true,
));
check([$d->flagKey, $d->enabled, $d->variationKey, $d->ruleType, $d->error] === ['f', true, null, 'rollout', null], 'fields');
check($d->getInteger('n') === 7 && $d->getDouble('whole') === 2.0 && $d->getDouble('x') === 0.5, 'numbers');
check($d->getJson('j') === ['a' => [1]] && $d->getBoolean('b') === false && $d->getString('s') === 't', 'others');
check(refuses(fn () => $d->getInteger('s'), VariableTypeError::class), 'integer getter on a string');
check(refuses(fn () => $d->getJson('n'), VariableTypeError::class), 'json getter on a number');
check(refuses(fn () => $d->getString('missing'), \OutOfBoundsException::class), 'no such variable');

// Errors: Connect's own, or the code of an HTTP status a proxy answered with.
$e = TrackdException::fromResponse(404, '{"code": "not_found", "message": "event \'x\' is not in the datafile"}');
check([$e->connectCode, $e->getCode()] === ['not_found', 404], 'a Connect error');
check(TrackdException::fromResponse(503, '<html>busy</html>')->connectCode === 'unavailable', 'a proxy page');
echo "clients/php: unit tests passed\n";
