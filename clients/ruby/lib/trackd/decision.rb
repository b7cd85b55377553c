# frozen_string_literal: true

require 'trackd/v1/tracking_service_pb'
require 'trackd/values'

module Trackd
  # A variable was read with a getter of another type than its own.
  class VariableTypeError < TypeError; end

  # What changes a decide call, as the SDK's OptimizelyDecideOption. Pass these
  # (or the same names as Symbols or Strings) in decide's options.
  module DecideOption
    DISABLE_DECISION_EVENT = :DISABLE_DECISION_EVENT
    ENABLED_FLAGS_ONLY = :ENABLED_FLAGS_ONLY
    IGNORE_USER_PROFILE_SERVICE = :IGNORE_USER_PROFILE_SERVICE
    INCLUDE_REASONS = :INCLUDE_REASONS
    EXCLUDE_VARIABLES = :EXCLUDE_VARIABLES
    ALL = [DISABLE_DECISION_EVENT, ENABLED_FLAGS_ONLY, IGNORE_USER_PROFILE_SERVICE,
           INCLUDE_REASONS, EXCLUDE_VARIABLES].freeze

    module_function

    # The proto's enum name of an option; an unknown one is an ArgumentError.
    def to_proto(option)
      name = option.to_s.to_sym
      raise ArgumentError, "unknown decide option #{option.inspect}" unless ALL.include?(name)

      :"DECIDE_OPTION_#{name}"
    end
  end

  # One flag's decision, as the SDK's OptimizelyDecision. variation_key and
  # rule_key are nil when none decided; rule_type is "experiment",
  # "feature-test", "rollout", "holdout" or nil. error is set (and enabled false)
  # when the flag could not be decided, e.g. an unknown flag key.
  Decision = Struct.new(:flag_key, :enabled, :variation_key, :rule_key, :rule_type, :variables,
                        :reasons, :impression_recorded, :error, keyword_init: true) do
    rule_types = {
      RULE_TYPE_EXPERIMENT: 'experiment', RULE_TYPE_FEATURE_TEST: 'feature-test',
      RULE_TYPE_ROLLOUT: 'rollout', RULE_TYPE_HOLDOUT: 'holdout'
    }.freeze

    define_singleton_method(:from_proto) do |message|
      new(flag_key: message.flag_key, enabled: message.enabled,
          variation_key: message.variation_key.empty? ? nil : message.variation_key,
          rule_key: message.rule_key.empty? ? nil : message.rule_key,
          rule_type: rule_types[message.rule_type],
          variables: Values.from_value(Google::Protobuf::Value.new(struct_value: message.variables ||
                                                                     Google::Protobuf::Struct.new)),
          reasons: message.reasons.to_a, impression_recorded: message.impression_recorded,
          error: message.error.empty? ? nil : message.error)
    end

    # A disabled flag that ENABLED_FLAGS_ONLY left out of trackd's answer.
    def self.dropped(flag_key)
      new(flag_key: flag_key, enabled: false, variables: {}, reasons: [], impression_recorded: false)
    end

    alias_method :enabled?, :enabled

    def get_boolean(key)
      typed(key, 'boolean') { |v| [true, false].include?(v) }
    end

    def get_integer(key)
      typed(key, 'integer') { |v| v.is_a?(Integer) }
    end

    # A double with a whole value arrives as a whole number: it comes back a Float.
    def get_double(key)
      typed(key, 'double') { |v| v.is_a?(Numeric) }.to_f
    end

    def get_string(key)
      typed(key, 'string') { |v| v.is_a?(String) }
    end

    def get_json(key)
      typed(key, 'json') { |v| v.is_a?(Hash) }
    end

    private

    def typed(key, wanted)
      value = variables.fetch(key.to_s) do
        raise KeyError, "flag #{flag_key.inspect} has no variable #{key.to_s.inspect}"
      end
      return value if yield(value)

      raise VariableTypeError,
            "flag #{flag_key.inspect}: variable #{key.to_s.inspect} is #{value.inspect}, not #{wanted}"
    end
  end
end
