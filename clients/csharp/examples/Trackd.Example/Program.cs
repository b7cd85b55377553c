// The Optimizely SDK snippet, against trackd:
//   dotnet run --project examples/Trackd.Example -- http://localhost:50051
using Grpc.Core;
using Trackd.Client;

var address = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("TRACKD_ADDRESS") ?? "http://localhost:50051";
using var optimizelyClient = new TrackdClient(address, new TrackdClientOptions { Timeout = TimeSpan.FromSeconds(2) });

var eventKey = "my_conversion";
var userId = "user123";

var attributes = new Dictionary<string, object?>
{
    { "device", "iPhone" },
    { "ad_source", "my_campaign" },
};

// Put the user in an experiment first, so the conversion is attributed
var variation = await optimizelyClient.ActivateAsync("ab_running", userId, attributes);
Console.WriteLine($"ab_running: {variation ?? "(none)"}");

// Track a conversion event for the provided user
await optimizelyClient.TrackAsync(eventKey, userId);

// Track a conversion event for the provided user with attributes
var attributions = await optimizelyClient.TrackAsync(eventKey, userId, attributes,
    new Dictionary<string, object?> { ["revenue"] = 4200 });
Console.WriteLine($"attributed to: {string.Join(", ", attributions.Select(a => a.ExperimentKey))}");

try
{
    await optimizelyClient.TrackAsync("no_such_event", userId);
}
catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
{
    Console.WriteLine($"unknown event: {ex.StatusCode} ({ex.Status.Detail})");
}
