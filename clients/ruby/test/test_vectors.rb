# frozen_string_literal: true

require 'json'
require 'minitest/autorun'
require 'trackd/client'

# clients/testdata/values.json: the value conversions every client makes, read by every client.
class TestValueVectors < Minitest::Test
  VECTORS = JSON.parse(File.read(File.expand_path('../../testdata/values.json', __dir__)))
  NATIVE = { 'nan' => Float::NAN, 'inf' => Float::INFINITY, '-inf' => -Float::INFINITY,
             '2^53+1' => 2**53 + 1 }.freeze
  NUMBERS = { 'NaN' => Float::NAN, 'Infinity' => Float::INFINITY, '-Infinity' => -Float::INFINITY }.freeze

  def test_the_vectors_name_one_non_finite_rule_for_all_clients
    assert_equal 'pass_through', VECTORS['non_finite']['attributes']
    assert_equal 'pass_through', VECTORS['non_finite']['tags']
    assert_equal NATIVE.keys.sort, VECTORS['native'].map { |v| v['name'] }.sort
  end

  def check(vector, input)
    # Attributes and tags go through the same conversion (Client#track).
    if vector['error']
      assert_raises(ArgumentError, vector['name']) { Trackd::Values.to_value_map({ 'k' => input }) }
      return
    end
    got = Trackd::Values.to_value_map({ 'k' => input })['k']
    kind = vector['expect']['kind']
    want = vector['expect']['value']
    assert_equal kind.to_sym, got.kind, vector['name']
    case kind
    when 'number_value'
      want = NUMBERS.fetch(want, want).to_f
      if want.nan?
        assert got.number_value.nan?, vector['name']
      else
        assert_equal want, got.number_value, vector['name']
      end
    when 'string_value' then assert_equal want, got.string_value
    when 'bool_value' then assert_equal want, got.bool_value
    end
  end

  VECTORS['values'].each_with_index do |vector, n|
    define_method("test_values_#{n}_#{vector['name'].gsub(/\W/, '_')}") { check(vector, vector['input']) }
  end

  VECTORS['native'].each_with_index do |vector, n|
    define_method("test_native_#{n}_#{vector['name'].gsub(/\W/, '_')}") { check(vector, NATIVE.fetch(vector['name'])) }
  end
end
