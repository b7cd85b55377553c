namespace Trackd.Client;

/// <summary>An experiment a conversion was counted for, as answered by <see cref="TrackdClient.TrackAsync"/>.</summary>
/// <param name="ExperimentKey">The experiment's key.</param>
/// <param name="VariationKey">The variation the user was activated in.</param>
/// <param name="ExperimentId">The experiment's id.</param>
/// <param name="VariationId">The variation's id.</param>
public sealed record Attribution(string ExperimentKey, string VariationKey, string ExperimentId, string VariationId);
