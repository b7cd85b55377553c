using Grpc.Core;
using Grpc.Net.Client;
using Trackd.V1;

namespace Trackd.Client;

/// <summary>
/// A thin client of trackd's TrackingService with the Optimizely SDK's call shapes.
/// </summary>
/// <remarks>
/// <code>
/// using var client = new TrackdClient("http://localhost:50051");
/// string? variation = await client.ActivateAsync("ab_running", "user123",
///     new Dictionary&lt;string, object?&gt; { ["device"] = "iPhone" });
/// var attributions = await client.TrackAsync("my_conversion", "user123",
///     new Dictionary&lt;string, object?&gt; { ["device"] = "iPhone" },
///     new Dictionary&lt;string, object?&gt; { ["revenue"] = 4200 });
/// </code>
/// Every call has a deadline of <see cref="Timeout"/>. A failed call throws the
/// <see cref="RpcException"/> from Grpc.Net.Client unchanged: test
/// <c>ex.StatusCode == StatusCode.NotFound</c> for an unknown experiment or event key,
/// <c>StatusCode.DeadlineExceeded</c> for a timeout. Attributes that cannot be converted
/// throw <see cref="ArgumentException"/> before any call. The client is thread-safe.
/// </remarks>
public sealed class TrackdClient : IDisposable
{
    private readonly GrpcChannel? _ownedChannel;

    /// <summary>Connects to trackd at <paramref name="address"/>, e.g. "http://localhost:50051"
    /// (plaintext HTTP/2) or "https://trackd.example:443"; a bare "host:port" means http.</summary>
    public TrackdClient(string address, TrackdClientOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(address);
        options ??= new TrackdClientOptions();
        var uri = address.Contains("://", StringComparison.Ordinal) ? address : "http://" + address;
        _ownedChannel = GrpcChannel.ForAddress(uri, options.ChannelOptions ?? new GrpcChannelOptions());
        Service = new TrackingService.TrackingServiceClient(_ownedChannel);
        Timeout = CheckTimeout(options.Timeout);
    }

    /// <summary>Uses a channel or call invoker the caller owns (and disposes).</summary>
    public TrackdClient(CallInvoker callInvoker, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(callInvoker);
        Service = new TrackingService.TrackingServiceClient(callInvoker);
        Timeout = CheckTimeout(timeout ?? TimeSpan.FromSeconds(5));
    }

    /// <summary>The deadline of every call, from its start.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The generated client, for the RPCs this wrapper does not cover.</summary>
    public TrackingService.TrackingServiceClient Service { get; }

    /// <summary>
    /// Decides the user's variation and records an impression.
    /// </summary>
    /// <returns>The variation key, or null when the user is in no variation.</returns>
    /// <exception cref="RpcException">The call failed (NotFound: unknown experiment).</exception>
    public async Task<string?> ActivateAsync(
        string experimentKey,
        string userId,
        IReadOnlyDictionary<string, object?>? attributes = null,
        CancellationToken cancellationToken = default)
    {
        var request = new ActivateRequest { ExperimentKey = experimentKey, UserId = userId };
        ValueConverter.CopyTo(attributes, request.Attributes);
        var response = await Service.ActivateAsync(request, Options(cancellationToken)).ConfigureAwait(false);
        return response.VariationKey.Length == 0 ? null : response.VariationKey;
    }

    /// <summary>Records a conversion event.</summary>
    /// <returns>The experiments the conversion was attributed to.</returns>
    /// <exception cref="RpcException">The call failed (NotFound: unknown event).</exception>
    public async Task<IReadOnlyList<Attribution>> TrackAsync(
        string eventKey,
        string userId,
        IReadOnlyDictionary<string, object?>? attributes = null,
        IReadOnlyDictionary<string, object?>? tags = null,
        CancellationToken cancellationToken = default)
    {
        var request = new TrackRequest { EventKey = eventKey, UserId = userId };
        ValueConverter.CopyTo(attributes, request.Attributes);
        ValueConverter.CopyTo(tags, request.Tags);
        var response = await Service.TrackAsync(request, Options(cancellationToken)).ConfigureAwait(false);
        return response.Attributions
            .Select(a => new Attribution(a.ExperimentKey, a.VariationKey, a.ExperimentId, a.VariationId))
            .ToList();
    }

    /// <summary>Disposes the channel if this client created it.</summary>
    public void Dispose() => _ownedChannel?.Dispose();

    private CallOptions Options(CancellationToken cancellationToken) =>
        new(deadline: DateTime.UtcNow + Timeout, cancellationToken: cancellationToken);

    private static TimeSpan CheckTimeout(TimeSpan timeout) =>
        timeout > TimeSpan.Zero
            ? timeout
            : throw new ArgumentOutOfRangeException(nameof(timeout), "the timeout must be positive");
}
