# frozen_string_literal: true

# The end-to-end program of docs/dev/clients-e2e.md: prints one JSON object on
# the last line of stdout. Needs TRACKD_ADDRESS and E2E_RUN_ID.
require 'json'
require 'trackd/client'

address = ENV.fetch('TRACKD_ADDRESS')
run_id = ENV.fetch('E2E_RUN_ID')
client = Trackd::Client.new(address, timeout: 10)

variations = {}
200.times do |n|
  user = "user-#{n}"
  variations[user] = client.activate('ab_iphone', user, { 'device' => (n % 3).zero? ? 'Android' : 'iPhone' })
end

user = "e2e-ruby-#{run_id}"
client.activate('ab_running', user, {})
attributions = client.track('my_conversion', user, { 'device' => 'iPhone' },
                            { 'revenue' => 4200, 'category' => 'shoes' })

not_found = begin
  client.track('no_such_event', 'u', { 'device' => 'iPhone' }, {})
  false
rescue Trackd::NotFound => e
  e.code == GRPC::Core::StatusCodes::NOT_FOUND && e.cause.is_a?(GRPC::NotFound)
end
client.close

puts JSON.generate(
  language: 'ruby',
  variations: variations,
  attributed: attributions.map(&:experiment_key),
  not_found: not_found,
  producer: nil
)
