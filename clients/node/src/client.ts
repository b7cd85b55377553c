import * as grpc from '@grpc/grpc-js';
import { TrackdError } from './errors';
import { loadTrackdProto } from './proto';
import { attributionsOf, type Attribution } from './attributions';
import { fromValue, toValueMap, type Attributes } from './values';
import type { TrackingServiceClient } from './generated/trackd/v1/TrackingService';
import type { TrackRequest } from './generated/trackd/v1/TrackRequest';
import type { ActivateResponse__Output } from './generated/trackd/v1/ActivateResponse';
import type { TrackResponse__Output } from './generated/trackd/v1/TrackResponse';
import type { DecideResponse__Output } from './generated/trackd/v1/DecideResponse';
import type { FlagDecision__Output } from './generated/trackd/v1/FlagDecision';
import {
  Decision,
  decideOptionName,
  type DecideOption,
  type DecisionContext,
  type RuleType,
} from './decide';

/** Activate's whole answer (see the proto's ActivateResponse). */
export type ActivateDetail = ActivateResponse__Output;
/** Track's whole answer (see the proto's TrackResponse). */
export type TrackDetail = TrackResponse__Output;
export type { Attribution } from './attributions';

/** Options of a {@link TrackdClient}. */
export interface TrackdClientOptions {
  /** The deadline of each call, in milliseconds. Default 5000. */
  deadlineMs?: number;
  /** Channel credentials. Default: plaintext (`grpc.credentials.createInsecure()`). */
  credentials?: grpc.ChannelCredentials;
  /** grpc-js channel options, e.g. `{'grpc.keepalive_time_ms': 30000}`. */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * A client of trackd with the Optimizely SDK's call shapes.
 *
 * ```ts
 * const trackd = new TrackdClient('127.0.0.1:50051', { deadlineMs: 2000 });
 * const variation = await trackd.activate('my_experiment', 'user123', { device: 'iPhone' });
 * await trackd.track('my_conversion', 'user123', { device: 'iPhone' }, { revenue: 4200 });
 * trackd.close();
 * ```
 *
 * Failed calls reject with a {@link TrackdError} whose `code` is the gRPC status; attributes or
 * tags that are not strings, numbers, booleans or null reject with a TypeError before any call.
 */
export class TrackdClient {
  /** The generated service client, for the RPCs the wrapper does not cover. */
  readonly raw: TrackingServiceClient;
  readonly deadlineMs: number;

  constructor(address: string, options: TrackdClientOptions = {}) {
    const deadlineMs = options.deadlineMs ?? 5000;
    if (!(deadlineMs > 0)) {
      throw new RangeError('deadlineMs must be positive');
    }
    this.deadlineMs = deadlineMs;
    const { TrackingService } = loadTrackdProto().trackd.v1;
    this.raw = new TrackingService(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
      options.channelOptions,
    );
  }

  /**
   * Decides the user's variation in an experiment and records an impression.
   *
   * @returns the variation's key, or null when the user is in no variation
   */
  async activate(
    experimentKey: string,
    userId: string,
    attributes?: Attributes | null,
  ): Promise<string | null> {
    const response = await this.activateDetail(experimentKey, userId, attributes);
    return response.variationKey === '' ? null : response.variationKey;
  }

  /**
   * Activate's whole answer: variation, ids, reason, impressionRecorded, revision, and
   * `attributionDegraded`, true when a store the call needed could not be used: the override store
   * (Redis) unreachable, so the user's forced variation was ignored; or the activation store
   * unreachable (Redis) or full (local LMDB), so the activation is not remembered for attribution
   * and the impression may repeat one already sent.
   */
  async activateDetail(
    experimentKey: string,
    userId: string,
    attributes?: Attributes | null,
  ): Promise<ActivateDetail> {
    const request = { experimentKey, userId, attributes: toValueMap(attributes) };
    return new Promise<ActivateDetail>((resolve, reject) => {
      this.raw.activate(request, this.callOptions(), (error, reply) =>
        error ? reject(TrackdError.from(error)) : resolve(reply!),
      );
    });
  }

  /**
   * Records a conversion event.
   *
   * @returns the experiments it was attributed to (empty when none, or when trackd could not
   *     reach its Redis: {@link trackDetail} tells the two apart)
   */
  async track(
    eventKey: string,
    userId: string,
    attributes?: Attributes | null,
    tags?: Attributes | null,
  ): Promise<Attribution[]> {
    const response = await this.trackDetail(eventKey, userId, attributes, tags);
    return attributionsOf(response.attributions);
  }

  /**
   * Track's whole answer: attributions, uuid, and `attributionUnknown`, true when trackd could not
   * read its activation store (Redis): the conversion was recorded without attributions.
   */
  async trackDetail(
    eventKey: string,
    userId: string,
    attributes?: Attributes | null,
    tags?: Attributes | null,
  ): Promise<TrackDetail> {
    const request = trackRequest(eventKey, userId, attributes, tags);
    return new Promise<TrackDetail>((resolve, reject) => {
      this.raw.track(request, this.callOptions(), (error, reply) =>
        error ? reject(TrackdError.from(error)) : resolve(reply!),
      );
    });
  }

