package dev.trackd.client;

/** What changes a decide call, as the Optimizely SDK's {@code OptimizelyDecideOption}. */
public enum DecideOption {
  DISABLE_DECISION_EVENT(dev.trackd.v1.DecideOption.DECIDE_OPTION_DISABLE_DECISION_EVENT),
  ENABLED_FLAGS_ONLY(dev.trackd.v1.DecideOption.DECIDE_OPTION_ENABLED_FLAGS_ONLY),
  IGNORE_USER_PROFILE_SERVICE(dev.trackd.v1.DecideOption.DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE),
  INCLUDE_REASONS(dev.trackd.v1.DecideOption.DECIDE_OPTION_INCLUDE_REASONS),
  EXCLUDE_VARIABLES(dev.trackd.v1.DecideOption.DECIDE_OPTION_EXCLUDE_VARIABLES);

  private final dev.trackd.v1.DecideOption proto;

  DecideOption(dev.trackd.v1.DecideOption proto) {
    this.proto = proto;
  }

  /** The proto's enum value. */
  public dev.trackd.v1.DecideOption toProto() {
    return proto;
  }
}
