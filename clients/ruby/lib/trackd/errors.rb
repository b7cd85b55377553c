# frozen_string_literal: true

require 'grpc'

module Trackd
  # Raised by Trackd::Client for every failed call. The gRPC error it wraps is
  # #cause; #code is its GRPC::Core::StatusCodes value. Rescue a subclass
  # (Trackd::NotFound, ...) for one status, or Trackd::Error for all.
  class Error < StandardError
    attr_reader :code, :details

    def initialize(message = nil, code: GRPC::Core::StatusCodes::UNKNOWN, details: nil)
      super(message)
      @code = code
      @details = details
    end

    # The status name, e.g. "NOT_FOUND".
    def code_name
      GRPC::Core::StatusCodes.constants.find { |c| GRPC::Core::StatusCodes.const_get(c) == code }.to_s
    end

    # Builds the Trackd::Error subclass for a GRPC::BadStatus.
    def self.from_grpc(err)
      klass = BY_CODE.fetch(err.code, Error)
      klass.new("#{err.class.name.split('::').last}: #{err.details}", code: err.code, details: err.details)
    end
  end

  # The experiment, event or variation key is not in the live datafile.
  class NotFound < Error; end
  # A malformed request, e.g. an empty key or a list as an attribute value.
  class InvalidArgument < Error; end
  # trackd's outbox is full; retry later.
  class ResourceExhausted < Error; end
  # The call did not finish before the client's timeout.
  class DeadlineExceeded < Error; end
  # trackd cannot be reached.
  class Unavailable < Error; end

  class Error
    BY_CODE = {
      GRPC::Core::StatusCodes::NOT_FOUND => NotFound,
      GRPC::Core::StatusCodes::INVALID_ARGUMENT => InvalidArgument,
      GRPC::Core::StatusCodes::RESOURCE_EXHAUSTED => ResourceExhausted,
      GRPC::Core::StatusCodes::DEADLINE_EXCEEDED => DeadlineExceeded,
      GRPC::Core::StatusCodes::UNAVAILABLE => Unavailable
    }.freeze
  end
end
