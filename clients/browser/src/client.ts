// trackd from a browser: the connect-es client generated from proto/, called over Connect on
// trackd's --http-listen port, with the Optimizely SDK's call shapes.
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import {
  DecideOption as DecideOptionEnum,
  RuleType as RuleTypeEnum,
  TrackingService,
  type ActivateResponse,
  type FlagDecision,
  type TrackResponse,
} from "./generated/trackd/v1/tracking_service_pb.js";
import { attributionsOf, type Attribution } from "../../node/src/attributions";
import { Decision, type DecideOption, type RuleType } from "../../node/src/decide";
import { toValueMap, type Attributes } from "./values.js";

/** Options of a {@link TrackdClient}. */
export interface TrackdClientOptions {
  /** The timeout of each call, in milliseconds. Default 5000. */
  timeoutMs?: number;
  /**
   * "binary" (application/proto, the default) or "json" (application/json, readable in the
   * browser's network panel). Binary carries NaN and Infinity to trackd, as every other client
   * does (clients/testdata/values.json); protobuf JSON cannot, so "json" rejects them.
   */
  format?: "binary" | "json";
  /** Headers sent with every call, e.g. `{Authorization: "Bearer ..."}`. */
  headers?: Record<string, string>;
}

const RULE_TYPES: Record<RuleTypeEnum, RuleType | null> = {
  [RuleTypeEnum.UNSPECIFIED]: null,
  [RuleTypeEnum.EXPERIMENT]: "experiment",
  [RuleTypeEnum.FEATURE_TEST]: "feature-test",
  [RuleTypeEnum.ROLLOUT]: "rollout",
  [RuleTypeEnum.HOLDOUT]: "holdout",
};

/**
 * A client of trackd's HTTP port with the Optimizely SDK's call shapes.
 *
 * ```ts
 * const trackd = new TrackdClient("https://trackd.example.com:8080");
 * const variation = await trackd.activate("my_experiment", "user123", { device: "iPhone" });
 * await trackd.track("my_conversion", "user123", { device: "iPhone" }, { revenue: 4200 });
 * ```
 *
 * A failed call rejects with connect-es's ConnectError (`code` is the status: `Code.NotFound`
 * for an unknown event); a page whose origin trackd's --http-cors-origins does not list gets
 * the browser's refusal, a ConnectError with `Code.Unknown`. Attributes or tags that are not
 * strings, numbers, booleans or null reject with a TypeError before any call.
 */
export class TrackdClient {
  /** The generated service client, for the RPCs the wrapper does not cover. */
  readonly raw: Client<typeof TrackingService>;
  private readonly callOptions: CallOptions;

  constructor(baseUrl: string, options: TrackdClientOptions = {}) {
    const timeoutMs = options.timeoutMs ?? 5000;
    if (!(timeoutMs > 0)) {
      throw new RangeError("timeoutMs must be positive");
    }
    const transport = createConnectTransport({
      baseUrl,
      useBinaryFormat: (options.format ?? "binary") === "binary",
    });
    this.raw = createClient(TrackingService, transport);
    this.callOptions = { timeoutMs, headers: options.headers };
  }

  /** Decides the user's variation and records an impression: its key, or null when none. */
  async activate(experimentKey: string, userId: string, attributes?: Attributes | null): Promise<string | null> {
    const response = await this.activateDetail(experimentKey, userId, attributes);
    return response.variationKey === "" ? null : response.variationKey;
  }

  /** Activate's whole answer (ids, reason, impressionRecorded, attributionDegraded, ...). */
  activateDetail(experimentKey: string, userId: string, attributes?: Attributes | null): Promise<ActivateResponse> {
    const request = { experimentKey, userId, attributes: toValueMap(attributes) };
    return this.raw.activate(request, this.callOptions);
  }

  /** Records a conversion event: the experiments it was attributed to. */
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
   * Track's whole answer: attributions, uuid and attributionUnknown (trackd could not read its
   * activation store, Redis).
   */
  trackDetail(
    eventKey: string,
    userId: string,
    attributes?: Attributes | null,
    tags?: Attributes | null,
  ): Promise<TrackResponse> {
    const request = { eventKey, userId, attributes: toValueMap(attributes), tags: toValueMap(tags) };
    return this.raw.track(request, this.callOptions);
  }

  /**
   * Decides one flag, as the SDK's `userContext.decide(flagKey)`. An unknown flag key does not
   * reject: the Decision carries `error`.
   */
  async decide(
    userId: string,
    flagKey: string,
    attributes?: Attributes | null,
    options: readonly DecideOption[] = [],
  ): Promise<Decision> {
    // As the SDK's decide, one flag always gets its decision: ENABLED_FLAGS_ONLY is for many.
    const single = options.filter((option) => option !== "ENABLED_FLAGS_ONLY");
    const [decision] = await this.decideRequest(userId, [flagKey], attributes, single);
    return decision ?? Decision.dropped(flagKey); // trackd's --default-decide-options may drop it
  }

  /** Decides every flag of trackd's datafile, in its order. */
  decideAll(userId: string, attributes?: Attributes | null, options: readonly DecideOption[] = []): Promise<Decision[]> {
    return this.decideRequest(userId, [], attributes, options);
  }

  private async decideRequest(
    userId: string,
    flagKeys: string[],
    attributes: Attributes | null | undefined,
    options: readonly DecideOption[],
  ): Promise<Decision[]> {
    const request = {
      userId,
      flagKeys,
      attributes: toValueMap(attributes),
      options: options.map(decideOption),
    };
    const response = await this.raw.decide(request, this.callOptions);
    return response.decisions.map(decision);
  }
}

function decideOption(name: DecideOption): DecideOptionEnum {
  const option = (DecideOptionEnum as unknown as Record<string, DecideOptionEnum | undefined>)[name];
  if (option === undefined || option === DecideOptionEnum.UNSPECIFIED) {
    throw new TypeError(`unknown decide option ${String(name)}`);
  }
  return option;
}

/** The Node client's Decision (its typed getters included) from connect-es's FlagDecision. */
function decision(message: FlagDecision): Decision {
  return new Decision({
    flagKey: message.flagKey,
    enabled: message.enabled,
    variationKey: message.variationKey || null,
    ruleKey: message.ruleKey || null,
    ruleType: RULE_TYPES[message.ruleType] ?? null,
    variables: message.variables ?? {},
    reasons: message.reasons,
    impressionRecorded: message.impressionRecorded,
    error: message.error || null,
  });
}
