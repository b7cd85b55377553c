package dev.trackd.client;

import dev.trackd.v1.FlagDecision;
import dev.trackd.v1.RuleType;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;

/**
 * One flag's decision, as the Optimizely SDK's {@code OptimizelyDecision}.
 *
 * <p>{@link #getVariationKey()} and {@link #getRuleKey()} are null when none decided; {@link
 * #getRuleType()} is "experiment", "feature-test", "rollout", "holdout" or null. {@link
 * #getError()} is set (and {@link #isEnabled()} false) when the flag could not be decided, e.g. an
 * unknown flag key. The typed getters throw {@link VariableTypeException} when the variable has
 * another type and {@link NoSuchElementException} when the flag has no such variable.
 */
public final class Decision {
  private final String flagKey;
  private final boolean enabled;
  private final String variationKey;
  private final String ruleKey;
  private final String ruleType;
  private final Map<String, Object> variables;
  private final List<String> reasons;
  private final boolean impressionRecorded;
  private final String error;

  private Decision(
      String flagKey,
      boolean enabled,
      String variationKey,
      String ruleKey,
      String ruleType,
      Map<String, Object> variables,
      List<String> reasons,
      boolean impressionRecorded,
      String error) {
    this.flagKey = flagKey;
    this.enabled = enabled;
    this.variationKey = variationKey;
    this.ruleKey = ruleKey;
    this.ruleType = ruleType;
    this.variables = variables;
    this.reasons = reasons;
    this.impressionRecorded = impressionRecorded;
    this.error = error;
  }

  static Decision fromProto(FlagDecision d) {
    return new Decision(
        d.getFlagKey(),
        d.getEnabled(),
        emptyToNull(d.getVariationKey()),
        emptyToNull(d.getRuleKey()),
        ruleType(d.getRuleType()),
        Values.fromStruct(d.getVariables()),
        List.copyOf(d.getReasonsList()),
        d.getImpressionRecorded(),
        emptyToNull(d.getError()));
  }

  /** A disabled flag that ENABLED_FLAGS_ONLY left out of trackd's answer. */
  static Decision dropped(String flagKey) {
    return new Decision(flagKey, false, null, null, null, Map.of(), List.of(), false, null);
  }

  private static String ruleType(RuleType type) {
    switch (type) {
      case RULE_TYPE_EXPERIMENT:
        return "experiment";
      case RULE_TYPE_FEATURE_TEST:
        return "feature-test";
      case RULE_TYPE_ROLLOUT:
        return "rollout";
      case RULE_TYPE_HOLDOUT:
        return "holdout";
      default:
        return null;
    }
  }

  private static String emptyToNull(String s) {
    return s.isEmpty() ? null : s;
  }

  public String getFlagKey() {
    return flagKey;
  }

  public boolean isEnabled() {
    return enabled;
  }

  public String getVariationKey() {
    return variationKey;
  }

  public String getRuleKey() {
    return ruleKey;
  }

  public String getRuleType() {
    return ruleType;
  }

  /** Every variable, as {@link Values#fromValue}: json variables as Maps and Lists. */
  public Map<String, Object> getVariables() {
    return variables;
  }

  /** Only with {@link DecideOption#INCLUDE_REASONS}. */
  public List<String> getReasons() {
    return reasons;
  }

  public boolean isImpressionRecorded() {
    return impressionRecorded;
  }

  public String getError() {
    return error;
  }

  public boolean getBoolean(String key) {
    return typed(key, "boolean", Boolean.class);
  }

  public long getInteger(String key) {
    return typed(key, "integer", Long.class);
  }

  /** A double variable (one with a whole value arrives as a whole number). */
  public double getDouble(String key) {
    Object value = variable(key);
    if (value instanceof Long || value instanceof Double) {
      return ((Number) value).doubleValue();
    }
    throw mismatch(key, "double", value);
  }

  public String getString(String key) {
    return typed(key, "string", String.class);
  }

  /** A json variable's object. */
  @SuppressWarnings("unchecked")
  public Map<String, Object> getJson(String key) {
    return typed(key, "json", Map.class);
  }

  private Object variable(String key) {
    if (!variables.containsKey(key)) {
      throw new NoSuchElementException(
          "flag \"" + flagKey + "\" has no variable \"" + key + "\"");
    }
    return variables.get(key);
  }

  private <T> T typed(String key, String wanted, Class<T> type) {
    Object value = variable(key);
    if (!type.isInstance(value)) {
      throw mismatch(key, wanted, value);
    }
    return type.cast(value);
  }

  private VariableTypeException mismatch(String key, String wanted, Object value) {
    String kind = value == null ? "null" : value.getClass().getSimpleName();
    return new VariableTypeException(
        "flag \"" + flagKey + "\": variable \"" + key + "\" is " + kind + " " + value + ", not "
            + wanted);
  }

  @Override
  public boolean equals(Object o) {
    if (!(o instanceof Decision)) {
      return false;
    }
    Decision d = (Decision) o;
    return flagKey.equals(d.flagKey)
        && enabled == d.enabled
        && Objects.equals(variationKey, d.variationKey)
        && Objects.equals(ruleKey, d.ruleKey)
        && Objects.equals(ruleType, d.ruleType)
        && variables.equals(d.variables)
        && reasons.equals(d.reasons)
        && impressionRecorded == d.impressionRecorded
        && Objects.equals(error, d.error);
  }

  @Override
  public int hashCode() {
    return Objects.hash(flagKey, enabled, variationKey, ruleKey, ruleType, variables, error);
  }

  @Override
  public String toString() {
    return "Decision{flagKey=" + flagKey + ", enabled=" + enabled + ", variationKey="
        + variationKey + ", ruleKey=" + ruleKey + ", ruleType=" + ruleType + ", variables="
        + variables + ", reasons=" + reasons + ", impressionRecorded=" + impressionRecorded
        + ", error=" + error + "}";
  }
}
