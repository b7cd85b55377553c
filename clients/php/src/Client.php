<?php

declare(strict_types=1);

namespace Trackd;

/**
 * A client of trackd's HTTP port (`trackd serve --http-listen`) with the Optimizely SDK's call
 * shapes, over Connect's JSON: each call is one POST of the request to
 * /trackd.v1.TrackingService/<Rpc>, answered by the same decisions, activation cache and
 * outbox as gRPC's.
 *
 *     $client = new \Trackd\Client('http://127.0.0.1:8080', timeout: 2.0);
 *     $client->activate('ab_running', 'user123', ['device' => 'iPhone']); // "variation_a" or null
 *     $client->track('my_conversion', 'user123', ['device' => 'iPhone']);
 *
 * A call trackd refuses, or that does not complete within `timeout` seconds, throws a
 * TrackdException carrying Connect's code; values that cannot be sent throw
 * \InvalidArgumentException before any call.
 */
final class Client
{
    public const DECIDE_OPTIONS = [
        'DISABLE_DECISION_EVENT', 'ENABLED_FLAGS_ONLY', 'IGNORE_USER_PROFILE_SERVICE',
        'INCLUDE_REASONS', 'EXCLUDE_VARIABLES',
    ];

    private const SERVICE = '/trackd.v1.TrackingService/';

    private readonly string $baseUrl;
    private readonly \CurlHandle $curl; // one handle per client: it keeps the connection alive

    /**
     * @param string $baseUrl the HTTP port, e.g. http://127.0.0.1:8080 (https:// with --tls-cert)
     * @param float $timeout seconds each call may take, connecting included
     * @param string|null $token a bearer token of trackd's --auth-tokens, sent as `authorization`
     * @param array<int, mixed> $curlOptions more curl options, e.g. CURLOPT_CAINFO for a private CA
     */
    public function __construct(
        string $baseUrl,
        private readonly float $timeout = 5.0,
        private readonly ?string $token = null,
        array $curlOptions = [],
    ) {
        if ($timeout <= 0) {
            throw new \InvalidArgumentException('timeout must be positive');
        }
        $this->baseUrl = rtrim($baseUrl, '/');
        $this->curl = curl_init();
        curl_setopt_array($this->curl, $curlOptions + [
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_POST => true,
            // Timeouts under a second need it with libcurl's synchronous resolver, which would
            // otherwise time out DNS with SIGALRM in whole seconds.
            CURLOPT_NOSIGNAL => true,
        ]);
    }

    /**
     * Decides the user's variation and records an impression. Returns the variation key, or
     * null when the user is in no variation.
     *
     * @param array<string, mixed> $attributes
     */
    public function activate(string $experimentKey, string $userId, array $attributes = []): ?string
    {
        $reply = $this->call('Activate', [
            'experimentKey' => $experimentKey, 'userId' => $userId,
            'attributes' => Values::toJsonObject($attributes),
        ]);
        return ($reply['variationKey'] ?? '') === '' ? null : $reply['variationKey'];
    }

    /**
     * Records a conversion event. Returns the experiments it was counted for: those the user
     * was activated in within trackd's activation TTL.
     *
     * @param array<string, mixed> $attributes
     * @param array<string, mixed> $tags e.g. ['revenue' => 4200] (in cents)
     * @return list<Attribution>
     */
    public function track(string $eventKey, string $userId, array $attributes = [], array $tags = []): array
    {
        $reply = $this->call('Track', [
            'eventKey' => $eventKey, 'userId' => $userId,
            'attributes' => Values::toJsonObject($attributes), 'tags' => Values::toJsonObject($tags),
        ]);
        return array_map([Attribution::class, 'fromJson'], $reply['attributions'] ?? []);
    }

