# frozen_string_literal: true

Gem::Specification.new do |spec|
  spec.name = 'trackd-client'
  spec.version = '0.1.0'
  spec.summary = 'Ruby client of trackd, the gRPC experiment-tracking daemon'
  spec.description = 'Activate and track against trackd with the Optimizely SDK call shapes; ' \
                     'stubs generated from trackd.v1 by grpc_tools_ruby_protoc.'
  spec.authors = ['trackd developers']
  spec.license = 'Apache-2.0'
  spec.required_ruby_version = '>= 3.0'
  spec.files = Dir['lib/**/*.rb'] + ['README.md']
  spec.require_paths = ['lib']
  # Debian's ruby-grpc 1.51 / ruby-google-protobuf 3.21 are what this is built and tested with.
  spec.add_runtime_dependency 'google-protobuf', '>= 3.21', '< 4'
  spec.add_runtime_dependency 'grpc', '>= 1.51', '< 2'
  spec.add_development_dependency 'minitest', '~> 5.0'
end
