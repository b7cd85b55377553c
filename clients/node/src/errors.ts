import { Metadata, status, type ServiceError } from '@grpc/grpc-js';

/**
 * A failed call: `code` is the gRPC status (`err.code === status.NOT_FOUND` for an unknown
 * experiment or event key), `details` trackd's reason.
 */
export class TrackdError extends Error {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;

  constructor(code: status, details: string, metadata: Metadata = new Metadata(), options?: { cause?: unknown }) {
    super(`${status[code] ?? code}: ${details}`, options);
    this.name = 'TrackdError';
    this.code = code;
    this.details = details;
    this.metadata = metadata;
  }

  /** Wraps grpc-js's error, keeping it as `cause`. */
  static from(error: ServiceError): TrackdError {
    return new TrackdError(error.code, error.details, error.metadata, { cause: error });
  }
}
