# frozen_string_literal: true

require 'google/protobuf/struct_pb'

module Trackd
  # Converts plain Ruby values to and from google.protobuf.Value, the type of
  # trackd's attributes and tags.
  module Values
    # Integers beyond this are not exact as a double, the only number a Value holds.
    MAX_EXACT_INTEGER = 2**53

    module_function

    # A Hash of attributes or tags -> { String => Google::Protobuf::Value }.
    # Keys may be Strings or Symbols.
    def to_value_map(hash)
      return {} if hash.nil?
      raise ArgumentError, "expected a Hash, got #{hash.class}" unless hash.is_a?(Hash)

      hash.each_with_object({}) { |(key, value), out| out[key.to_s] = to_value(value) }
    end

    # nil, true/false, Integer, Float (NaN and infinities included), String or Symbol -> Value.
    # An Array or a Hash is an ArgumentError before any call, as in every client
    # (clients/testdata/values.json): trackd refuses lists and structs as attributes and tags.
    def to_value(obj)
      case obj
      when nil then Google::Protobuf::Value.new(null_value: :NULL_VALUE)
      when true, false then Google::Protobuf::Value.new(bool_value: obj)
      when Integer
        if obj.abs > MAX_EXACT_INTEGER
          raise ArgumentError, "integer #{obj} is not exact as a double (|x| > 2**53)"
        end

        Google::Protobuf::Value.new(number_value: obj.to_f)
      when Float then Google::Protobuf::Value.new(number_value: obj)
      when String then Google::Protobuf::Value.new(string_value: obj)
      when Symbol then Google::Protobuf::Value.new(string_value: obj.to_s)
      else
        raise ArgumentError, "cannot convert #{obj.class} to google.protobuf.Value"
      end
    end

    # Value -> plain Ruby value; whole numbers come back as Integer.
    def from_value(value)
      case value.kind
      when :null_value, nil then nil
      when :bool_value then value.bool_value
      when :string_value then value.string_value
      when :number_value
        n = value.number_value
        n.finite? && n == n.truncate && n.abs <= MAX_EXACT_INTEGER ? n.to_i : n
      when :list_value then value.list_value.values.map { |v| from_value(v) }
      when :struct_value
        value.struct_value.fields.each_with_object({}) { |(k, v), out| out[k] = from_value(v) }
      end
    end
  end
end
