# frozen_string_literal: true

require 'minitest/autorun'
require 'trackd/client'
require 'google/protobuf/well_known_types'

# Answers as trackd's Decide does for flags "checkout" (an A/B test) and "banner"
# (a rollout), and records what it was asked.
class FlagTracking < Trackd::V1::TrackingService::Service
  VARIABLES = {
    'on' => true, 'count' => 3, 'ratio' => 0.5, 'label' => 'blue',
    'config' => { 'size' => 10, 'tags' => %w[a b], 'nested' => { 'x' => nil } }
  }.freeze

  class << self
    attr_accessor :requests, :forced
  end

  def decide(request, _call)
    self.class.requests << request
    raise GRPC::InvalidArgument, 'user_id must not be empty' if request.user_id.empty?

    variables = Google::Protobuf::Struct.from_hash(VARIABLES)
    known = {
      'checkout' => Trackd::V1::FlagDecision.new(
        flag_key: 'checkout', enabled: true,
        variation_key: self.class.forced[[request.user_id, 'checkout', '']] || 'treatment',
        rule_key: 'checkout_test', rule_type: :RULE_TYPE_FEATURE_TEST, variables: variables,
        reasons: ['in the test'], impression_recorded: true
      ),
      'banner' => Trackd::V1::FlagDecision.new(flag_key: 'banner', variation_key: 'off',
                                               rule_key: 'everyone_else', rule_type: :RULE_TYPE_ROLLOUT)
    }
    keys = request.flag_keys.empty? ? known.keys : request.flag_keys.to_a
    decisions = keys.map { |k| known[k] || Trackd::V1::FlagDecision.new(flag_key: k, error: "no flag #{k}") }
    # 'enabled-only-by-default' plays a daemon whose default options hold ENABLED_FLAGS_ONLY.
    if request.options.include?(:DECIDE_OPTION_ENABLED_FLAGS_ONLY) || request.user_id == 'enabled-only-by-default'
      decisions = decisions.select(&:enabled)
    end
    Trackd::V1::DecideResponse.new(decisions: decisions, revision: '7')
  end

  def set_forced_decision(request, _call)
    self.class.forced[[request.user_id, request.flag_key, request.rule_key]] = request.variation_key
    Trackd::V1::SetForcedDecisionResponse.new
  end

  def get_forced_decision(request, _call)
    key = self.class.forced[[request.user_id, request.flag_key, request.rule_key]]
    Trackd::V1::GetForcedDecisionResponse.new(variation_key: key.to_s)
  end

  def remove_forced_decision(request, _call)
    removed = !self.class.forced.delete([request.user_id, request.flag_key, request.rule_key]).nil?
    Trackd::V1::RemoveForcedDecisionResponse.new(removed: removed)
  end

  def remove_all_forced_decisions(request, _call)
    mine = self.class.forced.keys.select { |k| k[0] == request.user_id }
    mine.each { |k| self.class.forced.delete(k) }
    Trackd::V1::RemoveAllForcedDecisionsResponse.new(removed: mine.size)
  end
end

