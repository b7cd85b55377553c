// Track's answer in the SDK's shape. No protobuf here: the browser client (clients/browser)
// reads connect-es's TrackResponse with it, the Node client proto-loader's.

/** An experiment a conversion was counted for. */
export interface Attribution {
  experimentKey: string;
  variationKey: string;
  experimentId: string;
  variationId: string;
}

/** A TrackResponse's attributions as plain objects, without the messages' other fields. */
export function attributionsOf(found: readonly Attribution[]): Attribution[] {
  return found.map(({ experimentKey, variationKey, experimentId, variationId }) => ({
    experimentKey,
    variationKey,
    experimentId,
    variationId,
  }));
}
