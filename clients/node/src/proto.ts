// Loads trackd's API from the .proto files at run time (no generated message code): the types
// in ./generated only describe the shapes proto-loader produces with LOADER_OPTIONS.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/tracking_service';

const PROTO_FILE = 'trackd/v1/tracking_service.proto';

/** Must match the flags of `npm run gen-types`, which the generated types describe. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/**
 * Where trackd/v1/tracking_service.proto is: $TRACKD_PROTO_DIR, then the copy an npm package
 * carries (proto/ beside dist/), then the repository's proto/ (clients/node/../../proto).
 */
export function protoDir(): string {
  const candidates = [
    process.env.TRACKD_PROTO_DIR,
    path.resolve(__dirname, '..', '..', 'proto'),
    path.resolve(__dirname, '..', '..', '..', '..', 'proto'),
  ];
  for (const dir of candidates) {
    if (dir && fs.existsSync(path.join(dir, PROTO_FILE))) {
      return dir;
    }
  }
  throw new Error(`${PROTO_FILE} not found in ${candidates.filter(Boolean).join(', ')}`);
}

let loaded: ProtoGrpcType | undefined;

/** The loaded package tree: `loadTrackdProto().trackd.v1.TrackingService` is the client class. */
export function loadTrackdProto(): ProtoGrpcType {
  if (!loaded) {
    const definition = protoLoader.loadSync(PROTO_FILE, {
      ...LOADER_OPTIONS,
      includeDirs: [protoDir()],
    });
    loaded = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  }
  return loaded;
}
