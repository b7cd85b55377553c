# frozen_string_literal: true

require 'minitest/autorun'
require 'trackd/client'

# Hashes given to Trackd::Client become google.protobuf.Value maps exactly.
class TestValues < Minitest::Test
  V = Trackd::Values

  def test_scalars_become_the_matching_value_kind
    assert_equal :null_value, V.to_value(nil).kind
    assert_equal true, V.to_value(true).bool_value
    assert_equal false, V.to_value(false).bool_value
    assert_equal 'iPhone', V.to_value('iPhone').string_value
    assert_equal 'iPhone', V.to_value(:iPhone).string_value
    assert_in_delta 1.5, V.to_value(1.5).number_value
  end

  def test_integers_are_sent_as_exact_doubles
    assert_equal 4200.0, V.to_value(4200).number_value
    assert_equal 2**53, V.to_value(2**53).number_value.to_i
  end

  def test_integers_not_exact_as_a_double_are_refused
    assert_raises(ArgumentError) { V.to_value(2**53 + 1) }
  end

  def test_unsupported_objects_are_refused
    assert_raises(ArgumentError) { V.to_value(Object.new) }
    assert_raises(ArgumentError) { V.to_value_map([1, 2]) }
  end

  def test_map_keys_become_strings_and_nil_map_is_empty
    map = V.to_value_map({ device: 'iPhone', 'age' => 31 })
    assert_equal %w[age device], map.keys.sort
    assert_equal({}, V.to_value_map(nil))
  end

  def test_lists_and_structs_trackd_sends_are_read_back
    list = Google::Protobuf::Value.new(
      list_value: Google::Protobuf::ListValue.new(values: [V.to_value(1), V.to_value('x')])
    )
    assert_equal [1, 'x'], V.from_value(list)
  end

  def test_whole_numbers_come_back_as_integers
    assert_equal 4200, V.from_value(V.to_value(4200))
    assert_kind_of Integer, V.from_value(V.to_value(4200))
  end

  def test_a_request_accepts_the_converted_map
    request = Trackd::V1::TrackRequest.new(
      event_key: 'e', user_id: 'u',
      attributes: V.to_value_map({ 'device' => 'iPhone' }),
      tags: V.to_value_map({ 'revenue' => 4200, 'category' => 'shoes' })
    )
    decoded = Trackd::V1::TrackRequest.decode(Trackd::V1::TrackRequest.encode(request))
    assert_equal 'iPhone', decoded.attributes['device'].string_value
    assert_equal 4200.0, decoded.tags['revenue'].number_value
  end
end

# Failed calls surface as Trackd::Error subclasses carrying the gRPC status.
class TestErrors < Minitest::Test
  def test_not_found_maps_to_trackd_not_found
    err = Trackd::Error.from_grpc(GRPC::NotFound.new('event x is not in the datafile'))
    assert_instance_of Trackd::NotFound, err
    assert_equal GRPC::Core::StatusCodes::NOT_FOUND, err.code
    assert_equal 'NOT_FOUND', err.code_name
    assert_equal 'event x is not in the datafile', err.details
  end

  def test_unmapped_codes_are_plain_trackd_errors
    err = Trackd::Error.from_grpc(GRPC::Internal.new('boom'))
    assert_instance_of Trackd::Error, err
    assert_equal 'INTERNAL', err.code_name
  end

  def test_an_unreachable_daemon_raises_within_the_timeout
    client = Trackd::Client.new('127.0.0.1:1', timeout: 0.5)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    err = assert_raises(Trackd::Error) { client.activate('ab_running', 'u') }
    assert_includes [GRPC::Core::StatusCodes::UNAVAILABLE, GRPC::Core::StatusCodes::DEADLINE_EXCEEDED], err.code
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 5
  ensure
    client&.close
  end
end
