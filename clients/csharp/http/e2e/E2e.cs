// The end-to-end program of docs/dev/clients-e2e.md, over trackd's HTTP port: prints one JSON
// object on the last line of stdout. Needs TRACKD_HTTP_URL and E2E_RUN_ID.
using System;
using System.Collections.Generic;
using System.Linq;
using Trackd.Http;

static class E2e
{
    static string Device(int n) => n % 3 == 0 ? "Android" : "iPhone";

    static void Main()
    {
        var runId = Environment.GetEnvironmentVariable("E2E_RUN_ID");
        using (var client = new TrackdHttpClient(Environment.GetEnvironmentVariable("TRACKD_HTTP_URL"), TimeSpan.FromSeconds(10)))
        {
            var variations = new Dictionary<string, object>();
            for (var n = 0; n < 200; n++)
                variations["user-" + n] = client.Activate("ab_iphone", "user-" + n, new UserAttributes { { "device", Device(n) } });

            var user = "e2e-csharp-" + runId;
            client.Activate("ab_running", user, new UserAttributes());
            var attributions = client.Track("my_conversion", user, new UserAttributes { { "device", "iPhone" } },
                new EventTags { { "revenue", 4200 }, { "category", "shoes" } });

            bool notFound;
            try
            {
                client.Track("no_such_event", "u", new UserAttributes { { "device", "iPhone" } });
                notFound = false;
            }
            catch (TrackdException e)
            {
                notFound = e.Code == TrackdException.NotFound && e.HttpStatus == 404;
            }

            // The decide part of the report.
            var quiet = new[] { DecideOption.DisableDecisionEvent };
            var decisions = new Dictionary<string, object>();
            var quietRecorded = false;
            for (var n = 0; n < 50; n++)
            {
                var d = client.Decide("user-" + n, new UserAttributes { { "device", Device(n) } }, new[] { "e2e_checkout" }, quiet).Single();
                decisions["user-" + n] = new object[] { d.Enabled, d.VariationKey, d.RuleKey, d.RuleType };
                quietRecorded |= d.ImpressionRecorded;
            }
            var every = client.Decide("user-1", new UserAttributes { { "device", "iPhone" } }, null, quiet);

            var forcedUser = "forced-csharp-" + runId;
            client.SetForcedDecision(forcedUser, "e2e_checkout", "treatment");
            var t = client.Decide(forcedUser, null, new[] { "e2e_checkout" }, quiet).Single();
            var variables = new Dictionary<string, object>
            {
                { "show_banner", t.GetBoolean("show_banner") }, { "max_items", t.GetInteger("max_items") },
                { "discount", t.GetDouble("discount") }, { "title", t.GetString("title") }, { "layout", t.GetJson("layout") },
            };
            bool typeError;
            try
            {
                t.GetInteger("title");
                typeError = false;
            }
            catch (VariableTypeException)
            {
                typeError = true;
            }
            var forced = new List<object>
            {
                client.GetForcedDecision(forcedUser, "e2e_checkout"),
                client.RemoveForcedDecision(forcedUser, "e2e_checkout"),
                client.RemoveForcedDecision(forcedUser, "e2e_checkout"),
            };
            client.SetForcedDecision(forcedUser, "e2e_checkout", "control");
            client.SetForcedDecision(forcedUser, "e2e_checkout", "control", "checkout_test");
            forced.Add(client.RemoveAllForcedDecisions(forcedUser));

            var unknown = client.Decide(forcedUser, null, new[] { "no_such_flag" }).Single();
            var flagUser = "e2e-csharp-" + runId + "-flag";
            var iPhone = new UserAttributes { { "device", "iPhone" } };
            var recorded = client.Decide(flagUser, iPhone, new[] { "e2e_checkout" }).Single().ImpressionRecorded;
            var flagAttributions = client.Track("checkout_conversion", flagUser, iPhone);

            // Beyond docs/dev/clients-e2e.md: GetConfig, for test_http_json_clients.py.
            var config = client.GetConfig();
            var flagKeys = ((object[])config["flags"]).Select(f => ((Dictionary<string, object>)f)["key"]).ToArray();

            Console.WriteLine(Json.Serialize(new Dictionary<string, object>
            {
                { "language", "csharp" },
                { "variations", variations },
                { "attributed", attributions.Select(a => a.ExperimentKey).ToArray() },
                { "not_found", notFound },
                { "decide", new Dictionary<string, object>
                    {
                        { "decisions", decisions }, { "all", every.Select(d => d.FlagKey).ToArray() },
                        { "variables", variables }, { "type_error", typeError },
                        { "unknown_flag_error", unknown.Error != null && !unknown.Enabled },
                        { "forced", forced }, { "attributed", flagAttributions.Select(a => a.ExperimentKey).ToArray() },
                        { "impressions", new[] { quietRecorded, recorded } },
                    }
                },
                { "producer", null },
                { "config", new Dictionary<string, object> { { "revision", config["revision"] }, { "flags", flagKeys } } },
            }));
        }
    }
}