# decide, decide_for_keys, decide_all and forced decisions against FlagTracking
# served in this process on loopback.
class TestDecide < Minitest::Test
  def setup
    FlagTracking.requests = []
    FlagTracking.forced = {}
    @server = GRPC::RpcServer.new
    port = @server.add_http2_port('127.0.0.1:0', :this_port_is_insecure)
    @server.handle(FlagTracking)
    @thread = Thread.new { @server.run }
    @server.wait_till_running
    @client = Trackd::Client.new("127.0.0.1:#{port}", timeout: 5)
  end

  def teardown
    @client.close
    @server.stop
    @thread.join
  end

  def test_decide_returns_the_decision_with_plain_variables
    decision = @client.decide('u1', 'checkout', { 'device' => 'iPhone', age: 30 },
                              [Trackd::DecideOption::INCLUDE_REASONS, 'DISABLE_DECISION_EVENT'])
    expected = Trackd::Decision.new(
      flag_key: 'checkout', enabled: true, variation_key: 'treatment', rule_key: 'checkout_test',
      rule_type: 'feature-test', variables: FlagTracking::VARIABLES, reasons: ['in the test'],
      impression_recorded: true, error: nil
    )
    assert_equal expected, decision
    request = FlagTracking.requests.first
    assert_equal ['checkout'], request.flag_keys.to_a
    assert_equal %i[DECIDE_OPTION_INCLUDE_REASONS DECIDE_OPTION_DISABLE_DECISION_EVENT], request.options.to_a
    assert_equal 30.0, request.attributes['age'].number_value
    assert_equal 'iPhone', request.attributes['device'].string_value
  end

  def test_typed_getters_return_ruby_types_and_refuse_other_types
    d = @client.decide('u1', 'checkout')
    assert_equal true, d.get_boolean('on')
    assert_equal 3, d.get_integer('count')
    assert_equal 0.5, d.get_double('ratio')
    assert_instance_of Float, d.get_double('count')
    assert_equal 'blue', d.get_string(:label)
    assert_equal({ 'size' => 10, 'tags' => %w[a b], 'nested' => { 'x' => nil } }, d.get_json('config'))
    error = assert_raises(Trackd::VariableTypeError) { d.get_integer('label') }
    assert_equal 'flag "checkout": variable "label" is "blue", not integer', error.message
    assert_kind_of TypeError, error
    assert_raises(Trackd::VariableTypeError) { d.get_integer('ratio') }
    assert_raises(Trackd::VariableTypeError) { d.get_boolean('count') }
    assert_raises(Trackd::VariableTypeError) { d.get_json('label') }
    assert_raises(KeyError) { d.get_string('missing') }
  end

  def test_decide_all_and_for_keys_keep_trackds_order_and_errors
    assert_equal %w[checkout banner], @client.decide_all('u1').keys
    some = @client.decide_for_keys('u1', %w[banner nope checkout])
    assert_equal %w[banner nope checkout], some.keys
    assert_equal 'rollout', some['banner'].rule_type
    assert_equal ['no flag nope', false, nil], [some['nope'].error, some['nope'].enabled, some['nope'].variation_key]
    assert_equal ['checkout'], @client.decide_all('u1', {}, [:ENABLED_FLAGS_ONLY]).keys
    # As the SDK's decide: one flag always answers, ENABLED_FLAGS_ONLY is not sent.
    banner = @client.decide('u1', 'banner', {}, [:ENABLED_FLAGS_ONLY])
    assert_equal [false, 'off', 'everyone_else'], [banner.enabled, banner.variation_key, banner.rule_key]
    assert_equal Trackd::Decision.dropped('banner'), @client.decide('enabled-only-by-default', 'banner')
    assert_equal({}, @client.decide_for_keys('u1', []))
    assert_equal [[[], []], [%w[banner nope checkout], []], [[], [:DECIDE_OPTION_ENABLED_FLAGS_ONLY]],
                  [['banner'], []], [['banner'], []]],
                 FlagTracking.requests.map { |r| [r.flag_keys.to_a, r.options.to_a] }
  end

  def test_errors_raise_the_clients_errors
    assert_raises(Trackd::InvalidArgument) { @client.decide('', 'checkout') }
    assert_raises(ArgumentError) { @client.decide('u1', 'checkout', { 'list' => [1] }) }
    assert_raises(ArgumentError) { @client.decide('u1', 'checkout', {}, [:NOT_AN_OPTION]) }
    assert_equal 1, FlagTracking.requests.size
  end

  def test_forced_decisions_set_get_remove
    assert_nil @client.get_forced_decision('u1', 'checkout')
    @client.set_forced_decision('u1', 'checkout', 'control')
    @client.set_forced_decision('u1', 'checkout', 'treatment', rule_key: 'checkout_test')
    @client.set_forced_decision('u2', 'checkout', 'control')
    assert_equal 'treatment', @client.get_forced_decision('u1', 'checkout', rule_key: 'checkout_test')
    assert_equal 'control', @client.decide('u1', 'checkout').variation_key
    assert_equal true, @client.remove_forced_decision('u1', 'checkout')
    assert_equal false, @client.remove_forced_decision('u1', 'checkout')
    assert_equal 1, @client.remove_all_forced_decisions('u1')
    assert_equal 'control', @client.get_forced_decision('u2', 'checkout')
  end
end
