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

# The decide part of the report (docs/dev/clients-e2e.md).
quiet = [Trackd::DecideOption::DISABLE_DECISION_EVENT]
decisions = {}
quiet_recorded = false
50.times do |n|
  d = client.decide("user-#{n}", 'e2e_checkout', { 'device' => (n % 3).zero? ? 'Android' : 'iPhone' }, quiet)
  decisions["user-#{n}"] = [d.enabled, d.variation_key, d.rule_key, d.rule_type]
  quiet_recorded ||= d.impression_recorded
end
every = client.decide_all('user-1', { 'device' => 'iPhone' }, quiet)

forced_user = "forced-ruby-#{run_id}"
client.set_forced_decision(forced_user, 'e2e_checkout', 'treatment')
t = client.decide(forced_user, 'e2e_checkout', {}, quiet)
variables = {
  show_banner: t.get_boolean('show_banner'), max_items: t.get_integer('max_items'),
  discount: t.get_double('discount'), title: t.get_string('title'), layout: t.get_json('layout')
}
type_error = begin
  t.get_integer('title')
  false
rescue Trackd::VariableTypeError
  true
end
forced = [
  client.get_forced_decision(forced_user, 'e2e_checkout'),
  client.remove_forced_decision(forced_user, 'e2e_checkout'),
  client.remove_forced_decision(forced_user, 'e2e_checkout')
]
client.set_forced_decision(forced_user, 'e2e_checkout', 'control')
client.set_forced_decision(forced_user, 'e2e_checkout', 'control', rule_key: 'checkout_test')
forced << client.remove_all_forced_decisions(forced_user)

unknown = client.decide(forced_user, 'no_such_flag')
flag_user = "e2e-ruby-#{run_id}-flag"
recorded = client.decide(flag_user, 'e2e_checkout', { 'device' => 'iPhone' }).impression_recorded
flag_attributions = client.track('checkout_conversion', flag_user, { 'device' => 'iPhone' })
decide = {
  decisions: decisions, all: every.keys, variables: variables, type_error: type_error,
  unknown_flag_error: !unknown.error.nil? && !unknown.enabled, forced: forced,
  attributed: flag_attributions.map(&:experiment_key), impressions: [quiet_recorded, recorded]
}
client.close

puts JSON.generate(
  language: 'ruby',
  variations: variations,
  attributed: attributions.map(&:experiment_key),
  not_found: not_found,
  decide: decide,
  producer: nil
)
