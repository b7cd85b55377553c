# frozen_string_literal: true

# The Optimizely SDK snippet, against trackd:
#   ruby -Ilib examples/track.rb [address]
require 'trackd/client'

optimizely_client = Trackd::Client.new(ARGV[0] || ENV.fetch('TRACKD_ADDRESS', 'localhost:50051'), timeout: 2)

event_key = 'my_conversion'
user_id = 'user123'

attributes = {
  'device' => 'iPhone',
  'ad_source' => 'my_campaign'
}

# Put the user in an experiment first, so the conversion is attributed
variation = optimizely_client.activate('ab_running', user_id, attributes)
puts "ab_running: #{variation.inspect}"

# Track a conversion event for the provided user
optimizely_client.track(event_key, user_id)

# Track a conversion event for the provided user with attributes
attributions = optimizely_client.track(event_key, user_id, attributes, { 'revenue' => 4200 })
puts "attributed to: #{attributions.map(&:experiment_key).inspect}"

begin
  optimizely_client.track('no_such_event', user_id)
rescue Trackd::NotFound => e
  puts "unknown event: #{e.code_name} (#{e.details})"
ensure
  optimizely_client.close
end