    /**
     * Decides flags as the SDK's decideForKeys (the flags named, in that order; an unknown key
     * gets a Decision with `error` set) or, with no keys, decideAll (every flag, in the
     * datafile's order).
     *
     * @param array<string, mixed> $attributes
     * @param list<string> $flagKeys
     * @param list<string> $options names of Client::DECIDE_OPTIONS, the SDK's OptimizelyDecideOption
     * @return array<string, Decision> flag key => decision (ENABLED_FLAGS_ONLY leaves out disabled ones)
     */
    public function decide(string $userId, array $attributes = [], array $flagKeys = [], array $options = []): array
    {
        foreach ($options as $option) {
            if (!in_array($option, self::DECIDE_OPTIONS, true)) {
                throw new \InvalidArgumentException("unknown decide option '$option'");
            }
        }
        $reply = $this->call('Decide', [
            'userId' => $userId, 'attributes' => Values::toJsonObject($attributes),
            'flagKeys' => array_values($flagKeys),
            'options' => array_map(fn (string $o) => "DECIDE_OPTION_$o", array_values($options)),
        ]);
        $decisions = [];
        foreach ($reply['decisions'] ?? [] as $json) {
            $decisions[$json['flagKey']] = Decision::fromJson($json);
        }
        return $decisions;
    }

    /** Forces the flag's variation for the user: for one rule with $ruleKey, else the whole flag. */
    public function setForcedDecision(string $userId, string $flagKey, string $variationKey, string $ruleKey = ''): void
    {
        $this->call('SetForcedDecision', [
            'userId' => $userId, 'flagKey' => $flagKey, 'ruleKey' => $ruleKey, 'variationKey' => $variationKey,
        ]);
    }

    /** The variation key forced for the flag (or rule), null when none is. */
    public function getForcedDecision(string $userId, string $flagKey, string $ruleKey = ''): ?string
    {
        $reply = $this->call('GetForcedDecision', ['userId' => $userId, 'flagKey' => $flagKey, 'ruleKey' => $ruleKey]);
        return ($reply['variationKey'] ?? '') === '' ? null : $reply['variationKey'];
    }

    /** Removes one forced decision; true when there was one. */
    public function removeForcedDecision(string $userId, string $flagKey, string $ruleKey = ''): bool
    {
        $reply = $this->call('RemoveForcedDecision', ['userId' => $userId, 'flagKey' => $flagKey, 'ruleKey' => $ruleKey]);
        return (bool) ($reply['removed'] ?? false);
    }

    /** Removes every forced decision of the user; returns how many there were. */
    public function removeAllForcedDecisions(string $userId): int
    {
        return (int) ($this->call('RemoveAllForcedDecisions', ['userId' => $userId])['removed'] ?? 0);
    }

    /**
     * The live datafile as trackd describes it (GetConfigResponse's JSON: revision, loadedAt,
     * experiments, events, attributes, flags).
     *
     * @return array<string, mixed>
     */
    public function getConfig(): array
    {
        return $this->call('GetConfig', []);
    }

    /**
     * Any unary RPC of TrackingService, by name, with its request as an array of protobuf JSON
     * fields: the answer, decoded. For the RPCs the methods above do not wrap.
     *
     * @param array<string, mixed> $request
     * @return array<string, mixed>
     */
    public function call(string $rpc, array $request): array
    {
        $headers = [
            'content-type: application/json',
            // Connect's deadline header: trackd gives up when the caller has.
            'connect-timeout-ms: ' . (int) ceil($this->timeout * 1000),
        ];
        if ($this->token !== null) {
            $headers[] = "authorization: Bearer {$this->token}";
        }
        try {
            $body = json_encode((object) $request, JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION);
        } catch (\JsonException $e) { // a string that is not UTF-8
            throw new \InvalidArgumentException("$rpc: the request cannot be sent as JSON: {$e->getMessage()}", 0, $e);
        }
        curl_setopt_array($this->curl, [
            CURLOPT_URL => $this->baseUrl . self::SERVICE . $rpc,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_TIMEOUT_MS => (int) ceil($this->timeout * 1000),
        ]);
        $body = curl_exec($this->curl);
        if ($body === false) {
            $code = curl_errno($this->curl) === CURLE_OPERATION_TIMEDOUT
                ? TrackdException::DEADLINE_EXCEEDED : TrackdException::UNAVAILABLE;
            throw new TrackdException($code, curl_error($this->curl));
        }
        $status = curl_getinfo($this->curl, CURLINFO_RESPONSE_CODE);
        if ($status !== 200) {
            throw TrackdException::fromResponse($status, $body);
        }
        $reply = json_decode($body, true);
        if (!is_array($reply)) {
            throw new TrackdException('internal', 'the answer is not a JSON object', $status);
        }
        return $reply;
    }
}
