<?php

declare(strict_types=1);

namespace Trackd;

/** An experiment a conversion was counted for, as answered by Client::track. */
final class Attribution
{
    public function __construct(
        public readonly string $experimentKey,
        public readonly string $variationKey,
        public readonly string $experimentId,
        public readonly string $variationId,
    ) {
    }

    /** @param array<string, mixed> $json one of TrackResponse's attributions */
    public static function fromJson(array $json): self
    {
        return new self(
            (string) ($json['experimentKey'] ?? ''),
            (string) ($json['variationKey'] ?? ''),
            (string) ($json['experimentId'] ?? ''),
            (string) ($json['variationId'] ?? ''),
        );
    }
}
