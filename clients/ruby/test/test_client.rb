# frozen_string_literal: true

require 'minitest/autorun'
require 'trackd/client'

# Answers as trackd does while its Redis activation store is unreachable.
class RedisDownTracking < Trackd::V1::TrackingService::Service
  def activate(request, _call)
    Trackd::V1::ActivateResponse.new(experiment_key: request.experiment_key, variation_key: 'a',
                                     attribution_degraded: true)
  end

  def track(_request, _call)
    Trackd::V1::TrackResponse.new(uuid: 'u-1', attribution_unknown: true)
  end
end

# The wrapper against a TrackingService served in this process on loopback.
class TestClientDetail < Minitest::Test
  def setup
    @server = GRPC::RpcServer.new
    port = @server.add_http2_port('127.0.0.1:0', :this_port_is_insecure)
    @server.handle(RedisDownTracking)
    @thread = Thread.new { @server.run }
    @server.wait_till_running
    @client = Trackd::Client.new("127.0.0.1:#{port}", timeout: 5)
  end

  def teardown
    @client.close
    @server.stop
    @thread.join
  end

  def test_activate_detail_carries_attribution_degraded
    detail = @client.activate_detail('ab_running', 'u', { 'device' => 'iPhone' })
    assert_equal true, detail.attribution_degraded
    assert_equal 'a', @client.activate('ab_running', 'u')
  end

  def test_track_detail_carries_attribution_unknown
    detail = @client.track_detail('my_conversion', 'u', {}, { 'revenue' => 1 })
    assert_equal true, detail.attribution_unknown
    assert_equal 'u-1', detail.uuid
    assert_equal [], @client.track('my_conversion', 'u')
  end
end
