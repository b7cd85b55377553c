// Feature flags: the decision type, its typed getters and the decide options, as the
// Optimizely JavaScript SDK's OptimizelyDecision and OptimizelyDecideOption. No protobuf here:
// the browser client (clients/browser) builds the same Decision from connect-es's messages.

/** What changes a decide call, as the SDK's OptimizelyDecideOption. */
export const DecideOption = {
  DISABLE_DECISION_EVENT: 'DISABLE_DECISION_EVENT',
  ENABLED_FLAGS_ONLY: 'ENABLED_FLAGS_ONLY',
  IGNORE_USER_PROFILE_SERVICE: 'IGNORE_USER_PROFILE_SERVICE',
  INCLUDE_REASONS: 'INCLUDE_REASONS',
  EXCLUDE_VARIABLES: 'EXCLUDE_VARIABLES',
} as const;
export type DecideOption = (typeof DecideOption)[keyof typeof DecideOption];

/** The kind of rule that decided a flag: the SDK's decision source. */
export type RuleType = 'experiment' | 'feature-test' | 'rollout' | 'holdout';

/** The proto's name of a decide option; anything else is refused before any call. */
export function decideOptionName(option: DecideOption): string {
  if (!Object.values(DecideOption).includes(option)) {
    throw new TypeError(`unknown decide option ${String(option)}`);
  }
  return `DECIDE_OPTION_${option}`;
}

/** A variable was read with a getter of another type than its own. */
export class VariableTypeError extends TypeError {
  override name = 'VariableTypeError';
}

/** A flag and, optionally, one of its rules: the SDK's OptimizelyDecisionContext. */
export interface DecisionContext {
  flagKey: string;
  ruleKey?: string | null;
}

/**
 * One flag's decision. `error` is set (and `enabled` false) when the flag could not be
 * decided, e.g. an unknown flag key: the call itself does not reject.
 */
export class Decision {
  readonly flagKey: string;
  readonly enabled: boolean;
  /** null when no variation was decided. */
  readonly variationKey: string | null;
  /** null when no rule decided. */
  readonly ruleKey: string | null;
  readonly ruleType: RuleType | null;
  /** Each of its declared type; json variables as plain objects. */
  readonly variables: Readonly<Record<string, unknown>>;
  /** Only with INCLUDE_REASONS. */
  readonly reasons: readonly string[];
  readonly impressionRecorded: boolean;
  readonly error: string | null;

  constructor(fields: Omit<Decision, 'getBoolean' | 'getInteger' | 'getDouble' | 'getString' | 'getJson'>) {
    this.flagKey = fields.flagKey;
    this.enabled = fields.enabled;
    this.variationKey = fields.variationKey;
    this.ruleKey = fields.ruleKey;
    this.ruleType = fields.ruleType;
    this.variables = fields.variables;
    this.reasons = fields.reasons;
    this.impressionRecorded = fields.impressionRecorded;
    this.error = fields.error;
  }

  /** A disabled flag that ENABLED_FLAGS_ONLY left out of trackd's answer. */
  static dropped(flagKey: string): Decision {
    return new Decision({
      flagKey,
      enabled: false,
      variationKey: null,
      ruleKey: null,
      ruleType: null,
      variables: {},
      reasons: [],
      impressionRecorded: false,
      error: null,
    });
  }

  getBoolean(key: string): boolean {
    return this.typed(key, 'boolean', (v): v is boolean => typeof v === 'boolean');
  }

  getInteger(key: string): number {
    return this.typed(key, 'integer', (v): v is number => Number.isInteger(v));
  }

  getDouble(key: string): number {
    return this.typed(key, 'double', (v): v is number => typeof v === 'number');
  }

  getString(key: string): string {
    return this.typed(key, 'string', (v): v is string => typeof v === 'string');
  }

  getJson(key: string): Record<string, unknown> {
    return this.typed(
      key,
      'json',
      (v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v),
    );
  }

  private typed<T>(key: string, wanted: string, is: (value: unknown) => value is T): T {
    if (!Object.hasOwn(this.variables, key)) {
      throw new RangeError(`flag "${this.flagKey}" has no variable "${key}"`);
    }
    const value = this.variables[key];
    if (!is(value)) {
      throw new VariableTypeError(
        `flag "${this.flagKey}": variable "${key}" is ${JSON.stringify(value)}, not ${wanted}`,
      );
    }
    return value;
  }
}
