<?php

declare(strict_types=1);

namespace Trackd;

/**
 * One flag's decision, as the SDK's OptimizelyDecision. variationKey and ruleKey are null when
 * none was decided; ruleType is "experiment", "feature-test", "rollout", "holdout" or null.
 * error is set (and enabled false) when the flag could not be decided, e.g. an unknown key.
 */
final class Decision
{
    private const RULE_TYPES = [
        'RULE_TYPE_EXPERIMENT' => 'experiment', 'RULE_TYPE_FEATURE_TEST' => 'feature-test',
        'RULE_TYPE_ROLLOUT' => 'rollout', 'RULE_TYPE_HOLDOUT' => 'holdout',
    ];

    /**
     * @param array<string, mixed> $variables
     * @param list<string> $reasons
     */
    public function __construct(
        public readonly string $flagKey,
        public readonly bool $enabled,
        public readonly ?string $variationKey,
        public readonly ?string $ruleKey,
        public readonly ?string $ruleType,
        public readonly array $variables,
        public readonly array $reasons,
        public readonly bool $impressionRecorded,
        public readonly ?string $error,
    ) {
    }

    /**
     * A FlagDecision as Connect's JSON writes it: fields at their default are left out.
     *
     * @param array<string, mixed> $json
     */
    public static function fromJson(array $json): self
    {
        return new self(
            (string) $json['flagKey'],
            (bool) ($json['enabled'] ?? false),
            ($json['variationKey'] ?? '') === '' ? null : $json['variationKey'],
            ($json['ruleKey'] ?? '') === '' ? null : $json['ruleKey'],
            self::RULE_TYPES[$json['ruleType'] ?? ''] ?? null,
            Values::fromJson($json['variables'] ?? []),
            $json['reasons'] ?? [],
            (bool) ($json['impressionRecorded'] ?? false),
            ($json['error'] ?? '') === '' ? null : $json['error'],
        );
    }

    public function getBoolean(string $key): bool
    {
        return $this->typed($key, 'boolean', is_bool(...));
    }

    public function getInteger(string $key): int
    {
        return $this->typed($key, 'integer', is_int(...));
    }

    /** A double with a whole value arrives as a whole number: it comes back a float. */
    public function getDouble(string $key): float
    {
        return (float) $this->typed($key, 'double', fn ($v) => is_int($v) || is_float($v));
    }

    public function getString(string $key): string
    {
        return $this->typed($key, 'string', is_string(...));
    }

    /** @return array<string, mixed> a json variable, as json_decode(..., true) gives it */
    public function getJson(string $key): array
    {
        return $this->typed($key, 'json', fn ($v) => is_array($v) && ($v === [] || !array_is_list($v)));
    }

    private function typed(string $key, string $wanted, callable $isWanted): mixed
    {
        if (!array_key_exists($key, $this->variables)) {
            throw new \OutOfBoundsException("flag '{$this->flagKey}' has no variable '$key'");
        }
        $value = $this->variables[$key];
        if (!$isWanted($value)) {
            throw new VariableTypeError(
                "flag '{$this->flagKey}': variable '$key' is " . json_encode($value) . ", not $wanted"
            );
        }
        return $value;
    }
}
