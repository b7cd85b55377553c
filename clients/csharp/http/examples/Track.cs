// The Optimizely doc's C# track example against trackd's HTTP port:
//   mono bin/Track.exe http://127.0.0.1:8080
using System;
using Trackd.Http;

static class Track
{
    static void Main(string[] args)
    {
        using (var OptimizelyClient = new TrackdHttpClient(args.Length > 0 ? args[0] : "http://127.0.0.1:8080", TimeSpan.FromSeconds(2)))
        {
            var eventKey = "my_conversion";
            var userId = "user123";

            UserAttributes attributes = new UserAttributes
            {
                { "device", "iPhone" },
                { "ad_source", "my_campaign" }
            };

            Console.WriteLine("variation: " + (OptimizelyClient.Activate("ab_running", userId, attributes) ?? "(none)"));

            // Track a conversion event for the provided user
            OptimizelyClient.Track(eventKey, userId);

            // Track a conversion event for the provided user with attributes
            foreach (var attribution in OptimizelyClient.Track(eventKey, userId, attributes))
                Console.WriteLine("attributed to " + attribution.ExperimentKey + " (" + attribution.VariationKey + ")");

            try
            {
                OptimizelyClient.Track("no_such_event", userId);
            }
            catch (TrackdException e)
            {
                Console.WriteLine(e.Message); // "not_found: event 'no_such_event' is not in the datafile"
            }
        }
    }
}
