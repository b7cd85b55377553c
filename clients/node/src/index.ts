// @trackd/client: trackd's activate and track, for Node.
export {
  TrackdClient,
  trackRequest,
  type TrackdClientOptions,
  type Attribution,
  type ActivateDetail,
  type TrackDetail,
} from './client';
export { TrackdError } from './errors';
export {
  Decision,
  DecideOption,
  VariableTypeError,
  type RuleType,
  type DecisionContext,
} from './decide';
export { toValue, toValueMap, fromValue, type AttributeValue, type Attributes } from './values';
export { loadTrackdProto, protoDir, LOADER_OPTIONS } from './proto';
/** gRPC status codes, for `err.code === status.NOT_FOUND`. */
export { status } from '@grpc/grpc-js';
export type { ProtoGrpcType } from './generated/tracking_service';