  /**
   * Decides one flag, as the SDK's `userContext.decide(flagKey)`. An unknown flag key does not
   * reject: the Decision carries `error`. As the SDK's decide, it ignores ENABLED_FLAGS_ONLY: one
   * flag always gets its decision (should trackd's --default-decide-options drop a disabled flag
   * anyway, a bare disabled Decision stands in).
   */
  async decide(
    userId: string,
    flagKey: string,
    attributes?: Attributes | null,
    options: readonly DecideOption[] = [],
  ): Promise<Decision> {
    const single = options.filter((o) => o !== 'ENABLED_FLAGS_ONLY');
    const decisions = await this.decideForKeys(userId, [flagKey], attributes, single);
    return decisions[flagKey] ?? Decision.dropped(flagKey);
  }

  /** flag key -> Decision for these flags, in their order (ENABLED_FLAGS_ONLY drops disabled). */
  async decideForKeys(
    userId: string,
    flagKeys: readonly string[],
    attributes?: Attributes | null,
    options: readonly DecideOption[] = [],
  ): Promise<Record<string, Decision>> {
    if (flagKeys.length === 0) {
      return {}; // trackd reads no keys as every flag: decideAll says so explicitly
    }
    return this.decideRequest(userId, flagKeys, attributes, options);
  }

  /** flag key -> Decision for every flag of trackd's datafile, in its order. */
  async decideAll(
    userId: string,
    attributes?: Attributes | null,
    options: readonly DecideOption[] = [],
  ): Promise<Record<string, Decision>> {
    return this.decideRequest(userId, [], attributes, options);
  }

  private async decideRequest(
    userId: string,
    flagKeys: readonly string[],
    attributes: Attributes | null | undefined,
    options: readonly DecideOption[],
  ): Promise<Record<string, Decision>> {
    const request = {
      userId,
      attributes: toValueMap(attributes),
      flagKeys: [...flagKeys],
      options: options.map(decideOptionName),
    };
    const response = await this.unary<DecideResponse__Output>('decide', request);
    return Object.fromEntries(response.decisions.map((d) => [d.flagKey, decisionOf(d)]));
  }

  /** Forces the flag's (or one rule's, with `ruleKey`) variation for the user. */
  async setForcedDecision(
    userId: string,
    context: DecisionContext,
    decision: { variationKey: string },
  ): Promise<void> {
    await this.unary('setForcedDecision', {
      userId,
      flagKey: context.flagKey,
      ruleKey: context.ruleKey ?? '',
      variationKey: decision.variationKey,
    });
  }

  /** The variation key forced for the flag (or rule), null when none is. */
  async getForcedDecision(userId: string, context: DecisionContext): Promise<string | null> {
    const response = await this.unary<{ variationKey: string }>('getForcedDecision', {
      userId,
      flagKey: context.flagKey,
      ruleKey: context.ruleKey ?? '',
    });
    return response.variationKey || null;
  }

  /** Removes one forced decision; true when there was one. */
  async removeForcedDecision(userId: string, context: DecisionContext): Promise<boolean> {
    const response = await this.unary<{ removed: boolean }>('removeForcedDecision', {
      userId,
      flagKey: context.flagKey,
      ruleKey: context.ruleKey ?? '',
    });
    return response.removed;
  }

  /** Removes every forced decision of the user; resolves to how many there were. */
  async removeAllForcedDecisions(userId: string): Promise<number> {
    const response = await this.unary<{ removed: number }>('removeAllForcedDecisions', { userId });
    return response.removed;
  }

  /** One unary call of the generated client, by its method name. */
  private unary<T>(method: string, request: object): Promise<T> {
    const call = (this.raw as unknown as Record<string, Function>)[method];
    return new Promise<T>((resolve, reject) => {
      call.call(this.raw, request, this.callOptions(), (error: grpc.ServiceError | null, reply: T) =>
        error ? reject(TrackdError.from(error)) : resolve(reply),
      );
    });
  }

  /** Closes the channel; calls in progress go on, new ones fail. */
  close(): void {
    this.raw.close();
  }

  private callOptions(): grpc.CallOptions {
    return { deadline: Date.now() + this.deadlineMs };
  }
}

/** A TrackRequest with converted attributes and tags. */
export function trackRequest(
  eventKey: string,
  userId: string,
  attributes?: Attributes | null,
  tags?: Attributes | null,
): TrackRequest {
  return { eventKey, userId, attributes: toValueMap(attributes), tags: toValueMap(tags) };
}

const RULE_TYPES: Record<string, RuleType | null> = {
  RULE_TYPE_UNSPECIFIED: null,
  RULE_TYPE_EXPERIMENT: 'experiment',
  RULE_TYPE_FEATURE_TEST: 'feature-test',
  RULE_TYPE_ROLLOUT: 'rollout',
  RULE_TYPE_HOLDOUT: 'holdout',
};

/** A Decision from trackd's FlagDecision, as proto-loader gives it. */
function decisionOf(message: FlagDecision__Output): Decision {
  return new Decision({
    flagKey: message.flagKey,
    enabled: message.enabled,
    variationKey: message.variationKey || null,
    ruleKey: message.ruleKey || null,
    ruleType: RULE_TYPES[message.ruleType] ?? null,
    variables: fromValue({ kind: 'structValue', structValue: message.variables }) as Record<string, unknown>,
    reasons: message.reasons,
    impressionRecorded: message.impressionRecorded,
    error: message.error || null,
  });
}
