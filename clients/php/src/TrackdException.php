<?php

declare(strict_types=1);

namespace Trackd;

/**
 * A call trackd refused or that did not complete: Connect's error code (the name of the gRPC
 * status trackd would give, in snake case: "not_found", "invalid_argument", ...) and message.
 * The exception's own code is the HTTP status, 0 when no answer arrived.
 */
class TrackdException extends \RuntimeException
{
    public const NOT_FOUND = 'not_found';
    public const INVALID_ARGUMENT = 'invalid_argument';
    public const RESOURCE_EXHAUSTED = 'resource_exhausted';
    public const UNAUTHENTICATED = 'unauthenticated';
    public const PERMISSION_DENIED = 'permission_denied';
    public const DEADLINE_EXCEEDED = 'deadline_exceeded';
    public const UNAVAILABLE = 'unavailable';

    // Connect's code for an HTTP status whose body is not a Connect error (a proxy's page):
    // the table of https://connectrpc.com/docs/protocol/#http-to-error-code
    private const BY_HTTP_STATUS = [
        400 => 'internal', 401 => 'unauthenticated', 403 => 'permission_denied',
        404 => 'unimplemented', 429 => 'unavailable', 502 => 'unavailable',
        503 => 'unavailable', 504 => 'unavailable',
    ];

    public function __construct(
        public readonly string $connectCode,
        string $message,
        int $httpStatus = 0,
        ?\Throwable $previous = null,
    ) {
        parent::__construct("$connectCode: $message", $httpStatus, $previous);
    }

    /** The error of an HTTP answer that is not a success. */
    public static function fromResponse(int $httpStatus, string $body): self
    {
        $error = json_decode($body, true);
        if (is_array($error) && is_string($error['code'] ?? null)) {
            return new self($error['code'], (string) ($error['message'] ?? ''), $httpStatus);
        }
        return new self(self::BY_HTTP_STATUS[$httpStatus] ?? 'unknown', "HTTP $httpStatus", $httpStatus);
    }
}
