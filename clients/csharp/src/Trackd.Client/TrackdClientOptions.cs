using Grpc.Net.Client;

namespace Trackd.Client;

/// <summary>Settings of a <see cref="TrackdClient"/>.</summary>
public sealed class TrackdClientOptions
{
    /// <summary>The deadline of every call, from its start. Default: 5 seconds.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Options for the channel the client creates (TLS, handlers, message sizes).</summary>
    public GrpcChannelOptions? ChannelOptions { get; set; }
}
