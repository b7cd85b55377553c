// One Activate through the client's timeout and token options (probe.sh), for
// tests/clients/test_http_json_clients.py: prints {"variation": ..., "error": null} or
// {"variation": null, "error": "<Connect code>"}.
using System;
using System.Collections.Generic;
using System.Globalization;
using Trackd.Http;

static class Probe
{
    static void Main()
    {
        var token = Environment.GetEnvironmentVariable("PROBE_TOKEN");
        var seconds = double.Parse(Environment.GetEnvironmentVariable("PROBE_TIMEOUT"), CultureInfo.InvariantCulture);
        var result = new Dictionary<string, object> { { "variation", null }, { "error", null } };
        using (var client = new TrackdHttpClient(Environment.GetEnvironmentVariable("TRACKD_HTTP_URL"),
            TimeSpan.FromSeconds(seconds), string.IsNullOrEmpty(token) ? null : token))
        {
            try
            {
                result["variation"] = client.Activate("ab_running", "probe-user");
            }
            catch (TrackdException e)
            {
                result["error"] = e.Code;
            }
        }
        Console.WriteLine(Json.Serialize(result));
    }
}
