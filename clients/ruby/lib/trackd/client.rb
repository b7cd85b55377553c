# frozen_string_literal: true

require 'grpc'
require 'trackd/v1/tracking_service_services_pb'
require 'trackd/values'
require 'trackd/errors'
require 'trackd/decision'

module Trackd
  # An experiment a conversion was counted for, as answered by #track.
  Attribution = Struct.new(:experiment_key, :variation_key, :experiment_id, :variation_id,
                           keyword_init: true)

  # A thin client of trackd's TrackingService with the Optimizely SDK's call
  # shapes:
  #
  #   client = Trackd::Client.new('localhost:50051', timeout: 2)
  #   client.activate('ab_running', 'user123', { 'device' => 'iPhone' }) # => "variation_a" or nil
  #   client.track('my_conversion', 'user123', { 'device' => 'iPhone' }, { 'revenue' => 4200 })
  #
  # Every call has a deadline of `timeout` seconds; failures raise Trackd::Error
  # (Trackd::NotFound, Trackd::InvalidArgument, ...) with the gRPC error as #cause.
  class Client
    attr_reader :address, :timeout

    # credentials: :this_channel_is_insecure (plaintext, the default) or a
    # GRPC::Core::ChannelCredentials for TLS.
    def initialize(address, timeout: 5.0, credentials: :this_channel_is_insecure)
      raise ArgumentError, 'timeout must be positive' unless timeout.positive?

      @address = address
      @timeout = timeout
      @channel = GRPC::Core::Channel.new(address, {}, credentials)
      @stub = Trackd::V1::TrackingService::Stub.new(address, credentials, channel_override: @channel)
    end

    # Decides the user's variation and records an impression. Returns the
    # variation key, or nil when the user is in no variation.
    def activate(experiment_key, user_id, attributes = {})
      key = activate_detail(experiment_key, user_id, attributes).variation_key
      key.empty? ? nil : key
    end

    # Activate's whole answer, a Trackd::V1::ActivateResponse. Its
    # attribution_degraded is true when a store the call needed could not be
    # used: the override store (Redis) unreachable, so the user's forced
    # variation was ignored; or the activation store unreachable (Redis) or full
    # (local LMDB), so the activation is not remembered for attribution and the
    # impression may repeat one already sent.
    def activate_detail(experiment_key, user_id, attributes = {})
      request = Trackd::V1::ActivateRequest.new(
        experiment_key: experiment_key, user_id: user_id,
        attributes: Values.to_value_map(attributes)
      )
      call(:activate, request)
    end

    # Records a conversion event. Returns the Attributions: the experiments the
    # user was activated in that the event was counted for. An empty list may
    # also mean trackd could not reach its Redis: #track_detail tells them apart.
    def track(event_key, user_id, attributes = {}, tags = {})
      track_detail(event_key, user_id, attributes, tags).attributions.map do |a|
        Attribution.new(experiment_key: a.experiment_key, variation_key: a.variation_key,
                        experiment_id: a.experiment_id, variation_id: a.variation_id)
      end
    end

    # Track's whole answer, a Trackd::V1::TrackResponse. Its attribution_unknown
    # is true when trackd could not read its activation store (Redis): the
    # conversion was recorded, but without attributions.
    def track_detail(event_key, user_id, attributes = {}, tags = {})
      request = Trackd::V1::TrackRequest.new(
        event_key: event_key, user_id: user_id,
        attributes: Values.to_value_map(attributes), tags: Values.to_value_map(tags)
      )
      call(:track, request)
    end

    # Decides one flag, as the SDK's user_context.decide(flag_key): a
    # Trackd::Decision. An unknown flag key raises nothing: the Decision carries
    # #error. As the SDK's decide, it ignores ENABLED_FLAGS_ONLY: one flag always
    # gets its decision (should trackd's --default-decide-options drop a
    # disabled flag anyway, a bare disabled Decision stands in).
    def decide(user_id, flag_key, attributes = {}, options = [])
      single = options.reject { |o| o.to_s == DecideOption::ENABLED_FLAGS_ONLY.to_s }
      decide_for_keys(user_id, [flag_key], attributes, single)[flag_key] ||
        Decision.dropped(flag_key)
    end

    # { flag key => Decision } for these flags, in their order (ENABLED_FLAGS_ONLY
    # drops disabled ones).
    def decide_for_keys(user_id, flag_keys, attributes = {}, options = [])
      return {} if flag_keys.empty? # trackd reads no keys as every flag

      decide_request(user_id, flag_keys, attributes, options)
    end

    # { flag key => Decision } for every flag of trackd's datafile, in its order.
    def decide_all(user_id, attributes = {}, options = [])
      decide_request(user_id, [], attributes, options)
    end

    # Forces the flag's variation for the user: for one rule with rule_key, else
    # for the whole flag.
    def set_forced_decision(user_id, flag_key, variation_key, rule_key: nil)
      call(:set_forced_decision, Trackd::V1::SetForcedDecisionRequest.new(
                                   user_id: user_id, flag_key: flag_key, rule_key: rule_key.to_s,
                                   variation_key: variation_key
                                 ))
      nil
    end

    # The variation key forced for the flag (or rule), nil when none is.
    def get_forced_decision(user_id, flag_key, rule_key: nil)
      key = call(:get_forced_decision, Trackd::V1::GetForcedDecisionRequest.new(
                                         user_id: user_id, flag_key: flag_key, rule_key: rule_key.to_s
                                       )).variation_key
      key.empty? ? nil : key
    end

    # Removes one forced decision; true when there was one.
    def remove_forced_decision(user_id, flag_key, rule_key: nil)
      call(:remove_forced_decision, Trackd::V1::RemoveForcedDecisionRequest.new(
                                      user_id: user_id, flag_key: flag_key, rule_key: rule_key.to_s
                                    )).removed
    end

    # Removes every forced decision of the user; returns how many there were.
    def remove_all_forced_decisions(user_id)
      call(:remove_all_forced_decisions,
           Trackd::V1::RemoveAllForcedDecisionsRequest.new(user_id: user_id)).removed
    end

    # The generated stub, for the RPCs this wrapper does not cover.
    attr_reader :stub

    # Closes the channel; the client cannot be used afterwards.
    def close
      @channel.close
    end

    private

    def decide_request(user_id, flag_keys, attributes, options)
      request = Trackd::V1::DecideRequest.new(
        user_id: user_id, attributes: Values.to_value_map(attributes), flag_keys: flag_keys.to_a,
        options: options.map { |o| DecideOption.to_proto(o) }
      )
      call(:decide, request).decisions.to_h { |d| [d.flag_key, Decision.from_proto(d)] }
    end

    def call(method, request)
      @stub.public_send(method, request, deadline: Time.now + @timeout)
    rescue GRPC::BadStatus => e
      raise Error.from_grpc(e)
    end
  end
end
